"""GPU check, run on a CUDA machine from the repo root after `entrodrop-bench prepare configs/tiny.yaml`:

1. the real trainer (accelerate, bf16 autocast) on the tiny preset for seven methods;
2. EntroDrop's training step / plain step at a Qwen3-0.6B shape (seq 4096, random weights), same
   batches, interleaved repeats.

    python benchmarks/gpu_check.py      # results in $OUT (or /tmp/out): gpu_tiny_train.json, gpu_step_ratio.json
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

OUT = Path(os.environ.get("OUT", "/tmp/out"))
RUNS = Path("/tmp/gpu/runs")
METHODS = ["plain", "entrodrop", "token_dropout", "neftune", "hidden_dropout@p=0.1", "weight_decay@weight_decay=0.1", "entrodrop_static"]


def train_tiny_methods() -> dict:
    shutil.copytree("runs/tiny/world", RUNS / "world", dirs_exist_ok=True)
    cmd = [sys.executable, "-m", "entrodrop_bench.cli", "train", "configs/tiny.yaml", f"output.runs_dir={RUNS}",
           "output.results_dir=/tmp/gpu/results", "train.parallel_runs=1", "train.threads=null", "--no-progress"]
    cmd += [arg for run in METHODS for arg in ("--run", run)]
    subprocess.run(cmd, check=True)
    summary = {}
    for run_dir in sorted((RUNS / "train").glob("*/seed0")):
        curve = json.loads((run_dir / "val_curve.json").read_text())[1:]
        log = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
        best = min(curve, key=lambda p: p["overall"])
        summary[run_dir.parent.name] = {
            "state": json.loads((run_dir / "status.json").read_text())["state"],
            "min_val": best["overall"], "min_epoch": best["target_epoch"], "final_val": curve[-1]["overall"],
            "tokens_per_s": statistics.median(r["tokens_per_s"] for r in log), "masked_fraction": log[-1].get("masked_fraction"),
        }
    return summary


def entrodrop_step_ratio(repeats: int = 20) -> dict:
    from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

    from entrodrop_bench.regularizer import PrepareContext, TokenMeta, build_regularizer

    cfg = Qwen3Config(vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16,
                      num_key_value_heads=8, head_dim=128, max_position_embeddings=4096, tie_word_embeddings=True)
    dev, batch, seq = torch.device("cuda"), 2, 4096
    docs = [torch.randint(0, cfg.vocab_size, (seq,)).tolist() for _ in range(batch)]
    ids = torch.tensor(docs, device=dev)
    meta = {"domain": torch.ones(batch, seq, dtype=torch.long, device=dev), "doc_id": torch.arange(batch, device=dev)[:, None].expand(batch, seq),
            "position": torch.arange(seq, device=dev).expand(batch, seq), "is_special": torch.zeros(batch, seq, dtype=torch.bool, device=dev),
            "is_pad": torch.zeros(batch, seq, dtype=torch.bool, device=dev), "total_steps": 100}
    tokenizer = AutoTokenizer.from_pretrained(RUNS / "world" / "tokenizer")
    setups = {}
    for name, params in (("entrodrop", {"gamma_max": 0.1, "schedule": "static"}), ("plain", {})):
        torch.manual_seed(0)
        model = Qwen3ForCausalLM(cfg).to(dev)
        reg = build_regularizer(name, params)
        reg.prepare(PrepareContext(model=model, base_model_path="random", tokenizer=tokenizer, target_docs=docs, cache_dir=Path("/tmp/gpu/cache"),
                                   seq_len=seq, total_steps=100, device=dev, extra={"seed": 0}))
        model.train()
        setups[name] = (model, reg, torch.optim.AdamW(model.parameters(), lr=1e-5))

    def timed(name: str, step: int) -> float:
        model, reg, optimizer = setups[name]
        torch.cuda.synchronize()
        tic = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            embeds = reg.transform_embeddings(model.get_input_embeddings()(ids), TokenMeta(**meta, step=step, generator=torch.Generator().manual_seed(step)))
            loss = model(inputs_embeds=embeds, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        return time.perf_counter() - tic

    for step in range(3):  # warm-up
        timed("entrodrop", step), timed("plain", step)
    pairs = [(timed("entrodrop", s), timed("plain", s)) for s in range(3, 3 + repeats)]
    ratios = [a / b for a, b in pairs]
    return {"ratio_median": statistics.median(ratios), "min": min(ratios), "max": max(ratios),
            "entrodrop_s": statistics.median(a for a, _ in pairs), "plain_s": statistics.median(b for _, b in pairs),
            "tokens_per_step": batch * seq, "log": setups["entrodrop"][1].log_values()}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, fn in (("gpu_tiny_train.json", train_tiny_methods), ("gpu_step_ratio.json", entrodrop_step_ratio)):
        result = fn()
        print(json.dumps(result, indent=1))
        (OUT / name).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
