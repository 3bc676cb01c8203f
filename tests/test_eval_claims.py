"""Evaluation workers claim checkpoints through the store's try-locks: no pair is evaluated twice, two plain
eval processes share the work, and a killed worker's claim is picked up (flock dies with its holder)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from test_eval_lm_eval import make_checkpoint, tiny_benchmark_files

from entrodrop_bench.config import EvalConfig
from entrodrop_bench.evaluate.stage import evaluate_experiment
from entrodrop_bench.evaluate.store import load_results
from entrodrop_bench.paths import Layout

STEPS = (2, 4, 6, 8)
BENCHES = ("tiny_math", "tiny_general")


def _setup(mini_config, mini_assets, tmp_path: Path, **eval_overrides):
    files = tiny_benchmark_files(tmp_path / "bench")
    world = {k: files[k] for k in BENCHES}
    ev = EvalConfig(lm_eval_tasks=list(BENCHES), batch_size=4, limit=3, max_gen_toks=8, **eval_overrides)
    config = mini_config(output={"runs_dir": str(tmp_path / "runs"), "results_dir": str(tmp_path / "results")})
    config = config.model_copy(update={"eval": ev})
    layout = Layout.from_config(config)
    for step in STEPS:
        make_checkpoint(mini_assets["model"], layout, step=step)
    return config, layout, world


def _eval_script(config, world: dict[str, Path], tmp_path: Path) -> str:
    cfg = tmp_path / "cfg.json"
    cfg.write_text(config.model_dump_json())
    return (
        "import json\nfrom pathlib import Path\nfrom entrodrop_bench.config import ExperimentConfig\n"
        "from entrodrop_bench.paths import Layout\nfrom entrodrop_bench.evaluate.stage import evaluate_experiment\n"
        f"c = ExperimentConfig.model_validate_json(Path({str(cfg)!r}).read_text())\n"
        f"w = {{k: Path(v) for k, v in {({k: str(v) for k, v in world.items()})!r}.items()}}\n"
        "s = evaluate_experiment(c, Layout.from_config(c), world_benchmarks=w, progress=False)\n"
        "print(json.dumps({k: s[k] for k in ('evaluated', 'skipped', 'failed')}))\n"
    )


def _all_stored(layout: Layout) -> list[tuple[int, str]]:
    return sorted((r.step, r.benchmark) for r in load_results(layout))


def test_two_plain_eval_processes_evaluate_every_pair_exactly_once(mini_config, mini_assets, tmp_path):
    config, layout, world = _setup(mini_config, mini_assets, tmp_path)
    script = _eval_script(config, world, tmp_path)
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
    counts = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    total = len(STEPS) * len(BENCHES)
    # Each process saw every pair once (evaluated it, or found it done), and between them each pair was evaluated once.
    assert [c["evaluated"] + c["skipped"] for c in counts] == [total, total]
    assert sum(c["evaluated"] for c in counts) == total
    assert all(c["failed"] == 0 for c in counts)
    assert _all_stored(layout) == sorted((s, b) for s in STEPS for b in BENCHES)


def test_workers_split_the_store_and_a_killed_workers_claim_is_picked_up(mini_config, mini_assets, tmp_path):
    config, layout, world = _setup(mini_config, mini_assets, tmp_path, workers=2, threads=1)
    # A "worker" that claimed checkpoint-2 (took its store lock) and then hangs; it is killed once every other
    # checkpoint is done, so the eval below can finish only by claiming checkpoint-2 after the kill.
    lock = layout.store_lock("plain", 0, 2)
    lock.parent.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom filelock import FileLock\n"
        f"held = FileLock({str(lock)!r})\nheld.acquire()\nprint('held', flush=True)\ntime.sleep(3600)\n")],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    others = sorted((s, b) for s in STEPS[1:] for b in BENCHES)

    def kill_when_others_done() -> None:
        while _all_stored(layout) != others and holder.poll() is None:
            time.sleep(0.2)
        if holder.poll() is None:
            os.kill(holder.pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_when_others_done, daemon=True)
    killer.start()
    try:
        summary = evaluate_experiment(config, layout, world_benchmarks=world, progress=False)
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait()
        killer.join()
    assert holder.returncode == -signal.SIGKILL
    total = len(STEPS) * len(BENCHES)
    assert (summary["evaluated"], summary["skipped"], summary["failed"], summary["workers"]) == (total, 0, 0, 2)
    assert _all_stored(layout) == sorted((s, b) for s in STEPS for b in BENCHES)
    # A second eval finds everything done without starting a worker.
    again = evaluate_experiment(config, layout, world_benchmarks=world, progress=False)
    assert (again["evaluated"], again["skipped"], again["workers"]) == (0, total, 0)


def test_a_killed_eval_process_leaves_no_stale_claim(mini_config, mini_assets, tmp_path):
    config, layout, world = _setup(mini_config, mini_assets, tmp_path)
    env = {**os.environ, "ENTRODROP_BENCH_FAULT": "before-replace:tiny_general.json"}
    proc = subprocess.run([sys.executable, "-c", _eval_script(config, world, tmp_path)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert len(_all_stored(layout)) == 1, "killed while holding its first checkpoint's claim, one result written"
    summary = evaluate_experiment(config, layout, world_benchmarks=world, progress=False)
    total = len(STEPS) * len(BENCHES)
    assert (summary["evaluated"], summary["skipped"], summary["failed"]) == (total - 1, 1, 0)


def test_without_the_request_cache_the_results_are_the_same_and_no_cache_is_written(mini_config, mini_assets, tmp_path):
    stored = {}
    for cache in (True, False):
        config, layout, world = _setup(mini_config, mini_assets, tmp_path / str(cache), request_cache=cache)
        summary = evaluate_experiment(config, layout, world_benchmarks=world, progress=False)
        assert summary["evaluated"] == len(STEPS) * len(BENCHES)
        stored[cache] = sorted((r.step, r.benchmark, r.score, r.items.scores if r.items else None) for r in load_results(layout))
        dbs = list(layout.runs_dir.rglob("lm_cache/*.db"))
        assert bool(dbs) == cache
    assert stored[True] == stored[False]


def test_eval_covers_only_the_configs_runs_and_seeds(tmp_path):
    """A shared runs folder (the seeds study beside the demo) or a removed method's leftovers are not evaluated."""
    from entrodrop_bench.config import load_config
    from entrodrop_bench.evaluate.stage import pending_pairs
    from entrodrop_bench.paths import CONFIGS_DIR

    config = load_config(CONFIGS_DIR / "tiny.yaml",
                         [f"output.runs_dir={tmp_path / 'runs'}", f"output.results_dir={tmp_path / 'results'}"])
    layout = Layout.from_config(config)
    for run, seed in [("plain", 0), ("plain", 1), ("entrodrop", 0), ("removed_method", 0)]:
        ckpt = layout.run_dir(run, seed) / "checkpoint-29"
        ckpt.mkdir(parents=True)
        layout.manifest_file(ckpt).write_text("{}")
    found = {(run, seed) for run, seed, _, _ in pending_pairs(config, layout)}
    assert found == {("plain", 0), ("entrodrop", 0)}
