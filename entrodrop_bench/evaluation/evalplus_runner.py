"""Code benchmarks (humaneval, mbpp, tiny_code) through evalplus's own evaluation: base + plus tests, pass@1.

1. Problems come from the local file (`eval.data_overrides.<name>`, or the tiny world's tiny_code file,
   evalplus HumanEval schema). With `limit`, the first N problems are written to a subset file, because
   evalplus insists that samples cover every task of its dataset.
2. Generation here, not evalplus's codegen: batched, left-padded greedy decoding of the checkpoint,
   stopped at evalplus's own stop strings for the dataset (`stop_sequences`; tiny_code: the end of the
   function), then `evalplus.sanitize`.
3. Evaluation by evalplus in a fresh sandboxed subprocess (`sandbox.run_sandboxed`), because evalplus reads
   HUMANEVAL_OVERRIDE_PATH / MBPP_OVERRIDE_PATH at import. Its pitfalls are avoided: the stale
   `<samples>_eval_results.json` is deleted first (so it is neither reused nor triggers the Y/N prompt),
   EVALPLUS_TIMEOUT_PER_TASK is never set, `evaluate()`'s None return is ignored and its JSON read, and the
   child leaves with os._exit so evalplus's 20 s watchdog thread does not hold it.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import sys
from pathlib import Path
from typing import Any

from entrodrop_bench.errors import DataError
from entrodrop_bench.evaluation.sandbox import Limits, run_sandboxed
from entrodrop_bench.paths import PROJECT_ROOT

STOP_LINES = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\nassert ", "\n#", "\n```")
# evalplus 0.3.1's own stop strings for base-model (direct completion) generation (`provider/utility.py`):
# common ones plus one list per dataset. MBPP stops only at the end of its prompt-style docstring or at
# a test line, so a solution may start with imports or helpers before its `def`.
EVALPLUS_COMMON_STOPS = ("<|endoftext|>", "<|endofmask|>", "</s>", "\nif __name__", "\ndef main(", "\nprint(")
EVALPLUS_STOPS = {
    "humaneval": (*EVALPLUS_COMMON_STOPS, "\ndef ", "\nclass ", "\nimport ", "\nfrom ", "\nassert "),
    "mbpp": (*EVALPLUS_COMMON_STOPS, '\n"""', "\nassert"),
}

REQUIRED = ("task_id", "prompt", "entry_point", "canonical_solution", "base_input", "plus_input", "atol", "contract")
MIN_TIME_LIMIT_S = 2.0  # evalplus's per-test floor (its default is 1 s): no false timeouts on a loaded CPU


def stop_sequences(benchmark: str) -> tuple[str, ...]:
    """evalplus's stop list for humaneval and mbpp; the tiny world's tiny_code keeps the function-end list."""
    return EVALPLUS_STOPS.get(benchmark, STOP_LINES)


def read_problems(path: Path) -> list[dict]:
    """evalplus-schema problems from a .jsonl or .jsonl.gz file, checked field by field."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            problems = [json.loads(line) for line in fh if line.strip()]
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"evalplus dataset {path}: cannot read it as JSON lines ({exc})") from None
    for i, p in enumerate(problems):
        missing = [k for k in REQUIRED if k not in p]
        if missing:
            raise DataError(f"evalplus dataset {path}, line {i + 1}: missing fields {missing} (evalplus needs "
                            f"{', '.join(REQUIRED)}; convert raw HumanEval with humaneval_to_evalplus)")
    if not problems:
        raise DataError(f"evalplus dataset {path} is empty")
    return problems


def humaneval_to_evalplus(records: list[dict]) -> list[dict]:
    """Raw HumanEval records -> evalplus schema: `base_input` from the literal `candidate(...)` calls in `test`.

    Problems whose tests call the candidate with non-literal arguments are dropped (no base inputs).
    """
    import ast

    out = []
    for rec in records:
        inputs = []
        try:
            tree = ast.parse(rec["test"])
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "candidate":
                try:
                    inputs.append([ast.literal_eval(a) for a in node.args])
                except ValueError:
                    inputs = []
                    break
        if inputs:
            out.append({"task_id": rec["task_id"], "prompt": rec["prompt"], "entry_point": rec["entry_point"],
                        "canonical_solution": rec["canonical_solution"], "base_input": inputs, "plus_input": [],
                        "atol": 0, "contract": ""})
    return out


def _truncate(completion: str, stops: tuple[str, ...] = STOP_LINES) -> str:
    cut = len(completion)
    for stop in stops:
        idx = completion.find(stop)
        if idx >= 0:
            cut = min(cut, idx)
    return completion[:cut]


def generate(model: Any, tokenizer: Any, prompts: list[str], *, batch_size: int, max_new_tokens: int,
             stop: tuple[str, ...] = STOP_LINES) -> list[str]:
    """Greedy completions, batched and left-padded, longest prompts first; cut at the first `stop`
    (by default the function's end: a new top-level line)."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class FunctionEnd(StoppingCriteria):
        def __init__(self, start: int):
            self.start = start

        def __call__(self, input_ids, scores, **kwargs) -> torch.Tensor:
            texts = tokenizer.batch_decode(input_ids[:, self.start:], skip_special_tokens=True)
            return torch.tensor([any(s in t for s in stop) for t in texts], device=input_ids.device)

    tokenizer.padding_side = "left"
    tokenizer.truncation_side = "left"  # an over-long prompt keeps its end, where the function starts
    max_pos = getattr(model.config, "max_position_embeddings", None) or 1 << 30
    max_prompt = max(8, max_pos - max_new_tokens)
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    out: list[str] = [""] * len(prompts)
    device = next(model.parameters()).device
    for b in range(0, len(order), batch_size):
        idx = order[b:b + batch_size]
        enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True, truncation=True,
                        max_length=max_prompt).to(device)
        with torch.no_grad():
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                                 stopping_criteria=StoppingCriteriaList([FunctionEnd(enc["input_ids"].shape[1])]))
        texts = tokenizer.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        for i, text in zip(idx, texts):
            out[i] = _truncate(text, stop)
    return out


def make_samples(problems: list[dict], completions: list[str]) -> list[dict]:
    """{"task_id", "solution"} per problem: prompt + completion, sanitized to the entry point and its deps."""
    from evalplus.sanitize import sanitize

    samples = []
    for p, c in zip(problems, completions):
        code = p["prompt"] + c
        # Unparsable code is still submitted as is, and simply fails.
        with contextlib.suppress(Exception):
            code = sanitize(code, entrypoint=p["entry_point"])
        samples.append({"task_id": p["task_id"], "solution": code})
    return samples


def evaluate_samples(dataset_file: Path, samples: list[dict], work_dir: Path, *, dataset: str = "humaneval",
                     parallel: int | None = None, cache_dir: Path | None = None,
                     min_time_limit: float = MIN_TIME_LIMIT_S) -> dict:
    """Run evalplus on samples in the sandbox; returns {"pass@1", "base_pass@1", "n_tasks", "per_task"}."""
    work_dir.mkdir(parents=True, exist_ok=True)
    data_copy = work_dir / ("problems.jsonl")
    problems = read_problems(dataset_file)
    data_copy.write_text("".join(json.dumps(p) + "\n" for p in problems))
    samples_file = work_dir / "samples.jsonl"
    samples_file.write_text("".join(json.dumps(s) + "\n" for s in samples))
    for stale in (work_dir / "samples_eval_results.json", work_dir / "summary.json"):
        stale.unlink(missing_ok=True)
    cache_dir = cache_dir or work_dir / "xdg_cache"
    cache_dir.mkdir(parents=True, exist_ok=True)
    parallel = parallel or os.cpu_count() or 1
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "PYTHONPATH": str(PROJECT_ROOT),
        "XDG_CACHE_HOME": "{w0}", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
        "EVALPLUS_MAX_MEMORY_BYTES": str(2 << 30), "TOKENIZERS_PARALLELISM": "false",
        "HUMANEVAL_OVERRIDE_PATH" if dataset == "humaneval" else "MBPP_OVERRIDE_PATH": "{work}/" + data_copy.name,
    }
    wall = 120 + 4.0 * len(problems)
    limits = Limits(wall_s=wall, cpu_s=int(wall * parallel), memory_bytes=16 << 30, nproc=8 * parallel + 64,
                    file_bytes=256 << 20, open_files=1024)
    cmd = [sys.executable, "-m", "entrodrop_bench.evaluation._evalplus_child", dataset, "{work}/" + samples_file.name,
           "{work}/summary.json", str(parallel), str(min_time_limit)]
    result = run_sandboxed(cmd, limits=limits, workdir=work_dir, env=env, writable=[cache_dir])
    summary_file = work_dir / "summary.json"
    if not result.ok or not summary_file.is_file():
        (work_dir / "evalplus.log").write_text(result.stdout + "\n--- stderr ---\n" + result.stderr)
        raise RuntimeError(f"evalplus failed (exit {result.returncode}, timed out {result.timed_out}); "
                           f"log: {work_dir / 'evalplus.log'}; stderr tail: {result.stderr[-800:]}")
    summary = json.loads(summary_file.read_text())
    summary["isolation"] = result.isolation
    return summary


def run_evalplus(model: Any, tokenizer: Any, benchmark: str, data: Path | None, *, work_dir: Path,
                 batch_size: int, limit: int | None, max_gen_toks: int, cache_dir: Path | None = None) -> dict:
    """Generate, sanitize and evaluate one code benchmark for a loaded checkpoint."""
    if data is None:
        raise DataError(f"{benchmark}: evalplus runs offline here and needs a local dataset file: set "
                        f"eval.data_overrides.{benchmark} to an evalplus-schema .jsonl(.gz)")
    problems = read_problems(data)[: limit or None]
    subset = work_dir / "dataset.jsonl"
    work_dir.mkdir(parents=True, exist_ok=True)
    subset.write_text("".join(json.dumps(p) + "\n" for p in problems))
    completions = generate(model, tokenizer, [p["prompt"] for p in problems], batch_size=batch_size,
                           max_new_tokens=max_gen_toks, stop=stop_sequences(benchmark))
    samples = make_samples(problems, completions)
    dataset = "mbpp" if benchmark == "mbpp" else "humaneval"
    summary = evaluate_samples(subset, samples, work_dir / "eval", dataset=dataset, cache_dir=cache_dir)
    return summary
