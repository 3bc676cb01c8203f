"""vLLM vs HF generation time per checkpoint (issue 15, points 3-4): a tiny-preset checkpoint and a random-init
Qwen3-0.6B-shaped model.

    python benchmarks/gpu_eval.py                          # CUDA + the vllm extra; JSON in benchmarks/gpu/ (or $OUT)
    python benchmarks/gpu_eval.py --tiny-checkpoint runs/tiny/train/plain/seed0/checkpoint-2340
    python benchmarks/gpu_eval.py --dry-run                # CPU: the same workload and JSON at a tiny shape, HF only
    .venv-vllm/bin/python benchmarks/gpu_eval.py --small   # vLLM's CPU build (make test-vllm): both engines, tiny shape

Models: `tiny_preset` is `--tiny-checkpoint`, else the tiny preset's base model (every run's starting point,
built by `prepare` from configs/tiny.yaml into a temporary folder); `qwen3_0.6b_shape` is benchmarks/gpu_check.py's
random-init Qwen3-0.6B shape (28 layers, hidden 1024, vocab 151,936; bf16) with its local tokenizer.

Workload per model, the same for both engines (both capped to fit the model's positions): `--prompts` prompts (tiny preset: its tiny_math questions in the
task's own layout; 0.6B shape: text of gpu_check's local corpus, cut to `--prompt-tokens` tokens), each decoded
greedily for exactly `--new-tokens` tokens (eos ignored, no stop strings, no detokenization), so that both do
the same work. HF: the evaluate stage's loader (`load_causal_lm`), left-padded batched `generate` at
`--batch-size` (eval.batch_size). vLLM: one `LLM` engine per checkpoint, as `eval.backend: vllm` builds it
(`vllm_backend.lm_eval_vllm_args`: dtype, gpu_memory_utilization, seed), all prompts handed to its scheduler.

Per model and engine: load seconds, generation seconds, generated tokens/s, and, at that rate, the estimated
generation hours of one checkpoint of the paper's grid (issue 15: about 10,600 greedy generations of up to
1,024 tokens; an upper bound, since most answers stop earlier). `agreement`: the share of prompts whose
greedy tokens are identical under both engines, and the mean share of positions before they first differ.
`--dry-run` (no GPU): both models at gpu_check's tiny shape, 4 prompts x 8 tokens, HF only; vLLM is listed as
skipped with the reason. `--small`: the same shapes and sizes with vLLM measured too (its CPU build here, in
.venv-vllm). Written as `<gpu>_eval_backends.json` (`cpu_eval_backends_dry_run.json`, `..._small.json`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import types
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

PAPER_GENERATIONS_PER_CHECKPOINT = 10_600
PAPER_MAX_NEW_TOKENS = 1_024


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def tiny_preset_model(root: Path, checkpoint: Path | None) -> tuple[Path, list[str], str]:
    """(model folder, prompts, what it is): the given checkpoint, else the tiny preset's base model, with the
    tiny world's tiny_math questions in the task's layout ("<question>\\n")."""
    from entrodrop_bench.config import load_config
    from entrodrop_bench.paths import Layout
    from entrodrop_bench.prepare.stage import build_world

    config = load_config(REPO / "configs" / "tiny.yaml",
                         [f"output.runs_dir={root / 'runs'}", f"output.results_dir={root / 'results'}"])
    world = build_world(config, Layout.from_config(config), lambda _: None)
    lines = world.benchmark_file("tiny_math").read_text().splitlines()
    prompts = [json.loads(line)["question"] + "\n" for line in lines if line.strip()]
    if checkpoint is not None:
        return checkpoint, prompts, f"checkpoint {checkpoint}"
    return world.base_model_dir, prompts, "tiny preset base model (step 0 of every run), configs/tiny.yaml"


SMALL_VLLM_SHAPE = {"hidden_size": 128, "intermediate_size": 256, "head_dim": 32}
"""`--small` changes to gpu_check's tiny shape: vLLM's CPU attention has no kernel for its head_dim 16 (32 is
the tiny preset's)."""


def shaped_model(root: Path, shape_name: str, changes: dict | None = None) -> tuple[Path, list[str], str]:
    """gpu_check's random-init model of `shape_name` (with `changes`), and prompts from its local corpus."""
    import gpu_check

    shape = {**gpu_check.SHAPES[shape_name], **(changes or {})}
    model_dir = gpu_check.build_world(root, shape, general_tokens=20_000)
    docs = [json.loads(line)["text"] for line in (root / "target.jsonl").read_text().splitlines()]
    return model_dir, docs, f"random-init Qwen3, gpu_check shape {shape_name!r}" + (f" with {changes}" if changes else "")


def workload(model_dir: Path, texts: list[str], n_prompts: int, prompt_tokens: int) -> list[list[int]]:
    """`n_prompts` prompts as token ids (texts repeated as needed), each cut to at most `prompt_tokens`."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    ids = [tok(t)["input_ids"][:prompt_tokens] for t in texts if t.strip()]
    return [ids[i % len(ids)] for i in range(n_prompts)]


def hf_generate(model_dir: Path, prompts: list[list[int]], *, new_tokens: int, batch_size: int, dtype: str) -> dict:
    """The HF engine: load through the evaluate stage's loader, then left-padded batched greedy `generate`."""
    from entrodrop_bench.models import load_causal_lm

    device = "cuda" if torch.cuda.is_available() else "cpu"
    tic = time.perf_counter()
    model = load_causal_lm(model_dir, dtype=dtype, device=device)
    _sync()
    load_s = time.perf_counter() - tic
    pad = model.config.pad_token_id if model.config.pad_token_id is not None else 0
    outputs: list[list[int]] = []
    tic = time.perf_counter()
    for b in range(0, len(prompts), batch_size):
        batch = prompts[b:b + batch_size]
        width = max(len(p) for p in batch)
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in batch], device=device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch], device=device)
        with torch.no_grad():
            gen = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=new_tokens,
                                 min_new_tokens=new_tokens, pad_token_id=pad)
        outputs += gen[:, width:].tolist()
    _sync()
    gen_s = time.perf_counter() - tic
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return {"load_s": load_s, "generate_s": gen_s, "outputs": outputs}


def vllm_generate(model_dir: Path, prompts: list[list[int]], *, new_tokens: int, dtype: str,
                  gpu_memory_utilization: float, cpu_kvcache_gib: float) -> dict:
    """The vLLM engine as `eval.backend: vllm` starts it (on a GPU, or vLLM's CPU build), then all prompts in one call."""
    from vllm import LLM, SamplingParams

    from entrodrop_bench.evaluate.vllm_backend import VLLM_SEED, engine_memory_args, release

    tic = time.perf_counter()
    llm = LLM(model=str(model_dir), dtype=dtype, seed=VLLM_SEED,
              **engine_memory_args(gpu_memory_utilization, cpu_kvcache_gib))
    load_s = time.perf_counter() - tic
    params = SamplingParams(temperature=0.0, max_tokens=new_tokens, min_tokens=new_tokens, ignore_eos=True,
                            detokenize=False, seed=VLLM_SEED)
    tic = time.perf_counter()
    outs = llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
    _sync()
    gen_s = time.perf_counter() - tic
    outputs = [list(o.outputs[0].token_ids) for o in outs]
    holder = types.SimpleNamespace(model=llm)  # `release` frees an engine held as `.model` (lm-eval's layout)
    del llm
    release(holder)
    return {"load_s": load_s, "generate_s": gen_s, "outputs": outputs}


def agreement(a: list[list[int]], b: list[list[int]]) -> dict:
    """Share of prompts with identical greedy tokens, and the mean share of positions before the first difference."""
    same, prefix = 0, []
    for x, y in zip(a, b):
        n = next((i for i, (u, v) in enumerate(zip(x, y)) if u != v), min(len(x), len(y)))
        same += x == y
        prefix.append(n / max(len(x), 1))
    return {"identical_prompts": same / len(a), "mean_prefix_share": sum(prefix) / len(prefix)}


def summarize(run: dict, n_prompts: int, new_tokens: int) -> dict:
    tokens = n_prompts * new_tokens
    rate = tokens / run["generate_s"] if run["generate_s"] > 0 else None
    est = None if rate is None else PAPER_GENERATIONS_PER_CHECKPOINT * PAPER_MAX_NEW_TOKENS / rate / 3600
    return {"load_s": round(run["load_s"], 3), "generate_s": round(run["generate_s"], 3), "generated_tokens": tokens,
            "tokens_per_s": rate, "paper_checkpoint_generation_h_upper_bound": est}


def measure(model_dir: Path, texts: list[str], what: str, args, vllm_reason: str | None) -> dict:
    from transformers import AutoConfig

    dtype = "bfloat16" if torch.cuda.is_available() else "float32"
    # Prompt and answer fit the model's positions (the tiny preset has few): prompts first, then the answer cap.
    positions = AutoConfig.from_pretrained(model_dir).max_position_embeddings
    prompts = workload(model_dir, texts, args.prompts, min(args.prompt_tokens, positions // 2))
    new_tokens = min(args.new_tokens, positions - max(map(len, prompts)))
    hf = hf_generate(model_dir, prompts, new_tokens=new_tokens, batch_size=args.batch_size, dtype=dtype)
    entry = {"model": what, "dtype": dtype, "max_positions": positions, "prompts": len(prompts),
             "mean_prompt_tokens": sum(map(len, prompts)) / len(prompts), "new_tokens": new_tokens,
             "hf": summarize(hf, len(prompts), new_tokens)}
    if vllm_reason is not None:
        entry["vllm"] = {"skipped": vllm_reason}
        return entry
    vl = vllm_generate(model_dir, prompts, new_tokens=new_tokens, dtype=dtype,
                       gpu_memory_utilization=args.gpu_memory_utilization, cpu_kvcache_gib=args.cpu_kvcache_gib)
    entry["vllm"] = summarize(vl, len(prompts), new_tokens)
    entry["hf_over_vllm"] = {"generate": hf["generate_s"] / vl["generate_s"],
                             "load_plus_generate": (hf["load_s"] + hf["generate_s"]) / (vl["load_s"] + vl["generate_s"])}
    entry["agreement"] = agreement(hf["outputs"], vl["outputs"])
    return entry


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=512)
    parser.add_argument("--prompt-tokens", type=int, default=128, help="prompts are cut to at most this many tokens")
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16, help="HF batch size (eval.batch_size)")
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.85, help="eval.vllm_gpu_memory_utilization")
    parser.add_argument("--tiny-checkpoint", type=Path, help="a trained tiny-preset checkpoint (default: its base model)")
    parser.add_argument("--cpu-kvcache-gib", type=float, default=1.0, help="eval.vllm_cpu_kvcache_gib (vLLM's CPU build)")
    parser.add_argument("--dry-run", action="store_true", help="CPU: tiny shapes, 4 prompts x 8 tokens, HF only")
    parser.add_argument("--small", action="store_true",
                        help="the dry run's shapes and sizes with vLLM measured too (vLLM's CPU build: make test-vllm)")
    parser.add_argument("--out", type=Path, default=Path(os.environ["OUT"]) if "OUT" in os.environ else REPO / "benchmarks" / "gpu")
    args = parser.parse_args(argv)
    from entrodrop_bench.evaluate.vllm_backend import backend_problem

    small = args.dry_run or args.small
    if small:
        args.prompts, args.new_tokens, args.prompt_tokens, args.batch_size = 4, 8, 16, 2
    reason = "dry run" if args.dry_run else backend_problem()
    if reason is not None and not args.dry_run:
        print(f"vLLM is not measured: {reason}", file=sys.stderr)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    result = {"device": device, "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
              "dry_run": args.dry_run, "vllm": _version("vllm"), "transformers": _version("transformers"),
              "paper_checkpoint_workload": {"generations": PAPER_GENERATIONS_PER_CHECKPOINT,
                                            "max_new_tokens": PAPER_MAX_NEW_TOKENS}, "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        changes = SMALL_VLLM_SHAPE if args.small else None
        if small:  # the tiny world takes minutes to pre-train on CPU: a shaped stand-in, named as such
            model, texts, what = shaped_model(root / "tiny", "tiny", changes)
            what = "small-run stand-in for the tiny preset: " + what
        else:
            model, texts, what = tiny_preset_model(root / "tiny", args.tiny_checkpoint)
        result["models"]["tiny_preset"] = measure(model, texts, what, args, reason)
        model, texts, what = shaped_model(root / "qwen", "tiny" if small else "qwen3-0.6b", changes)
        result["models"]["qwen3_0.6b_shape"] = measure(model, texts, what, args, reason)
    args.out.mkdir(parents=True, exist_ok=True)
    tag = device.replace("NVIDIA ", "").split()[0].lower() if device != "cpu" else "cpu"
    name = f"{tag}_eval_backends{'_dry_run' if args.dry_run else '_small' if args.small else ''}.json"
    (args.out / name).write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return result


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
