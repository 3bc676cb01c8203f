"""Stages of an experiment, each idempotent: prepare -> train -> eval -> select -> tables -> figures -> leaderboard.

Every stage reads what the previous one left on disk (see `entrodrop_bench.paths`) and skips work
that is already done, so `entrodrop-bench run` after an interruption continues where it stopped.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from entrodrop_bench.config import ExperimentConfig, run_names
from entrodrop_bench.errors import UserError
from entrodrop_bench.experiment import Prepared, check_run_format, prepare
from entrodrop_bench.paths import Layout

Echo = Callable[[str], None]


def stage_prepare(config: ExperimentConfig, layout: Layout, echo: Echo = print) -> Prepared:
    from entrodrop_bench.signals import warm_caches

    check_run_format(layout)
    tic = time.perf_counter()
    prepared = prepare(config, layout, echo)
    warm_caches(prepared)
    plan = prepared.plan
    echo(
        f"prepare: {len(prepared.target_train)} target docs ({prepared.target_train.n_tokens:,} tokens), "
        f"{len(prepared.target_val)} validation docs, {plan.total_steps} steps x {plan.tokens_per_step} tokens "
        f"= {plan.target_epoch(plan.total_steps):.1f} target epochs [{time.perf_counter() - tic:.1f}s]"
    )
    return prepared


def _jobs(config: ExperimentConfig, only: list[str] | None) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(plain jobs, other jobs): plain runs first, since `j0: auto` reads their validation curves."""
    runs = run_names(config)
    unknown = set(only or []) - set(runs)
    if unknown:
        raise UserError(f"--run: unknown run(s) {sorted(unknown)}; this config has: {', '.join(runs)}")
    selected = [r for r in runs if not only or r in only]
    jobs = [(r, s) for r in selected for s in config.train.seeds]
    first = [j for j in jobs if runs[j[0]][1] == "plain"]
    return first, [j for j in jobs if j not in first]


def stage_train(config: ExperimentConfig, layout: Layout, *, only: list[str] | None = None, seeds: list[int] | None = None,
                progress: bool = True, echo: Echo = print) -> dict[str, str]:
    """Train every run (or those named), resuming interrupted ones; returns run/seed -> final state."""
    prepared = stage_prepare(config, layout, echo)
    first, rest = _jobs(config, only)
    if seeds is not None:
        first = [j for j in first if j[1] in seeds]
        rest = [j for j in rest if j[1] in seeds]
    states: dict[str, str] = {}
    for run, seed in first + rest:
        if _is_complete(layout, run, seed):
            echo(f"train: {run}/seed{seed} already complete")
            states[f"{run}/seed{seed}"] = "complete"
    first, rest = ([j for j in batch if f"{j[0]}/seed{j[1]}" not in states] for batch in (first, rest))
    for batch in (first, rest):
        if config.train.parallel_runs > 1 and len(batch) > 1:
            states.update(_train_parallel(config, layout, batch, echo))
        else:
            for run, seed in batch:
                states[f"{run}/seed{seed}"] = _train_one(prepared, run, seed, progress, echo)
    return states


def _is_complete(layout: Layout, run: str, seed: int) -> bool:
    status = layout.status_file(run, seed)
    return status.is_file() and json.loads(status.read_text()).get("state") == "complete"


def _train_one(prepared: Prepared, run: str, seed: int, progress: bool, echo: Echo) -> str:
    from entrodrop_bench.errors import TrainingDiverged
    from entrodrop_bench.train import Trainer

    trainer = Trainer(prepared, run, seed, progress=progress)
    tic = time.perf_counter()
    try:
        state = trainer.train()
    except TrainingDiverged as exc:
        echo(f"train: {run}/seed{seed} diverged: {exc}")
        return "diverged"
    echo(f"train: {run}/seed{seed} {state} [{time.perf_counter() - tic:.0f}s]")
    return state


def _train_parallel(config: ExperimentConfig, layout: Layout, jobs: list[tuple[str, int]], echo: Echo) -> dict[str, str]:
    """One process per run, `parallel_runs` at a time: on CPU, single-thread runs side by side beat one wide run."""
    cfg_file = layout.experiment_config_file

    def launch(job: tuple[str, int]) -> tuple[str, str]:
        run, seed = job
        log_file = layout.run_dir(run, seed) / "train.out"
        log_file.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "entrodrop_bench.cli", "train", str(cfg_file), "--run", run, "--seed", str(seed), "--no-progress"]
        tic = time.perf_counter()
        with open(log_file, "w") as out:
            rc = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT)
        state = "complete" if rc == 0 else f"failed (exit {rc}; see {log_file})"
        echo(f"train: {run}/seed{seed} {state} [{time.perf_counter() - tic:.0f}s]")
        return f"{run}/seed{seed}", state

    with ThreadPoolExecutor(max_workers=config.train.parallel_runs) as pool:
        return dict(pool.map(launch, jobs))


def check_eval_config(config: ExperimentConfig) -> None:
    """Benchmark names and the local code-benchmark files they read, checked before any compute."""
    from entrodrop_bench.evaluation import evalplus_runner, livecodebench
    from entrodrop_bench.evaluation.benchmarks import LIVECODEBENCH, check_benchmarks

    check_benchmarks(config.eval.lm_eval_tasks, config.eval.evalplus_datasets)
    for name in config.eval.evalplus_datasets:
        path = config.eval.data_overrides.get(name)
        if path is not None:
            reader = livecodebench.read_problems if name in LIVECODEBENCH else evalplus_runner.read_problems
            reader(Path(path))
    if config.eval.evalplus_datasets:  # generated code runs only in a real sandbox, or where the config accepts less
        from entrodrop_bench.evaluation.sandbox import require_isolation

        require_isolation(config.eval.allow_weak_isolation, "model-generated code (eval.evalplus_datasets)")


def stage_eval(config: ExperimentConfig, layout: Layout, *, progress: bool = True, echo: Echo = print) -> dict:
    from entrodrop_bench.evaluation import evaluate_experiment
    from entrodrop_bench.experiment import build_world

    check_eval_config(config)
    world = build_world(config, layout, echo)
    benchmarks = None
    if world is not None:
        names = [b for b in config.eval.lm_eval_tasks + config.eval.evalplus_datasets if b.startswith("tiny_")]
        benchmarks = {b: world.benchmark_file(b) for b in names}
    summary = evaluate_experiment(config, layout, world_benchmarks=benchmarks, progress=progress)
    echo(f"eval: {summary}")
    return summary


def stage_select(config: ExperimentConfig, layout: Layout, echo: Echo = print) -> dict:
    from entrodrop_bench.selection import select

    selection = select(config, layout)
    echo(f"select: wrote {layout.selection_file}")
    return selection


def stage_tables(config: ExperimentConfig, layout: Layout, echo: Echo = print) -> list:
    from entrodrop_bench.tables import write_tables

    paths = write_tables(config, layout)
    echo(f"tables: {len(paths)} files in {layout.tables_dir}")
    return paths


def stage_figures(config: ExperimentConfig, layout: Layout, echo: Echo = print) -> list:
    from entrodrop_bench.figures import write_figures

    paths = write_figures(config, layout)
    echo(f"figures: {len(paths)} files in {layout.figures_dir}")
    return paths


def stage_leaderboard(config: ExperimentConfig, layout: Layout, echo: Echo = print) -> list:
    from entrodrop_bench.leaderboard import build_entries

    entries = build_entries(config, layout)
    echo(f"leaderboard: {len(entries)} entries in {layout.leaderboard_entries}")
    return entries


def run_all(config: ExperimentConfig, layout: Layout, *, progress: bool = True, echo: Echo = print) -> None:
    tic = time.perf_counter()
    check_eval_config(config)  # an unknown benchmark fails now, not after hours of training
    stage_train(config, layout, progress=progress, echo=echo)
    stage_eval(config, layout, progress=progress, echo=echo)
    stage_select(config, layout, echo)
    stage_tables(config, layout, echo)
    stage_figures(config, layout, echo)
    stage_leaderboard(config, layout, echo)
    echo(f"run: done in {time.perf_counter() - tic:.0f}s; results in {layout.results_dir}")
