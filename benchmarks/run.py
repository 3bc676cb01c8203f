"""`make bench`: speed and memory ratios, each measured side by side in one process on the same inputs.

Every ratio is a median over interleaved repeats (A, B, A, B, ...) with its spread (min-max of the
per-repeat ratios), so machine noise hits both sides alike. Targets are goals to report against, not
assertions. Results go to results/bench.json.

    python benchmarks/run.py              # all seven, 5-7 timing a cold and a warm tiny pipeline (~15 min)
    python benchmarks/run.py --skip-demo  # ratios 1-4 only (a few minutes)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from entrodrop_bench.atomic import write_json  # noqa: E402


def interleaved(a: Callable[[], None], b: Callable[[], None], repeats: int, warmup: int = 1) -> dict:
    """Median and spread of time(a)/time(b), alternating a and b each repeat."""
    for _ in range(warmup):
        a(), b()
    ratios, ta, tb = [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a()
        t1 = time.perf_counter()
        b()
        t2 = time.perf_counter()
        ta.append(t1 - t0)
        tb.append(t2 - t1)
        ratios.append((t1 - t0) / (t2 - t1))
    return {"ratio": statistics.median(ratios), "min": min(ratios), "max": max(ratios), "a_s": statistics.median(ta), "b_s": statistics.median(tb), "repeats": repeats}


def bench_model(hidden: int = 128, layers: int = 3, vocab: int = 1024):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen3Config(vocab_size=vocab, hidden_size=hidden, intermediate_size=hidden * 3, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=hidden // 4, max_position_embeddings=1024,
                      tie_word_embeddings=True, pad_token_id=0, eos_token_id=1)
    return Qwen3ForCausalLM(cfg)


def synthetic_rows(n_docs: int = 200, seq_len: int = 128, vocab: int = 1024, seed: int = 0):
    """A target and a general corpus of random documents, and the plan's rows for a few steps."""
    from entrodrop_bench.data import MixedRows, TokenizedCorpus, make_plan

    g = torch.Generator().manual_seed(seed)
    docs = [(torch.randint(2, vocab, (int(torch.randint(40, 120, (1,), generator=g)),), generator=g).tolist() + [1]) for _ in range(n_docs)]
    target, general = TokenizedCorpus.from_docs(docs), TokenizedCorpus.from_docs(docs[::-1])
    plan = make_plan(seq_len * 16 * 50, seq_len, seq_len * 16, 0.6, target.n_tokens)
    return target, MixedRows(plan, target, general, seed, special_ids={0, 1}, pad_id=0), plan


class _Tok:
    """Just enough tokenizer for plugins' prepare (special ids, hashing)."""

    all_special_ids = [0, 1]
    pad_token_id, eos_token_id = 0, 1

    def get_vocab(self):
        return {str(i): i for i in range(1024)}


def _train_step_fn(model, reg, rows, plan, optimizer):
    from entrodrop_bench.data import collate
    from entrodrop_bench.train import step_loss, token_meta, transformed_embeddings

    state = {"step": 0}

    def run() -> None:
        step = state["step"] % plan.total_steps
        batch = collate(rows.step_rows(step))
        meta = token_meta(batch, step, plan.total_steps, 0, 0)
        with transformed_embeddings(model, lambda embeds: reg.transform_embeddings(embeds, meta)):
            loss, _ = step_loss(model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        state["step"] += 1

    return run


def _prepared_regularizer(plugin: str, params: dict, model, target, plan, cache_dir: Path):
    from entrodrop_bench.regularizer import PrepareContext, build_regularizer

    reg = build_regularizer(plugin, params)
    reg.prepare(PrepareContext(model=model, base_model_path="bench", tokenizer=_Tok(), target_docs=target.docs(), cache_dir=cache_dir,
                               seq_len=plan.seq_len, total_steps=plan.total_steps, device=torch.device("cpu"), plain_min_val_step=0))
    reg.adjust_model(model)
    return reg


def ratio_entrodrop_step(repeats: int) -> dict:
    """1. EntroDrop training step / plain step, same batches (target <= 1.03)."""
    target, rows, plan = synthetic_rows()
    with tempfile.TemporaryDirectory() as tmp:
        models = {name: bench_model() for name in ("entrodrop", "plain")}
        regs = {
            "entrodrop": _prepared_regularizer("entrodrop", {"gamma_max": 0.1, "schedule": "static"}, models["entrodrop"], target, plan, Path(tmp)),
            "plain": _prepared_regularizer("plain", {}, models["plain"], target, plan, Path(tmp)),
        }
        steps = {n: _train_step_fn(models[n], regs[n], rows, plan, torch.optim.AdamW(models[n].parameters(), lr=1e-3)) for n in models}
        return interleaved(steps["entrodrop"], steps["plain"], repeats) | {"target": 1.03}


def ratio_entropy_vs_epoch(repeats: int) -> dict:
    """2. Entropy pass over the target corpus / one target epoch of training (target <= 0.5)."""
    from entrodrop_bench.entropy import token_signals

    target, rows, plan = synthetic_rows()
    model = bench_model()
    reg = _prepared_regularizer("plain", {}, model, target, plan, Path(tempfile.mkdtemp()))
    step = _train_step_fn(model, reg, rows, plan, torch.optim.AdamW(model.parameters(), lr=1e-3))
    steps_per_epoch = max(1, round(plan.steps_per_target_epoch()))
    docs = target.docs()
    frozen = bench_model()

    def entropy_pass() -> None:
        token_signals(frozen, docs, kind="entropy", seq_len=plan.seq_len)

    def one_epoch() -> None:
        for _ in range(steps_per_epoch):
            step()

    return interleaved(entropy_pass, one_epoch, repeats) | {"target": 0.5, "steps_per_epoch": steps_per_epoch}


_MEMORY_CHILD = """
import resource, sys, torch
sys.path.insert(0, {repo!r})
from transformers import Qwen3Config, Qwen3ForCausalLM
torch.manual_seed(0)
vocab, seq = 151936, 4096
# A one-layer model whose LM head has Qwen3's 151,936-token vocabulary: the logits dominate memory.
cfg = Qwen3Config(vocab_size=vocab, hidden_size={hidden}, intermediate_size={hidden} * 2, num_hidden_layers=1,
                  num_attention_heads=4, num_key_value_heads=4, head_dim={hidden} // 4, max_position_embeddings=seq)
model = Qwen3ForCausalLM(cfg).eval()
doc = torch.randint(0, vocab, (seq,)).tolist()
with torch.inference_mode():
    model.model(torch.tensor([doc[:8]]))  # allocator warm-up outside the measurement
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with torch.inference_mode():
    if {mode!r} == "naive":
        logits = model(torch.tensor([doc])).logits.float()
        logp = torch.log_softmax(logits, -1)
        ent = -(logp.exp() * logp).sum(-1)[0, :-1]
    else:
        from entrodrop_bench.entropy import token_signals
        values, _ = token_signals(model, [doc], kind="entropy", seq_len=seq, batch_size=1)
        ent = torch.from_numpy(values[1:])
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((peak - base) * 1024, float(ent.float().mean()))
"""


def ratio_entropy_memory(hidden: int = 256) -> dict:
    """3. Chunked entropy peak extra memory / naive fp32 logits (vocab 151,936 x seq 4096; target <= 0.25)."""
    out = {}
    for mode in ("chunked", "naive"):
        code = _MEMORY_CHILD.format(repo=str(REPO), hidden=hidden, mode=mode)
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        extra, mean = res.stdout.split()
        out[mode] = {"extra_bytes": int(extra), "mean_entropy": float(mean)}
    return {
        "ratio": out["chunked"]["extra_bytes"] / out["naive"]["extra_bytes"],
        "chunked_MiB": out["chunked"]["extra_bytes"] / 2**20,
        "naive_MiB": out["naive"]["extra_bytes"] / 2**20,
        "same_result": abs(out["chunked"]["mean_entropy"] - out["naive"]["mean_entropy"]) < 1e-3,
        "target": 0.25,
    }


def ratio_mfu(repeats: int) -> dict:
    """4. Achieved training FLOP/s (6 N tokens) / this machine's measured fp32 matmul FLOP/s."""
    target, rows, plan = synthetic_rows()
    model = bench_model()
    n_params = sum(p.numel() for p in model.parameters())
    reg = _prepared_regularizer("plain", {}, model, target, plan, Path(tempfile.mkdtemp()))
    step = _train_step_fn(model, reg, rows, plan, torch.optim.AdamW(model.parameters(), lr=1e-3))
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    matmul_s, step_s = [], []
    step()
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(20):
            a @ b
        matmul_s.append((time.perf_counter() - t0) / 20)
        t0 = time.perf_counter()
        step()
        step_s.append(time.perf_counter() - t0)
    peak = 2 * 1024**3 / statistics.median(matmul_s)
    achieved = 6 * n_params * plan.tokens_per_step / statistics.median(step_s)
    return {"ratio": achieved / peak, "achieved_GFLOPs": achieved / 1e9, "matmul_GFLOPs": peak / 1e9, "params": n_params,
            "tokens_per_s": plan.tokens_per_step / statistics.median(step_s)}


def demo_timings() -> dict:
    """5-7. Cold and warm wall time of the whole tiny pipeline, and evaluation vs training time per checkpoint."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [str(REPO / ".venv/bin/entrodrop-bench"), "run", str(REPO / "configs/tiny.yaml"),
               f"output.runs_dir={tmp}/runs", f"output.results_dir={tmp}/results", "--no-progress"]
        times = []
        for _ in range(2):
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            times.append(time.perf_counter() - t0)
        eval_s, train_s = _per_checkpoint_times(Path(tmp) / "runs")
    return {
        "warm_over_cold": {"ratio": times[1] / times[0], "cold_s": times[0], "warm_s": times[1], "target": 0.05},
        "eval_over_train_per_checkpoint": {"ratio": eval_s / train_s, "eval_s": eval_s, "train_s": train_s},
        "demo_cold_minutes": {"ratio": times[0] / 60, "target": 15},
    }


def _per_checkpoint_times(runs: Path) -> tuple[float, float]:
    """Median eval wall time per checkpoint (from store provenance) and train time per checkpoint interval."""
    per_ckpt: dict[Path, float] = {}
    for f in (runs / "store").glob("*/seed*/checkpoint-*/*.json"):  # result records, not the work folders' files
        wall = json.loads(f.read_text()).get("provenance", {}).get("wall_time_s")
        if wall is not None:
            per_ckpt[f.parent] = per_ckpt.get(f.parent, 0.0) + wall
    train = []
    for log in (runs / "train").rglob("train_log.jsonl"):
        seconds = sum(json.loads(line)["step_s"] for line in log.read_text().splitlines())
        train.append(seconds / max(len(list(log.parent.glob("checkpoint-*"))), 1))
    return statistics.median(per_ckpt.values()), statistics.median(train)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--skip-demo", action="store_true", help="skip 5-7, the cold and warm tiny pipeline (~12 min)")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    results = {
        "1_entrodrop_step_over_plain_step": ratio_entrodrop_step(args.repeats),
        "2_entropy_pass_over_target_epoch": ratio_entropy_vs_epoch(max(3, args.repeats // 2)),
        "3_chunked_entropy_memory_over_naive": ratio_entropy_memory(),
        "4_cpu_mfu": ratio_mfu(args.repeats),
    }
    results["_meta"] = {"commit": _git_commit(), "threads": torch.get_num_threads(), "torch": torch.__version__,
                        "date": time.strftime("%Y-%m-%d %H:%M:%S"), "peak_rss_MiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    write_json(REPO / "results" / "bench.json", results)  # 1-4 are kept even if the long demo timing fails
    if not args.skip_demo:
        results.update({f"{5 + i}_{k}": v for i, (k, v) in enumerate(demo_timings().items())})
        write_json(REPO / "results" / "bench.json", results)
    _print_table(results)


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    except OSError:
        return "unknown"


def _print_table(results: dict) -> None:
    print(f"{'measure':45s} {'ratio':>9s} {'spread':>19s} {'target':>8s}")
    for name, r in results.items():
        if name.startswith("_"):
            continue
        spread = f"[{r['min']:.3f}, {r['max']:.3f}]" if "min" in r else ""
        target = f"{r['target']}" if "target" in r else "-"
        print(f"{name:45s} {r['ratio']:9.3f} {spread:>19s} {target:>8s}")
    print(f"(commit {results['_meta']['commit']}, {results['_meta']['threads']} threads; details in results/bench.json)")


if __name__ == "__main__":
    main()
