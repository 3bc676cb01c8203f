"""GPU measurements through the real trainer, at the Qwen3-0.6B shape (random weights, seq 4096, bf16-mixed).

    python benchmarks/gpu_check.py                    # on a CUDA machine; JSON in benchmarks/gpu/ (or $OUT)
    python benchmarks/gpu_check.py --shape tiny --steps 3   # the same code path, small (on CPU without CUDA)
    python benchmarks/gpu_check.py --tiny-preset      # also: the tiny preset's trainer for seven methods
                                                      # (after `entrodrop-bench prepare configs/tiny.yaml`)

Writes `<gpu>_qwen3_0.6b_shape.json` with:

- `train`: tokens/s per GPU and MFU (6 N tokens/s over the GPU's dense bf16 peak; N counts every weight once,
  the tied LM head included; attention's own FLOPs and the gradient-checkpointing recompute are not model
  FLOPs), peak GPU memory, for `plain` trained by entrodrop_bench.train.trainer.Trainer under the Qwen3 presets'
  settings (bf16-mixed, gradient checkpointing, micro-batch 4, chunked or Liger loss);
- `entrodrop_over_plain`: EntroDrop's median step time over plain's, both through the same trainer;
- `loss_memory`: peak extra GPU memory of the training loss alone, forward + backward, at V 151,936, T 4096,
  B 4, H 1024 under bf16 autocast: chunked (and Liger, when installed) over the full-logits loss.

The machine-specific part is only the peak table; everything else runs on CPU too (tests/test_gpu_check.py).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# Dense bf16 tensor-core peaks (FLOP/s, no sparsity), from the vendors' data sheets; matched on the device name.
BF16_PEAK = {"H200": 989e12, "H100 PCIe": 756e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 70e12}

SHAPES = {
    # Qwen3-0.6B: 28 layers, hidden 1024, MLP 3072, 16 query / 8 key-value heads of 128, tied embeddings.
    "qwen3-0.6b": {"vocab_size": 151936, "hidden_size": 1024, "intermediate_size": 3072, "num_hidden_layers": 28,
                   "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128, "seq_len": 4096, "micro_batch": 4, "target_docs": 100},
    "tiny": {"vocab_size": 1024, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "seq_len": 128, "micro_batch": 4, "target_docs": 20},
}
WORDS = ["the", "of", "and", "to", "in", "is", "was", "for", "on", "that", "with", "as", "by", "at", "from", "river", "stone", "market", "winter", "song", "garden", "lamp", "train", "cloud", "bread"]


def bf16_peak(device: torch.device) -> tuple[str, float | None]:
    if device.type != "cuda":
        return "cpu", None
    name = torch.cuda.get_device_name(device)
    return name, next((peak for key, peak in BF16_PEAK.items() if key in name), None)


def build_world(root: Path, shape: dict, general_tokens: int, seed: int = 0) -> Path:
    """A local tokenizer, a randomly initialised Qwen3 of `shape` and two jsonl corpora (the general one with
    about `general_tokens` tokens, so that it does not repeat); returns the model dir."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

    rng = random.Random(seed)

    def doc(n: int) -> str:
        return " ".join(rng.choice(WORDS) + (str(rng.randint(0, 99)) if rng.random() < 0.2 else "") for _ in range(n))

    target = [doc(rng.randint(100, 400)) for _ in range(shape["target_docs"])]
    general = [doc(rng.randint(100, 400)) for _ in range(max(20, general_tokens // 250))]
    raw = Tokenizer(models.BPE(unk_token=None))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.train_from_iterator(target, trainers.BpeTrainer(vocab_size=400, special_tokens=["<|pad|>", "<|eos|>"],
                                                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, pad_token="<|pad|>", eos_token="<|eos|>")
    model_dir = root / "model"
    tok.save_pretrained(model_dir)
    torch.manual_seed(seed)
    arch = {k: v for k, v in shape.items() if k not in ("seq_len", "micro_batch", "target_docs")}
    config = Qwen3Config(**arch, max_position_embeddings=shape["seq_len"], tie_word_embeddings=True, pad_token_id=tok.pad_token_id,
                         eos_token_id=tok.eos_token_id, bos_token_id=tok.eos_token_id, dtype="bfloat16")
    Qwen3ForCausalLM(config).to(torch.bfloat16).save_pretrained(model_dir)  # stored in bf16, as the hub's Qwen3 is
    for name, docs in (("target", target), ("general", general)):
        (root / f"{name}.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    return model_dir


def experiment(root: Path, model_dir: Path, shape: dict, steps: int, methods: dict):
    """The Qwen3 presets' training settings on the local world, for `steps` optimizer steps (2 micro-batches each)."""
    from entrodrop_bench.config import ExperimentConfig, check_config

    step_tokens = 2 * shape["micro_batch"] * shape["seq_len"]
    config = ExperimentConfig.model_validate({
        "name": "gpu-check",
        "model": {"name_or_path": str(model_dir), "dtype": "bfloat16"},
        "data": {"target": {"source": "json", "path": str(root / "target.jsonl")},
                 "general": {"source": "json", "path": str(root / "general.jsonl")},
                 "token_budget": step_tokens * (steps + 1), "seq_len": shape["seq_len"], "validation_fraction": 0.05, "max_validation_docs": 4},
        "train": {"lr": 1e-5, "schedule": "constant", "warmup_fraction": 0.0, "global_batch_tokens": step_tokens,
                  "micro_batch_size": shape["micro_batch"], "checkpoint_every_epochs": 1e6, "precision": "bf16-mixed",
                  "gradient_checkpointing": True},
        "methods": methods,
        "eval": {"lm_eval_tasks": ["gsm8k"], "domains": {"math": ["gsm8k"]}},  # never evaluated; selection's minimum
        "output": {"runs_dir": str(root / "runs"), "results_dir": str(root / "results")},
    })
    check_config(config)
    return config


def prepared_in_process(config, layout, root: Path):
    """What `entrodrop_bench.prepare.stage.prepare` builds, from the same local files, tokenized in this process:
    the GPU image has no `datasets` (prepare reads jsonl through it), and the measurement is the trainer's."""
    from entrodrop_bench.models import load_tokenizer
    from entrodrop_bench.prepare.data import make_plan, split_validation, tokenize_texts
    from entrodrop_bench.prepare.stage import Prepared

    model_path = config.model.name_or_path
    tokenizer = load_tokenizer(config, model_path)

    def corpus(name: str):
        texts = (json.loads(line)["text"] for line in (root / f"{name}.jsonl").read_text().splitlines())
        return tokenize_texts(texts, tokenizer, source=f"data.{name}")

    train, val = split_validation(corpus("target"), config.data.validation_fraction, config.data.max_validation_docs, seed=0)
    plan = make_plan(config.data.token_budget, config.data.seq_len, config.train.global_batch_tokens, config.data.mix_ratio[0], train.n_tokens)
    prepared = Prepared(config, layout, model_path, tokenizer, train, val, corpus("general"), plan)
    # The prepare stage's base-model passes (signals, gate shares), which training only reads.
    from entrodrop_bench.prepare.signals import warm_caches

    warm_caches(prepared)
    return prepared


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_steps(prepared, run: str, steps: int, device: torch.device) -> dict:
    """Train `run` for `steps` optimizer steps through the real Trainer (stopping before its only checkpoint);
    per-step wall times and the peak GPU memory of the whole run."""
    from entrodrop_bench.train.trainer import Trainer

    times: list[float] = []

    class Timed(Trainer):
        def _optimizer_step(self, *args, **kwargs):
            _sync(device)
            tic = time.perf_counter()
            loss = super()._optimizer_step(*args, **kwargs)
            _sync(device)
            times.append(time.perf_counter() - tic)
            return loss

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    state = Timed(prepared, run, 0, progress=False, stop_after_step=steps).train()
    assert state == "running" and len(times) == steps, (state, len(times))
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return {"step_s": times, "peak_memory_GiB": None if peak is None else peak / 2**30}


def loss_memory(shape: dict, device: torch.device, batch: int = 4) -> dict:
    """Peak extra memory of the training loss alone (forward + backward) under bf16 autocast, per variant."""
    from entrodrop_bench.train.loss import (
        chunked_token_losses,
        liger_available,
        liger_loss_sum,
        naive_token_losses,
    )

    if device.type != "cuda":
        return {"skipped": "needs CUDA memory statistics (on CPU: `make bench`, row 8)"}
    seq, hidden, vocab = shape["seq_len"], shape["hidden_size"], shape["vocab_size"]
    variants = {"naive": lambda h, w, y: naive_token_losses(torch.nn.functional.linear(h, w), y).sum(),
                "chunked": lambda h, w, y: chunked_token_losses(h, w, None, y).sum()}
    if liger_available(device):
        variants["liger"] = lambda h, w, y: liger_loss_sum(h, w, None, y)
    out = {"batch": batch, "seq": seq, "hidden": hidden, "vocab": vocab}
    for name, fn in variants.items():
        torch.manual_seed(0)
        h = torch.randn(batch, seq, hidden, device=device, requires_grad=True)
        w = (torch.randn(vocab, hidden, device=device) * 0.02).requires_grad_()
        y = torch.randint(0, vocab, (batch, seq), device=device)
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = fn(h, w, y)
        loss.backward()
        torch.cuda.synchronize(device)
        out[f"{name}_GiB"] = (torch.cuda.max_memory_allocated(device) - base) / 2**30
        out[f"{name}_loss"] = float(loss)
        del h, w, y, loss
        torch.cuda.empty_cache()
    for name in variants:
        if name != "naive":
            out[f"{name}_over_naive"] = out[f"{name}_GiB"] / out["naive_GiB"]
    return out


def run(shape_name: str, steps: int, warmup: int, device: torch.device, out_dir: Path) -> dict:
    from entrodrop_bench.paths import Layout

    shape = SHAPES[shape_name]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model_dir = build_world(root, shape, general_tokens=2 * shape["micro_batch"] * shape["seq_len"] * (steps + 1))
        methods = {"plain": {"plugin": "plain"}, "entrodrop": {"plugin": "entrodrop", "params": {"gamma_max": 0.1, "schedule": "static"}}}
        config = experiment(root, model_dir, shape, steps, methods)
        prepared = prepared_in_process(config, Layout.from_config(config), root)
        n_params = sum(p.numel() for p in prepared.load_base_model().parameters())
        runs = {name: train_steps(prepared, name, steps, device) for name in ("plain", "entrodrop")}
    step_tokens = config.train.global_batch_tokens
    timed = {name: r["step_s"][warmup:] for name, r in runs.items()}
    plain_s = statistics.median(timed["plain"])
    tokens_per_s = step_tokens / plain_s
    gpu, peak = bf16_peak(device)
    result = {
        "device": gpu, "torch": torch.__version__, "shape": shape_name, "params": n_params, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "settings": {"precision": "bf16-mixed", "gradient_checkpointing": True, "seq_len": shape["seq_len"], "micro_batch": shape["micro_batch"],
                     "tokens_per_step": step_tokens, "steps": steps, "warmup_steps_excluded": warmup},
        "train": {"tokens_per_s_per_gpu": tokens_per_s, "step_s_median": plain_s,
                  "mfu": None if peak is None else 6 * n_params * tokens_per_s / peak, "bf16_peak_flops": peak,
                  "peak_memory_GiB": runs["plain"]["peak_memory_GiB"]},
        "entrodrop_over_plain": {"ratio": statistics.median(timed["entrodrop"]) / plain_s, "entrodrop_s": statistics.median(timed["entrodrop"]),
                                 "plain_s": plain_s, "peak_memory_GiB": runs["entrodrop"]["peak_memory_GiB"]},
        "loss_memory": loss_memory(shape, device),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    tag = gpu.replace("NVIDIA ", "").split()[0].lower() if device.type == "cuda" else "cpu"
    (out_dir / f"{tag}_{shape_name.replace('-', '_')}_shape.json").write_text(json.dumps(result, indent=1))
    return result


TINY_METHODS = ["plain", "entrodrop", "token_dropout", "neftune", "hidden_dropout@p=0.1", "weight_decay@weight_decay=0.1", "entrodrop_static"]


def train_tiny_methods() -> dict:
    """The tiny preset's trainer (fp32, as on CPU) for seven methods: validation minima and throughput."""
    import shutil
    import subprocess

    runs = Path(tempfile.mkdtemp()) / "runs"
    shutil.copytree(REPO / "runs/tiny/world", runs / "world", dirs_exist_ok=True)
    cmd = [sys.executable, "-m", "entrodrop_bench.cli", "train", str(REPO / "configs/tiny.yaml"), f"output.runs_dir={runs}",
           f"output.results_dir={runs.parent / 'results'}", "train.parallel_runs=1", "train.threads=null", "--no-progress"]
    subprocess.run(cmd + [arg for run in TINY_METHODS for arg in ("--run", run)], check=True)
    summary = {}
    for run_dir in sorted((runs / "train").glob("*/seed0")):
        curve = json.loads((run_dir / "val_curve.json").read_text())[1:]
        log = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
        best = min(curve, key=lambda p: p["overall"])
        summary[run_dir.parent.name] = {"min_val": best["overall"], "min_epoch": best["target_epoch"], "final_val": curve[-1]["overall"],
                                        "tokens_per_s": statistics.median(r["tokens_per_s"] for r in log)}
    return summary


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="qwen3-0.6b")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2, help="first steps left out of the medians")
    parser.add_argument("--tiny-preset", action="store_true", help="also train the tiny preset's methods (needs runs/tiny/world)")
    parser.add_argument("--out", type=Path, default=Path(os.environ["OUT"]) if "OUT" in os.environ else REPO / "benchmarks" / "gpu")
    args = parser.parse_args(argv)
    if args.steps <= args.warmup:
        parser.error("--steps must exceed --warmup")
    # The trainer runs wherever accelerate puts it: the GPU when there is one.
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    result = run(args.shape, args.steps, args.warmup, device, args.out)
    print(json.dumps(result, indent=1))
    if args.tiny_preset:
        tiny = train_tiny_methods()
        (args.out / f"{bf16_peak(device)[0].replace('NVIDIA ', '').split()[0].lower()}_tiny_train.json").write_text(json.dumps(tiny, indent=1))
    return result


if __name__ == "__main__":
    main()
