"""`make bench`: speed and memory ratios, each measured side by side in one process on the same inputs.

Every ratio is a median over interleaved repeats (A, B, A, B, ...) with its spread (min-max of the
per-repeat ratios), so machine noise hits both sides alike. Targets are goals to report against, not
assertions. Results go to results/bench.json.

    python benchmarks/run.py              # all fourteen, 5-7 and 12 timing a cold and a warm demo pipeline (~15 min;
                                          # row 14 needs .venv-vllm, ~6 min more, and says so when it is absent)
    python benchmarks/run.py --skip-demo  # every ratio but 5-7 (row 10 then trains its own plain run; ~10 min)
    python benchmarks/run.py --only 8,9   # just these rows, merged into the existing results/bench.json
    python benchmarks/run.py --only 12    # a cold `make demo` pipeline, its parts and CPU time (~5 min idle)
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
from entrodrop_bench.train.loss import LOSS_CHUNK_ELEMENTS  # noqa: E402


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
    from entrodrop_bench.prepare.data import MixedRows, TokenizedCorpus, make_plan

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


def _train_step_fn(model, reg, rows, plan, optimizer, chunk_elements: int | None = LOSS_CHUNK_ELEMENTS, steps: int = 1):
    """`steps` optimizer steps (one micro-batch each) through the trainer's own per-step path: `begin_step`, then
    `forward_micro_batch` (the method's hooks, the loss and the values it observes); `chunk_elements` as in step_loss
    (None: full logits always)."""
    from entrodrop_bench.prepare.data import collate
    from entrodrop_bench.train.trainer import forward_micro_batch, token_meta

    state = {"step": 0}
    observes = type(reg).observes(reg.config)

    def run() -> None:
        for _ in range(steps):
            step = state["step"] % plan.total_steps
            batch = collate(rows.step_rows(step))
            reg.begin_step(step)
            meta = token_meta(batch, step, plan.total_steps, 0, 0)
            loss = forward_micro_batch(model, reg, batch, meta, chunk_elements=chunk_elements, observes=observes)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            state["step"] += 1

    return run


def _prepared_regularizer(plugin: str, params: dict, model, target, plan, cache_dir: Path):
    from entrodrop_bench.prepare.entropy import token_signals
    from entrodrop_bench.regularizer import PrepareContext, build_regularizer

    reg = build_regularizer(plugin, params)
    docs = target.docs()
    # the base-model signals the plugin declares, as the trainer hands them over from prepare's cache
    signals = {kind: token_signals(model, docs, kind=kind, seq_len=plan.seq_len, device="cpu")
               for kind in type(reg).signals(reg.config)}
    reg.prepare(PrepareContext(model=model, tokenizer=_Tok(), target_docs=docs, cache_dir=cache_dir,
                               seq_len=plan.seq_len, total_steps=plan.total_steps, device=torch.device("cpu"), seed=0,
                               baseline_min_val_step=0, target_epoch=plan.target_epoch, signals=signals))
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


def ratio_online_step(repeats: int) -> dict:
    """11. Online EntroDrop step / static EntroDrop step (target <= 1.05): blocks of one target epoch of steps on the
    same batches, so each online block holds one gate refresh; static reads the base model's nll, online_loss starts
    from it. Also the online table's memory per million target tokens (device, and in each checkpoint)."""
    import math

    target, rows, plan = synthetic_rows()
    epoch = math.ceil(plan.steps_per_target_epoch())
    params = {"gamma_max": 0.1, "schedule": "static"}
    sides = {"online_loss": "online_loss", "online_entropy": "online_entropy", "static": "nll"}
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        models = {n: bench_model() for n in sides}
        regs = {n: _prepared_regularizer("entrodrop", {**params, "signal": sig}, models[n], target, plan, Path(tmp)) for n, sig in sides.items()}
        steps = {n: _train_step_fn(models[n], regs[n], rows, plan, torch.optim.AdamW(models[n].parameters(), lr=1e-3), steps=epoch)
                 for n in sides}
        for name in ("online_loss", "online_entropy"):
            out[name] = interleaved(steps[name], steps["static"], repeats)
        table = regs["online_loss"].online
        device_bytes = table.values.element_size() * table.n + table.stamps.element_size() * table.n
        saved = sum(v.numel() * v.element_size() for v in regs["online_loss"].state_dict().values() if isinstance(v, torch.Tensor))
        refreshes = regs["online_loss"].refreshed_at
    return {"ratio": out["online_loss"]["ratio"], "min": out["online_loss"]["min"], "max": out["online_loss"]["max"],
            "target": 1.05, "steps_per_block": epoch, "refreshed": refreshes > 0, **out,
            "table_MiB_per_M_target_tokens": device_bytes / table.n * 1e6 / 2**20,
            "checkpoint_MiB_per_M_target_tokens": saved / table.n * 1e6 / 2**20}


def ratio_entropy_vs_epoch(repeats: int) -> dict:
    """2. Entropy pass over the target corpus / one target epoch of training (target <= 0.5)."""
    from entrodrop_bench.prepare.entropy import token_signals

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
        from entrodrop_bench.prepare.entropy import token_signals
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


_LOSS_MEMORY_CHILD = """
import resource, sys, torch
sys.path.insert(0, {repo!r})
from entrodrop_bench.train.loss import chunked_token_losses, naive_token_losses
torch.manual_seed(0)
batch, seq, hidden_size, vocab = {batch}, {seq}, {hidden}, {vocab}
# Made in place (no temporaries), so the high-water mark before the loss is what is held, not a transient.
hidden = torch.empty(batch, seq, hidden_size).normal_().requires_grad_()
weight = torch.empty(vocab, hidden_size).normal_(0, 0.02).requires_grad_()
labels = torch.randint(0, vocab, (batch, seq))
labels[:, ::97] = -100
# Warm-up (threads, allocator) on a small head: its transients stay far below what is measured below.
w_small = torch.empty(1024, hidden_size).normal_(0, 0.02).requires_grad_()
for fn in (chunked_token_losses, lambda h, w, b, y: naive_token_losses(torch.nn.functional.linear(h, w), y)):
    fn(hidden[:1, :64].detach().requires_grad_(), w_small, None, labels[:1, :64] % 1024).sum().backward()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if {mode!r} == "naive":
    loss = naive_token_losses(torch.nn.functional.linear(hidden, weight), labels).sum()
else:
    loss = chunked_token_losses(hidden, weight, None, labels).sum()
loss.backward()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((peak - base) * 1024, float(loss), float(weight.grad.norm()))
"""

_LOSS_TRACKER_CHILD = """
import sys, torch
sys.path.insert(0, {repo!r})
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.distributed._tools.mem_tracker import MemTracker
from entrodrop_bench.train.loss import chunked_token_losses, naive_token_losses
with FakeTensorMode():
    hidden = torch.randn({batch}, {seq}, {hidden}, requires_grad=True)
    weight = torch.randn({vocab}, {hidden}, requires_grad=True)
    labels = torch.randint(0, {vocab}, ({batch}, {seq}))
    tracker = MemTracker()
    tracker.track_external(hidden, weight)
    with tracker:
        if {mode!r} == "naive":
            loss = naive_token_losses(torch.nn.functional.linear(hidden, weight), labels).sum()
        else:
            loss = chunked_token_losses(hidden, weight, None, labels).sum()
        loss.backward()
peak = tracker.get_tracker_snapshot("peak")[torch.device("cpu")]
print(sum(v for k, v in peak.items() if str(k).endswith(("ACT", "TEMP"))))
"""


def _child(template: str, **fmt) -> list[str]:
    res = subprocess.run([sys.executable, "-c", template.format(repo=str(REPO), **fmt)], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"benchmark child failed ({fmt}): {res.stderr[-2000:]}")
    return res.stdout.split()


def _available_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def ratio_loss_memory(batch: int = 4, seq: int = 4096, hidden: int = 1024, vocab: int = 151_936) -> dict:
    """8. Chunked training loss peak extra memory / the full-logits loss, forward + backward (Qwen3-0.6B head:
    V 151,936, H 1024; T 4096, B 4; fp32 on CPU; target <= 0.1).

    Each variant runs in a fresh subprocess and reports its ru_maxrss growth (the weight's 0.6 GB gradient is
    in both). The naive loss at B 4 needs ~30 GB; where it does not fit in the available memory, it is measured
    at the largest batch that fits, and the B 4 ratio comes from torch's allocation tracker (MemTracker on fake
    tensors: the same code's allocations, none made), which is also run at the measured batch as a cross-check."""
    fmt = {"seq": seq, "hidden": hidden, "vocab": vocab}
    naive_need = lambda b: 5 * b * seq * vocab * 4  # noqa: E731  logits, log-softmax and their gradients, fp32
    fits = [b for b in range(batch, 0, -1) if naive_need(b) < 0.8 * _available_bytes()]
    rss_batch = fits[0] if fits else None
    out: dict = {"target": 0.1, "shape": {"batch": batch, **fmt}}
    if rss_batch is not None:
        rss = {m: _child(_LOSS_MEMORY_CHILD, mode=m, batch=rss_batch, **fmt) for m in ("chunked", "naive")}
        out["rss"] = {"batch": rss_batch, "chunked_MiB": int(rss["chunked"][0]) / 2**20, "naive_MiB": int(rss["naive"][0]) / 2**20,
                      "ratio": int(rss["chunked"][0]) / int(rss["naive"][0]),
                      "same_loss": abs(float(rss["chunked"][1]) / float(rss["naive"][1]) - 1) < 1e-4,
                      "same_weight_grad_norm": abs(float(rss["chunked"][2]) / float(rss["naive"][2]) - 1) < 1e-3}
    tracked = {}
    for b in sorted({batch, rss_batch or batch}):
        t = {m: float(_child(_LOSS_TRACKER_CHILD, mode=m, batch=b, **fmt)[0]) for m in ("chunked", "naive")}
        tracked[b] = {"batch": b, "chunked_MiB": t["chunked"] / 2**20, "naive_MiB": t["naive"] / 2**20, "ratio": t["chunked"] / t["naive"]}
    out["tracked"] = list(tracked.values())
    measured_at_shape = rss_batch == batch
    out["ratio"] = out["rss"]["ratio"] if measured_at_shape else tracked[batch]["ratio"]
    out["ratio_from"] = "rss" if measured_at_shape else f"allocation tracker at B={batch} (RSS measured at B={rss_batch})"
    return out


def ratio_loss_step(repeats: int) -> dict:
    """9. Training step with the chunked loss / with the full-logits loss, tiny shape (target <= 1.1).

    The tiny micro-batch (16 x 128 tokens, V 1024) fits in one default chunk and so never chunks in the
    tiny preset; here the chunk is forced to a quarter of it, to price the chunked path where it is used."""
    target, rows, plan = synthetic_rows()
    micro_logits = plan.rows_per_step * (plan.seq_len - 1) * 1024
    chunk = {"chunked": micro_logits // 4, "naive": None}
    steps = {}
    for name, chunk_elements in chunk.items():
        model = bench_model()
        reg = _prepared_regularizer("plain", {}, model, target, plan, Path(tempfile.mkdtemp()))
        steps[name] = _train_step_fn(model, reg, rows, plan, torch.optim.AdamW(model.parameters(), lr=1e-3), chunk_elements=chunk_elements)
    return interleaved(steps["chunked"], steps["naive"], repeats) | {"target": 1.1, "chunks_per_micro_batch": 4}


CLI = str(REPO / ".venv/bin/entrodrop-bench")
DEMO = str(REPO / "configs/tiny-demo.yaml")  # what `make demo` runs


def demo_timings(eval_repeats: int) -> dict:
    """5-7, 10 and 12. Cold and warm wall time of `make demo`'s pipeline (`entrodrop-bench run configs/tiny-demo.yaml`
    into a fresh temp folder: world, training, evaluation, reports), its parts, evaluation vs training time per
    checkpoint, and row 10 on the cold run's world and plain run."""
    with tempfile.TemporaryDirectory() as tmp:
        cold = cold_demo(Path(tmp))
        t0 = time.perf_counter()
        subprocess.run(_demo_cmd(Path(tmp)), check=True, stdout=subprocess.DEVNULL)
        warm_s = time.perf_counter() - t0
        eval_s, train_s = _per_checkpoint_times(Path(tmp) / "runs")
        workers = ratio_eval_workers(eval_repeats, Path(tmp) / "runs")
    return {
        "warm_over_cold": {"ratio": warm_s / cold["total_s"], "cold_s": cold["total_s"], "warm_s": warm_s, "target": 0.05},
        "eval_over_train_per_checkpoint": {"ratio": eval_s / train_s, "eval_s": eval_s, "train_s": train_s},
        "demo_cold_minutes": {"ratio": cold["total_s"] / 60, "cold_s": cold["total_s"], "target": 5},
        "eval_2x1_workers_over_1x2_process": workers,
        "cold_demo_parts": cold,
    }


def _demo_cmd(tmp: Path) -> list[str]:
    return [CLI, "run", DEMO, f"output.runs_dir={tmp}/runs", f"output.results_dir={tmp}/results", "--no-progress"]


# The first line each part of a cold `run` prints when it is done (pipeline.run_all's stages, in order).
DEMO_PARTS = (("prepare", "prepare:"), ("train", "train:"), ("eval", "eval:"), ("reports", "run: done"))


def cold_demo(tmp: Path) -> dict:
    """12. A cold `make demo` pipeline into `tmp` (the shipped base model, nothing else on disk), its parts by wall
    time as its output lines arrive (prepare: world and caches; train: to the last run's end, the evaluation worker
    that fills an idle slot included; eval: the rest of the evaluation; reports: select, tables, figures,
    leaderboard), the CPU time of all its processes (on an idle 2-core machine the wall time is at least half of
    it), and the world build with and without the shipped base model (`prepare` alone, in fresh folders)."""
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    ends: dict[str, float] = {}
    proc = subprocess.Popen(_demo_cmd(tmp), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        for part, prefix in DEMO_PARTS:
            if line.startswith(prefix):
                ends[part] = time.perf_counter() - t0  # the last `train:` line marks the end of training
    if proc.wait() != 0:
        raise RuntimeError(f"cold demo failed (exit {proc.returncode})")
    total = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    parts, start = {}, 0.0
    for part, _ in DEMO_PARTS:
        parts[f"{part}_s"] = ends.get(part, start) - start
        start = ends.get(part, start)
    world = json.loads((tmp / "runs" / "world" / "world.json").read_text())
    runs = [json.loads(f.read_text()) for f in (tmp / "runs" / "train").glob("*/seed*/status.json")]
    return {
        "ratio": total / 60, "total_s": total, **parts,
        "cpu_s": (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime),
        "world_s": world.get("build_seconds"), "base_model": world.get("base_model", "pre-trained here"),
        "runs": len(runs), "train_run_s": sorted(round(r["cost"]["train_wall_s"], 1) for r in runs if r.get("cost")),
        "evaluations": len(list((tmp / "runs" / "store").glob("*/seed*/checkpoint-*/*.json"))),
        **world_build_times(tmp), "target": 5,
    }


def _cold_demo_alone() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        return cold_demo(Path(tmp))


def world_build_times(tmp: Path) -> dict:
    """`entrodrop-bench prepare` of the demo in a fresh folder: with the shipped base model, and pre-training it."""
    out = {}
    for key, shipped in (("prepare_shipped_s", "1"), ("prepare_pretrained_s", "0")):
        runs = tmp / f"prepare_{shipped}"
        t0 = time.perf_counter()
        subprocess.run([CLI, "prepare", DEMO, f"output.runs_dir={runs}", f"output.results_dir={tmp}/results_{shipped}"],
                       check=True, stdout=subprocess.DEVNULL, env=os.environ | {"ENTRODROP_TINY_PREBUILT": shipped})
        out[key] = time.perf_counter() - t0
    return out


def ratio_eval_workers(repeats: int, source_runs: Path | None = None) -> dict:
    """10. Evaluation wall time of the tiny preset's plain run (11 checkpoints x its 2 benchmarks) with 2
    single-thread workers (its setting) / 1 two-thread process (target <= 0.75). Each side is a fresh
    `entrodrop-bench eval` into an empty store (start-up included), the two alternating; the world and the plain
    run come from `source_runs` (the cold demo's) or are built here (`train --run plain`)."""
    with tempfile.TemporaryDirectory() as tmp:
        if source_runs is None:
            source_runs = Path(tmp) / "source"
            subprocess.run([CLI, "train", DEMO, f"output.runs_dir={source_runs}", f"output.results_dir={tmp}/results",
                            "--run", "plain", "--no-progress"], check=True, stdout=subprocess.DEVNULL)
        counter = iter(range(10**6))

        def evaluate(workers: int, threads: int) -> Callable[[], None]:
            def run() -> None:
                runs = Path(tmp) / f"eval{next(counter)}"  # an empty store each time; world and run linked in
                (runs / "train").mkdir(parents=True)
                (runs / "world").symlink_to(source_runs / "world")
                (runs / "train" / "plain").symlink_to(source_runs / "train" / "plain")
                subprocess.run([CLI, "eval", DEMO, f"output.runs_dir={runs}", f"output.results_dir={tmp}/results",
                                f"eval.workers={workers}", f"eval.threads={threads}", "--no-progress"],
                               check=True, stdout=subprocess.DEVNULL)
            return run

        return interleaved(evaluate(2, 1), evaluate(1, 2), repeats, warmup=0) | {"target": 0.75}


TINY = str(REPO / "configs/tiny.yaml")
VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
# The tiny preset's model in a shrunk world (as tests/test_eval_backend.py): 8 steps, a checkpoint every 2 -> 4 checkpoints.
VLLM_BENCH_WORLD = ["tiny.n_target_docs=60", "tiny.n_general_docs=300", "tiny.n_benchmark=40", "tiny.pretrain_tokens=60000",
                    "data.token_budget=16384", "train.checkpoint_every_epochs=1", "methods={plain: {plugin: plain}}"]
_VLLM_EVAL_CHILD = """
import json, sys, time
sys.path.insert(0, {repo!r})
from entrodrop_bench.config import load_config
from entrodrop_bench.evaluate.stage import evaluate_experiment
from entrodrop_bench.paths import Layout, WorldPaths

if __name__ == "__main__":  # vLLM spawns its engine processes
    config = load_config({tiny!r}, {overrides!r})
    layout = Layout.from_config(config)
    files = {{"tiny_math": WorldPaths(layout.world_dir).benchmark_file("tiny_math")}}
    tic = time.perf_counter()
    summary = evaluate_experiment(config, layout, world_benchmarks=files, progress=False)
    print(json.dumps({{**summary, "wall_s": time.perf_counter() - tic}}))
"""


def ratio_vllm_engine_reuse(repeats: int) -> dict:
    """14. `eval.backend: vllm` over one run's N checkpoints (tiny preset model, shrunk world; tiny_math, 40 items, one
    worker): one engine for the worker, each checkpoint's weights loaded into it / an engine started per checkpoint.
    Each side is a fresh evaluation into an empty store in vLLM's CPU build (.venv-vllm, `make test-vllm` sets it
    up); the two alternate. `ratio` is evaluation wall time; engine starts per evaluated checkpoint go 1 -> 1/N."""
    if not VLLM_PYTHON.is_file():
        return {"skipped": f"no {VLLM_PYTHON.relative_to(REPO)} (vLLM's CPU build): run `make test-vllm` or .ci/vllm-env.sh first"}
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "source"
        subprocess.run([CLI, "train", TINY, *VLLM_BENCH_WORLD, f"output.runs_dir={source}", f"output.results_dir={tmp}/results",
                        "--no-progress"], check=True, stdout=subprocess.DEVNULL)
        counter = iter(range(10**6))
        summaries: dict[bool, list[dict]] = {True: [], False: []}
        child = Path(tmp) / "vllm_eval.py"

        def evaluate(reuse: bool) -> Callable[[], None]:
            def run() -> None:
                runs = Path(tmp) / f"eval{next(counter)}"  # an empty store each time; world and run linked in
                (runs / "train").mkdir(parents=True)
                (runs / "world").symlink_to(source / "world")
                (runs / "train" / "plain").symlink_to(source / "train" / "plain")
                overrides = [*VLLM_BENCH_WORLD, f"output.runs_dir={runs}", f"output.results_dir={tmp}/results",
                             "eval.backend=vllm", f"eval.vllm_reuse_engine={str(reuse).lower()}", "eval.workers=1",
                             "eval.threads=2", "eval.lm_eval_tasks=[tiny_math]", "eval.domains={math: [tiny_math]}", "eval.limit=40",
                             "eval.vllm_cpu_kvcache_gib=1"]
                child.write_text(_VLLM_EVAL_CHILD.format(repo=str(REPO), tiny=TINY, overrides=overrides))
                res = subprocess.run([str(VLLM_PYTHON), str(child)], capture_output=True, text=True,
                                     env={**os.environ, "PYTHONPATH": str(REPO)})
                if res.returncode != 0:
                    raise RuntimeError(f"vLLM evaluation failed (reuse={reuse}): {res.stderr[-3000:]}")
                summaries[reuse].append(json.loads(res.stdout.strip().splitlines()[-1]))
            return run

        timing = interleaved(evaluate(True), evaluate(False), repeats, warmup=0)
    reuse, fresh = summaries[True][-1], summaries[False][-1]
    n = reuse["checkpoints"]
    assert reuse["failed"] == fresh["failed"] == 0 and reuse["evaluated"] == fresh["evaluated"] == n
    return timing | {
        "checkpoints": n,
        "engine_starts_per_checkpoint": {"one_engine_per_worker": reuse["vllm_engine_starts"] / n,
                                         "engine_per_checkpoint": fresh["vllm_engine_starts"] / n},
        "weight_loads": {"one_engine_per_worker": reuse["vllm_weight_loads"], "engine_per_checkpoint": fresh["vllm_weight_loads"]},
        "device": "cpu (vllm-cpu)", "target": f"starts 1 -> 1/{n}",
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


def ratio_cli_startup(repeats: int) -> dict:
    """13. `entrodrop-bench plan configs/qwen3-0.6b-math.yaml` (a config loaded, its plugins validated, the plan
    printed) over `python -c pass`, each a fresh interpreter, wall time (target: the plan well under a second)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    plan = [sys.executable, "-m", "entrodrop_bench.cli", "plan", str(REPO / "configs" / "qwen3-0.6b-math.yaml")]

    def run(cmd: list[str]) -> Callable[[], None]:
        return lambda: subprocess.run(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, check=True)

    out = interleaved(run(plan), run([sys.executable, "-c", "pass"]), repeats)
    out["target"] = "plan < 1 s"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--skip-demo", action="store_true", help="skip 5-7, the cold and warm tiny pipeline (~10 min)")
    parser.add_argument("--eval-repeats", type=int, default=2, help="repeats of row 10 (each side ~1 min)")
    parser.add_argument("--vllm-repeats", type=int, default=1, help="repeats of row 14 (its two sides ~2.5 and ~5.5 min)")
    parser.add_argument("--only", default=None, help="comma-separated row numbers (e.g. 8,9); kept rows of results/bench.json stay")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    rows: dict[str, Callable[[], dict]] = {
        "1_entrodrop_step_over_plain_step": lambda: ratio_entrodrop_step(args.repeats),
        "2_entropy_pass_over_target_epoch": lambda: ratio_entropy_vs_epoch(max(3, args.repeats // 2)),
        "3_chunked_entropy_memory_over_naive": ratio_entropy_memory,
        "4_cpu_mfu": lambda: ratio_mfu(args.repeats),
        "8_chunked_loss_memory_over_naive": ratio_loss_memory,
        "9_chunked_loss_step_over_naive": lambda: ratio_loss_step(args.repeats),
        "11_online_entrodrop_step_over_static": lambda: ratio_online_step(max(3, args.repeats // 2)),
        "13_cli_plan_startup_over_python": lambda: ratio_cli_startup(args.repeats),
        "14_vllm_one_engine_over_engine_per_checkpoint": lambda: ratio_vllm_engine_reuse(args.vllm_repeats),
    }
    if args.skip_demo or args.only:  # else rows 10 and 12 come from the cold demo of rows 5-7
        rows["10_eval_2x1_workers_over_1x2_process"] = lambda: ratio_eval_workers(args.eval_repeats)
    if args.only:
        rows["12_cold_demo_parts"] = _cold_demo_alone
    only = {n.strip() for n in args.only.split(",")} if args.only else None
    out_file = REPO / "results" / "bench.json"
    results = json.loads(out_file.read_text()) if only and out_file.is_file() else {}
    for name, fn in rows.items():
        if only is None or name.split("_")[0] in only:
            results[name] = fn()
    meta = {"commit": _git_commit(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d %H:%M:%S"), "peak_rss_MiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if only:  # the other rows keep the commit they were measured at
        results.setdefault("_meta", {})[f"rows {','.join(sorted(only))}"] = meta
    else:
        results["_meta"] = meta
    write_json(out_file, results)  # the ratios are kept even if the long demo timing fails
    if not args.skip_demo and only is None:
        timed = demo_timings(args.eval_repeats)
        results["10_eval_2x1_workers_over_1x2_process"] = timed.pop("eval_2x1_workers_over_1x2_process")
        results["12_cold_demo_parts"] = timed.pop("cold_demo_parts")
        results.update({f"{5 + i}_{k}": v for i, (k, v) in enumerate(timed.items())})
        write_json(out_file, results)
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
        if "skipped" in r:
            print(f"{name:45s} skipped: {r['skipped']}")
            continue
        spread = f"[{r['min']:.3f}, {r['max']:.3f}]" if "min" in r else ""
        target = f"{r['target']}" if "target" in r else "-"
        print(f"{name:45s} {r['ratio']:9.3f} {spread:>19s} {target:>8s}")
        if "engine_starts_per_checkpoint" in r:
            starts = r["engine_starts_per_checkpoint"]
            print(f"{'':45s} engine starts per checkpoint {starts['engine_per_checkpoint']:.3g} -> "
                  f"{starts['one_engine_per_worker']:.3g} over {r['checkpoints']} checkpoints")
    meta = results["_meta"]
    print(f"(commit {meta.get('commit', '?')}, {meta.get('threads', '?')} threads; details in results/bench.json)")


if __name__ == "__main__":
    main()
