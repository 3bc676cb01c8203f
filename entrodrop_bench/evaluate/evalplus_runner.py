"""Code benchmarks (humaneval, mbpp, tiny_code) through evalplus's own evaluation: base + plus tests, pass@1.

1. Problems come from the local file (`eval.data_overrides.<name>`, or the tiny world's tiny_code file,
   evalplus HumanEval schema). With `limit`, the first N problems are written to a subset file, because
   evalplus insists that samples cover every task of its dataset.
2. Generation here, not evalplus's codegen: batched, left-padded greedy decoding of the checkpoint,
   stopped at evalplus's own stop strings for the dataset (`stop_sequences`; tiny_code: the end of the
   function), then `evalplus.sanitize`.
3. Evaluation in two fresh sandboxes (`sandbox.run_sandboxed`), driven by `_evalplus_child.py` (passed in as
   a file with the problems and the samples, read-only). `run` executes the samples as evalplus does, with the
   reference times but no expected output, and returns only the values they returned (plain data); `judge`
   runs no generated code and replays those values through evalplus's own `untrusted_check` against the
   ground truth. So no channel a generated program can write carries a verdict: whatever it writes counts
   only as values its function returned. Each sandbox's one JSON line is validated against the task ids asked
   for; pass@1 and the per-task outcomes (`items`) are recomputed here from the judge's verdicts. No folder a
   generated program could write to is ever reused or read back.
4. Ground truth (evalplus's expected outputs) is computed once per dataset in a sandbox that runs no
   generated code, cached under the runs folder with its sha256, and verified against it before each
   use: no evaluation can change what another one reads.
evalplus pitfalls avoided: each evaluation starts in an empty folder (no stale `_eval_results.json` to
reuse or to prompt Y/N about), EVALPLUS_TIMEOUT_PER_TASK is never set, `evaluate()`'s None return is
ignored and its JSON read, and the child leaves with os._exit so evalplus's 20 s watchdog does not hold it.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import json
import logging
import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from entrodrop_bench.atomic import bytes_sha256, write_bytes, write_json, write_text
from entrodrop_bench.errors import DataError
from entrodrop_bench.evaluate.sandbox import Limits, run_sandboxed
from entrodrop_bench.paths import CodeEvalDir, evalplus_ground_truth_files

log = logging.getLogger(__name__)

STOP_LINES = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\nassert ", "\n#", "\n```")
# evalplus 0.3.1's own stop strings for base-model (direct completion) generation (`provider/utility.py`):
# common ones plus one list per dataset. MBPP stops only at the end of its prompt-style docstring or at
# a test line, so a solution may start with imports or helpers before its `def`.
EVALPLUS_COMMON_STOPS = ("<|endoftext|>", "<|endofmask|>", "</s>", "\nif __name__", "\ndef main(", "\nprint(")
EVALPLUS_STOPS = {
    "humaneval": (*EVALPLUS_COMMON_STOPS, "\ndef ", "\nclass ", "\nimport ", "\nfrom ", "\nassert "),
    "mbpp": (*EVALPLUS_COMMON_STOPS, '\n"""', "\nassert"),
}

Generator = Callable[..., list[str]]
"""`generator(prompts, *, max_new_tokens, stop) -> completions`: another engine's greedy generation (vLLM)."""

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


def model_prompt(benchmark: str, problem: dict) -> str:
    """The text the model continues. HumanEval and MBPP: evalplus's codegen prompt, `prompt.strip() + "\n"`
    (142 of HumanEval's 164 prompts end in other whitespace); the tiny world's tiny_code: its prompt as is."""
    return problem["prompt"].strip() + "\n" if benchmark in ("humaneval", "mbpp") else problem["prompt"]


def make_samples(problems: list[dict], completions: list[str], prompts: list[str] | None = None) -> list[dict]:
    """{"task_id", "solution"} per problem: the model's prompt + completion (evalplus's direct-completion
    solution), sanitized to the entry point and its deps."""
    from evalplus.sanitize import sanitize

    samples = []
    for i, (p, c) in enumerate(zip(problems, completions)):
        code = (prompts[i] if prompts is not None else p["prompt"]) + c
        # Unparsable code is still submitted as is, and simply fails.
        with contextlib.suppress(Exception):
            code = sanitize(code, entrypoint=p["entry_point"])
        samples.append({"task_id": p["task_id"], "solution": code})
    return samples


STATUSES = {"pass", "fail", "timeout", None}
CHILD = Path(__file__).with_name("_evalplus_child.py")


def _sandbox_env(dataset: str, limits: Limits | None = None) -> dict[str, str]:
    # evalplus caps each test process's address space itself; never above what the sandbox gives one process.
    test_memory = min(2 << 30, _process_memory(limits)) if limits else 2 << 30
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "XDG_CACHE_HOME": "{work}/xdg",
        "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "EVALPLUS_MAX_MEMORY_BYTES": str(test_memory),
        "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
        # pyarrow (imported by evalplus.data) otherwise reserves ~1 GiB of address space per process for its
        # allocator, which an address-space limit (the budget without a memory cgroup) would have to cover.
        "ARROW_DEFAULT_MEMORY_POOL": "system",
        "HUMANEVAL_OVERRIDE_PATH" if dataset == "humaneval" else "MBPP_OVERRIDE_PATH": "{in}/problems.jsonl",
    }


EVALPLUS_PROCESS_MEMORY = 1 << 30
"""Without a memory cgroup: the address space of each evalplus process (one that imports evalplus takes ~400 MiB)."""


def _process_memory(limits: Limits) -> int:
    from entrodrop_bench.evaluate.sandbox import memory_bound, rlimit_budget

    return rlimit_budget(limits, memory_bound())[0]


def _fitting_parallel(parallel: int, limits: Limits) -> int:
    """Test processes that fit the sandbox's process budget: the driver and its pool threads (~4), then one
    worker and one test process per parallel slot. Only the rlimit budget (no cgroup) ever lowers it."""
    from entrodrop_bench.evaluate.sandbox import memory_bound, rlimit_budget

    procs = rlimit_budget(limits, memory_bound())[1]
    fitting = max(1, min(parallel, (procs - 4) // 2))
    if fitting < parallel:
        log.info("evalplus: %d parallel test processes instead of %d, to keep the sandbox within its total memory "
                 "(no memory cgroup here: %d processes of %d MiB)", fitting, parallel, procs, _process_memory(limits) >> 20)
    return fitting


def _result_line(result, what: str, log_file: Path) -> dict:
    """The child's one JSON line; anything else (a crash, a killed child, garbage) is a failure, logged
    into the harness's own folder with an atomic write (which replaces, never follows, a planted link)."""
    try:
        if not result.ok:
            raise ValueError("child failed")
        out = json.loads(result.stdout)
        if not isinstance(out, dict):
            raise ValueError("not an object")
        return out
    except ValueError:
        write_text(log_file, result.stdout[-100_000:] + "\n--- stderr ---\n" + result.stderr)
        raise RuntimeError(f"evalplus {what} failed (exit {result.returncode}, timed out {result.timed_out}, "
                           f"isolation {result.isolation}); log: {log_file}; stderr tail: {result.stderr[-800:]}") from None


def _read_regular(path: Path, limit: int = 1 << 32) -> bytes | None:
    """A file's bytes, or None when it is missing, not a regular file, or a symlink (O_NOFOLLOW)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return fh.read(limit)


def ground_truth(data: bytes, dataset: str, cache_dir: Path | None, *, log_dir: Path,
                 allow_weak: bool = False) -> tuple[bytes, str, dict]:
    """(pickled expected outputs, evalplus's md5 of the dataset, reference seconds per input) for these problems.

    Computed by evalplus in a sandbox of its own that runs no generated code, then cached in `cache_dir`
    (harness-owned; no generated program ever gets it writable) with its sha256 and reference times beside
    it. A cached entry is used only when its bytes match that hash; those verified bytes are what the judge
    receives. The times (not the outputs) are what the sandbox that runs generated code receives.
    """
    from importlib.metadata import version

    md5 = hashlib.md5(data).hexdigest()  # evalplus's own cache key convention for a dataset file, not ours
    name = f"{dataset}-{md5}-evalplus{version('evalplus')}"
    entry, meta_file = evalplus_ground_truth_files(cache_dir, name) if cache_dir else (None, None)
    if entry is not None:
        blob, meta = _read_regular(entry), _read_regular(meta_file, 1 << 28)
        try:
            recorded = json.loads(meta) if meta else {}
            want, times = recorded["sha256"], recorded["times"]
        except (ValueError, KeyError, TypeError):
            want, times = None, None
        if blob is not None and want == bytes_sha256(blob) and isinstance(times, dict):
            return blob, md5, times
        if blob is not None or meta is not None:
            log.warning("evalplus ground-truth cache %s does not match its recorded sha256 (or lacks reference "
                        "times): recomputing", entry)
    limits = Limits(wall_s=600, cpu_s=600, memory_bytes=16 << 30, nproc=64, file_bytes=1 << 30,
                    open_files=1024, disk_bytes=(256 << 20) + 4 * len(data), total_memory_bytes=GT_TOTAL_MEMORY,
                    min_process_memory=EVALPLUS_PROCESS_MEMORY)
    result = run_sandboxed([sys.executable, "-I", "{in}/evalplus_child.py", "gt", dataset], limits=limits,
                           inputs={"problems.jsonl": data, "evalplus_child.py": CHILD.read_bytes()},
                           env=_sandbox_env(dataset, limits), allow_weak=allow_weak, output_limit=1 << 30)
    out = _result_line(result, "ground truth", CodeEvalDir(log_dir).ground_truth_log)
    if out.get("hash") != md5 or not isinstance(out.get("times"), dict):
        raise RuntimeError(f"evalplus hashed the dataset as {out.get('hash')}, expected {md5}")
    blob, times = base64.b64decode(out["pickle_b64"]), out["times"]
    if entry is not None:
        write_bytes(entry, blob)
        write_json(meta_file, {"dataset": dataset, "md5": md5, "sha256": bytes_sha256(blob),
                               "evalplus": version("evalplus"), "times": times})
    return blob, md5, times


RUN_STATUSES = {"done", "timeout", "crashed", "exec_error", "too_large"}


def _run_outputs(result, task_ids: list[str], md5: str, log_file: Path) -> dict:
    """The run sandbox's returned values, in the shape the judge reads; nothing in them is a verdict.

    Its stdout is one record line per task and a closing line; the samples could write there too, so lines
    that do not parse are skipped and the first well-formed record of each task is kept (a missing one counts
    as crashed). A run without its closing line (a crash, a killed driver) fails the evaluation loudly."""
    lines = result.stdout.splitlines()
    closing = None
    for line in reversed(lines):
        with contextlib.suppress(ValueError):
            row = json.loads(line)
            if isinstance(row, dict) and row.get("hash") == md5 and row.get("done") == len(task_ids):
                closing = row
                break
    if not result.ok or closing is None:
        write_text(log_file, result.stdout[-100_000:] + "\n--- stderr ---\n" + result.stderr)
        raise RuntimeError(f"evalplus run failed (exit {result.returncode}, timed out {result.timed_out}, isolation "
                           f"{result.isolation}); log: {log_file}; stderr tail: {result.stderr[-800:]}")
    crashed = {"status": "crashed", "values": []}
    clean: dict[str, dict] = {}
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if not isinstance(row, dict) or row.get("task_id") not in task_ids or row["task_id"] in clean:
            continue
        clean[row["task_id"]] = {}
        for phase in ("base", "plus"):
            rec = row.get(phase)
            ok = isinstance(rec, dict) and rec.get("status") in RUN_STATUSES and isinstance(rec.get("values"), list)
            clean[row["task_id"]][phase] = {"status": rec["status"], "values": rec["values"]} if ok else crashed
    return {t: clean.get(t, {"base": crashed, "plus": crashed}) for t in task_ids}


def _validated(out: dict, task_ids: list[str], md5: str) -> dict:
    """Per-task verdicts from the judge sandbox, checked against what was asked; scores recomputed here."""
    per_task = out.get("per_task")
    if out.get("hash") != md5 or not isinstance(per_task, dict) or set(per_task) != set(task_ids):
        raise RuntimeError("evalplus returned results for other tasks or another dataset than it was given")
    for row in per_task.values():
        if not isinstance(row, dict) or set(row) != {"base", "plus"} or not {row["base"], row["plus"]} <= STATUSES:
            raise RuntimeError(f"evalplus returned a malformed verdict: {str(row)[:200]}")
    n = len(task_ids)
    base = sum(per_task[t]["base"] == "pass" for t in task_ids)
    plus = sum(per_task[t]["base"] == "pass" and per_task[t]["plus"] == "pass" for t in task_ids)
    # Items score the primary metric, pass@1 over base + plus tests (a task passes only when both do).
    items = {"ids": list(task_ids),
             "scores": [float(per_task[t]["base"] == "pass" and per_task[t]["plus"] == "pass") for t in task_ids]}
    return {"pass@1": plus / n, "base_pass@1": base / n, "n_tasks": n, "per_task": {t: per_task[t] for t in task_ids},
            "items": items}


GT_TOTAL_MEMORY = 8 << 30
RUN_TOTAL_MEMORY = 8 << 30
RUN_OUTPUT_BYTES = 1 << 30
"""The most the `run` sandbox may write back for a whole evaluation (each test set of each sample: at most 64 MiB)."""


def evaluate_samples(dataset_file: Path, samples: list[dict], work_dir: Path, *, dataset: str = "humaneval",
                     parallel: int | None = None, cache_dir: Path | None = None,
                     min_time_limit: float = MIN_TIME_LIMIT_S, allow_weak: bool = False) -> dict:
    """Run evalplus on samples; returns {"pass@1", "base_pass@1", "n_tasks", "per_task", "items", "isolation",
    "ground_truth_sha256"} (`items`: task ids in dataset order and each one's pass@1, 0 or 1).

    Two sandboxes, so that no channel the samples can write carries a verdict: `run` executes the samples with
    the problems and the reference times but no expected output, and returns only the values they returned;
    `judge` runs no generated code and compares those values with the ground truth through evalplus's own
    check. `work_dir` is the harness's record (samples.jsonl, and evalplus.log on failure): no sandboxed program
    can write there.
    """
    problems = read_problems(dataset_file)
    task_ids = [p["task_id"] for p in problems]
    data = "".join(json.dumps(p) + "\n" for p in problems).encode()
    samples_bytes = "".join(json.dumps(s) + "\n" for s in samples).encode()
    record = CodeEvalDir(work_dir)
    write_bytes(record.samples_file, samples_bytes)
    truth, md5, times = ground_truth(data, dataset, cache_dir, log_dir=work_dir, allow_weak=allow_weak)
    parallel = parallel or os.cpu_count() or 1
    wall = 120 + 4.0 * len(problems)
    out_bytes = RUN_OUTPUT_BYTES
    limits = Limits(wall_s=wall, cpu_s=int(wall * parallel), memory_bytes=16 << 30, nproc=8 * parallel + 64,
                    file_bytes=out_bytes, open_files=1024, disk_bytes=(256 << 20) + 4 * len(samples_bytes),
                    shm_bytes=64 << 20, total_memory_bytes=RUN_TOTAL_MEMORY, min_process_memory=EVALPLUS_PROCESS_MEMORY)
    parallel = _fitting_parallel(parallel, limits)
    literal = Path(__file__).with_name("_literal.py").read_bytes()
    args = [dataset, "{in}", str(parallel), str(min_time_limit), md5]
    times_bytes = json.dumps({t: times[t] for t in task_ids}).encode()
    ran = run_sandboxed([sys.executable, "-I", "{in}/evalplus_child.py", "run", *args], limits=limits,
                        inputs={"problems.jsonl": data, "samples.jsonl": samples_bytes, "times.json": times_bytes,
                                "_literal.py": literal, "evalplus_child.py": CHILD.read_bytes()},
                        env=_sandbox_env(dataset, limits), allow_weak=allow_weak, output_limit=out_bytes)
    outputs = _run_outputs(ran, task_ids, md5, record.log_file)
    outputs_bytes = json.dumps(outputs).encode()
    judge_limits = Limits(wall_s=wall, cpu_s=int(wall * parallel), memory_bytes=16 << 30, nproc=8 * parallel + 64,
                          file_bytes=256 << 20, open_files=1024, disk_bytes=(256 << 20) + 4 * len(outputs_bytes),
                          shm_bytes=64 << 20, total_memory_bytes=RUN_TOTAL_MEMORY, min_process_memory=EVALPLUS_PROCESS_MEMORY)
    judged = run_sandboxed([sys.executable, "-I", "{in}/evalplus_child.py", "judge", *args], limits=judge_limits,
                           inputs={"problems.jsonl": data, "ground_truth.pkl": truth, "outputs.json": outputs_bytes,
                                   "_literal.py": literal, "evalplus_child.py": CHILD.read_bytes()},
                           env=_sandbox_env(dataset, judge_limits), allow_weak=allow_weak)
    summary = _validated(_result_line(judged, "judge", record.log_file), task_ids, md5)
    return {**summary, "isolation": ran.isolation, "ground_truth_sha256": bytes_sha256(truth)}


def run_evalplus(model: Any, tokenizer: Any, benchmark: str, data: Path | None, *, work_dir: Path,
                 batch_size: int, limit: int | None, max_gen_toks: int, cache_dir: Path | None = None,
                 allow_weak: bool = False, generator: Generator | None = None) -> dict:
    """Generate, sanitize and evaluate one code benchmark for a loaded checkpoint. `generator` (the vLLM
    backend's) replaces HF generation on `model`, with the same prompts, stops and generation cap."""
    if data is None:
        raise DataError(f"{benchmark}: evalplus runs offline here and needs a local dataset file: set "
                        f"eval.data_overrides.{benchmark} to an evalplus-schema .jsonl(.gz)")
    problems = read_problems(data)[: limit or None]
    record = CodeEvalDir(work_dir)
    subset = record.dataset_file
    write_text(subset, "".join(json.dumps(p) + "\n" for p in problems))
    prompts = [model_prompt(benchmark, p) for p in problems]
    if generator is not None:
        completions = generator(prompts, max_new_tokens=max_gen_toks, stop=stop_sequences(benchmark))
    else:
        completions = generate(model, tokenizer, prompts, batch_size=batch_size, max_new_tokens=max_gen_toks,
                               stop=stop_sequences(benchmark))
    samples = make_samples(problems, completions, prompts)
    dataset = "mbpp" if benchmark == "mbpp" else "humaneval"
    summary = evaluate_samples(subset, samples, record.eval_dir, dataset=dataset, cache_dir=cache_dir,
                               allow_weak=allow_weak)
    return summary
