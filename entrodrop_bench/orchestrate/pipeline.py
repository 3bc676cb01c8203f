"""Stages of an experiment, each idempotent: prepare -> train -> eval -> select -> tables -> figures -> leaderboard.

Every stage reads what the previous one left on disk (see `entrodrop_bench.paths`) and skips work
that is already done, so `entrodrop-bench run` after an interruption continues where it stopped.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from entrodrop_bench.artifacts import Selection
from entrodrop_bench.config import ExperimentConfig, run_names
from entrodrop_bench.errors import DataError, UserError
from entrodrop_bench.paths import Layout
from entrodrop_bench.prepare.stage import Prepared, check_run_format, prepare

Echo = Callable[[str], None]


def stage_prepare(config: ExperimentConfig, layout: Layout, echo: Echo = print) -> Prepared:
    """Prepare once: in a launched job the main process downloads, tokenizes and computes the entropy caches
    while the others wait; then they read what it wrote (and fail, saying why, if they cannot see it)."""
    from entrodrop_bench.distributed import check_joined, process_state
    from entrodrop_bench.prepare.signals import warm_caches

    state = process_state()
    check_joined(state)
    check_run_format(layout)
    tic = time.perf_counter()
    with state.main_process_first():
        prepared = prepare(config, layout, echo if state.is_main_process else _quiet, writer=state.is_main_process)
        if state.is_main_process:
            warm_caches(prepared)
    if not state.is_main_process:
        echo(f"prepare: process {state.process_index} of {state.num_processes} read the caches the main process wrote")
        return prepared
    plan = prepared.plan
    echo(
        f"prepare: {len(prepared.target_train)} target docs ({prepared.target_train.n_tokens:,} tokens), "
        f"{len(prepared.target_val)} validation docs, {plan.total_steps} steps x {plan.tokens_per_step} tokens "
        f"= {plan.target_epoch(plan.total_steps):.1f} target epochs [{time.perf_counter() - tic:.1f}s]"
    )
    return prepared


def _quiet(_: str) -> None:
    pass


def check_train_selection(config: ExperimentConfig, only: list[str] | None, seeds: list[int] | None) -> None:
    """`--run` and `--seed` must name runs and seeds of the config (checked before any compute)."""
    runs = run_names(config)
    unknown = set(only or []) - set(runs)
    if unknown:
        raise UserError(f"--run: unknown run(s) {sorted(unknown)}; this config has: {', '.join(runs)}")
    unknown_seeds = set(seeds or []) - set(config.train.seeds)
    if unknown_seeds:
        raise UserError(f"--seed: {sorted(unknown_seeds)} not in train.seeds {config.train.seeds}; train one of those "
                        "or add the seed to train.seeds")


def _jobs(config: ExperimentConfig, only: list[str] | None) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(first jobs, later jobs): every run that declares a `baseline_dependency` (`j0: auto`) trains after the
    baseline runs whose validation curves it reads; the config checked at load that a baseline method exists. A
    rate-matched run (`rate_dependency`) trains later too: the rate it matches may depend on that step."""
    check_train_selection(config, only, None)
    jobs = [(r, s) for r in config.runs if not only or r in only for s in config.train.seeds]
    later = [j for j in jobs if config.runs[j[0]].baseline_dependency or config.runs[j[0]].rate_dependency]
    return [j for j in jobs if j not in later], later


def stage_train(config: ExperimentConfig, layout: Layout, *, only: list[str] | None = None, seeds: list[int] | None = None,
                progress: bool = True, echo: Echo = print, fill_idle: bool = False) -> dict[str, str]:
    """Train every run (or those named), resuming interrupted ones; returns run/seed -> final state.

    `fill_idle` (the `run` command): once the last runs train and a process slot falls idle, an evaluation
    worker fills it, evaluating the checkpoints already written (see `_train_parallel`)."""
    from entrodrop_bench.distributed import process_state

    check_train_selection(config, only, seeds)
    prepared = stage_prepare(config, layout, echo)
    first, rest = _jobs(config, only)
    if seeds is not None:
        first = [j for j in first if j[1] in seeds]
        rest = [j for j in rest if j[1] in seeds]
    states: dict[str, str] = {}
    with process_state().main_process_first():  # the main process links; the others then see its links
        share_runs(config, layout, first + rest, echo)
    for run, seed in first + rest:
        if _is_complete(layout, run, seed):
            echo(f"train: {run}/seed{seed} already complete")
            states[f"{run}/seed{seed}"] = "complete"
    first, rest = ([j for j in batch if f"{j[0]}/seed{j[1]}" not in states] for batch in (first, rest))
    if config.train.parallel_runs > 1 and len(first) + len(rest) > 1:
        states.update(_train_parallel(config, layout, first, rest, echo, fill_idle=fill_idle))
    else:
        for run, seed in first + rest:
            states[f"{run}/seed{seed}"] = _train_one(prepared, run, seed, progress, echo)
    return states


def share_runs(config: ExperimentConfig, layout: Layout, jobs: list[tuple[str, int]], echo: Echo = print) -> list[tuple[str, int]]:
    """Reuse finished runs of the experiments in `output.shared_runs_from` whose run key equals ours.

    A run folder that exists here already (even partial) is kept: nothing written is replaced. A source run
    that is not complete yet is not linked (train that experiment first, or this one trains its own)."""
    from entrodrop_bench.config import run_key
    from entrodrop_bench.train.status import read_status, run_is_complete

    shared = []
    for source_dir in config.output.shared_runs_from:
        source = Layout.of_runs_dir(source_dir)
        for run, seed in jobs:
            mine = layout.run_dir(run, seed)
            if mine.exists() or mine.is_symlink() or (run, seed) in shared:
                continue
            status = read_status(source, run, seed)
            key = run_key(config, run, seed)
            if status is None:
                continue
            if status.run_key != key:
                echo(f"train: {run}/seed{seed} in {source.runs_dir} has other settings (run key "
                     f"{status.run_key} != {key}); training it here")
                continue
            if not run_is_complete(source, run, seed):  # the same test as our own runs: status and every file
                echo(f"train: {run}/seed{seed} in {source.runs_dir} is not finished (state {status.state}); training it here")
                continue
            layout.link_shared_run(run, seed, source.run_dir(run, seed))
            echo(f"train: {run}/seed{seed} shared from {source.run_dir(run, seed)} (identical settings, run key {key})")
            shared.append((run, seed))
    return shared


def _is_complete(layout: Layout, run: str, seed: int) -> bool:
    from entrodrop_bench.train.status import run_is_complete

    return run_is_complete(layout, run, seed)


def _train_one(prepared: Prepared, run: str, seed: int, progress: bool, echo: Echo) -> str:
    from entrodrop_bench.errors import TrainingDiverged
    from entrodrop_bench.train.trainer import Trainer

    trainer = Trainer(prepared, run, seed, progress=progress)
    tic = time.perf_counter()
    try:
        state = trainer.train()
    except TrainingDiverged as exc:
        echo(f"train: {run}/seed{seed} diverged: {exc}")
        return "diverged"
    echo(f"train: {run}/seed{seed} {state} [{time.perf_counter() - tic:.0f}s]")
    return state


def _train_parallel(config: ExperimentConfig, layout: Layout, first: list[tuple[str, int]], later: list[tuple[str, int]],
                    echo: Echo, *, fill_idle: bool = False) -> dict[str, str]:
    """One process per run, `parallel_runs` at a time: on CPU, single-thread runs side by side beat one wide run.

    One queue for both batches of `_jobs`: baseline runs first, and a run in `later` (it reads the baseline's
    validation minimum) starts once every run of `first` with the baseline role has finished, so no slot waits
    for the whole first batch. With `fill_idle`, when the queue is empty and a slot falls idle (the last runs
    train), one `eval` worker (`eval.workers=1`) evaluates the checkpoints written so far in that slot; it is
    stopped when training ends (a claimed checkpoint it leaves half done is released with its process, and the
    eval stage finishes it)."""
    cfg_file = layout.experiment_config_file
    baselines = [j for j in first if config.runs[j[0]].role.kind == "baseline"]
    jobs = baselines + [j for j in first if j not in baselines] + later
    baselines_done = threading.Event()
    if not baselines or not later:
        baselines_done.set()
    pending_baselines = set(baselines)
    lock = threading.Lock()
    started, running = [0], [0]
    filler: list[subprocess.Popen] = []

    def launch(job: tuple[str, int]) -> tuple[str, str]:
        run, seed = job
        if job in later:
            baselines_done.wait()
        with lock:
            started[0] += 1
            running[0] += 1
        log_file = layout.train_output_file(run, seed)
        log_file.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "entrodrop_bench.cli", "train", str(cfg_file), "--run", run, "--seed", str(seed), "--no-progress"]
        tic = time.perf_counter()
        with open(log_file, "w") as out:
            rc = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT)
        state = "complete" if rc == 0 else f"failed (exit {rc}; see {log_file})"
        echo(f"train: {run}/seed{seed} {state} [{time.perf_counter() - tic:.0f}s]")
        with lock:
            running[0] -= 1
            pending_baselines.discard(job)
            if not pending_baselines:
                baselines_done.set()
            # Every job has started and others still train: this slot stays idle until they finish.
            if fill_idle and started[0] == len(jobs) and running[0] > 0 and not filler:
                filler.append(_start_eval_filler(cfg_file, layout))
                echo("eval: a worker evaluates the checkpoints written so far while the last runs train")
        return f"{run}/seed{seed}", state

    try:
        with ThreadPoolExecutor(max_workers=config.train.parallel_runs) as pool:
            return dict(pool.map(launch, jobs))
    finally:
        for proc in filler:
            proc.terminate()
            proc.wait()


def _start_eval_filler(cfg_file: Path, layout: Layout) -> subprocess.Popen:
    log_file = layout.eval_filler_output_file
    log_file.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "entrodrop_bench.cli", "eval", str(cfg_file), "eval.workers=1", "--no-progress"]
    with open(log_file, "w") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)


def check_eval_config(config: ExperimentConfig, *, evaluates_here: bool = True) -> None:
    """Benchmark names, the local code-benchmark files they read and the generation backend, checked before any
    compute. Not part of `config.check_config` (load time) because it needs the environment: lm-eval's task
    registry, the code sandbox, vllm and a GPU (and the evaluate stage's readers, which a core module may not
    import). Commands that only read results (select, tables, plan, status) never need a GPU, so they load an
    `eval.backend: vllm` config anywhere. `evaluates_here` False (`launch`, which submits jobs from a login node
    without a GPU): vllm must be installed, the device is checked by the eval jobs themselves."""
    from entrodrop_bench.evaluate import evalplus_runner, livecodebench
    from entrodrop_bench.evaluate.suites import LIVECODEBENCH, check_benchmarks
    from entrodrop_bench.evaluate.vllm_backend import check_backend

    check_backend(config.eval, need_device=evaluates_here)
    check_benchmarks(config.eval.lm_eval_tasks, config.eval.evalplus_datasets)
    for name in config.eval.evalplus_datasets:
        path = config.eval.data_overrides.get(name)
        if path is not None:
            reader = livecodebench.read_problems if name in LIVECODEBENCH else evalplus_runner.read_problems
            try:
                reader(Path(path))
            except UnicodeDecodeError as exc:
                raise DataError(f"eval.data_overrides.{name}: {path} is not UTF-8 text (byte {exc.object[exc.start]:#04x} "
                                f"at offset {exc.start}); expected {name} problems as JSON lines") from None
    for name in config.eval.lm_eval_tasks:
        if name in config.eval.data_overrides:
            check_json_records(f"eval.data_overrides.{name}", Path(config.eval.data_overrides[name]))
    if config.eval.evalplus_datasets:  # generated code runs only in a real sandbox, or where the config accepts less
        from entrodrop_bench.evaluate.sandbox import require_isolation

        require_isolation(config.eval.allow_weak_isolation, "model-generated code (eval.evalplus_datasets)")


def check_json_records(key: str, path: Path) -> None:
    """A local .json/.jsonl benchmark file must hold JSON records (a list, or one object per line)."""
    if path.suffix not in (".json", ".jsonl"):
        return
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{key}: {path} is not UTF-8 text (byte offset {exc.start}); expected JSON records") from None
    except OSError as exc:
        raise DataError(f"{key}: {path} cannot be read ({exc.strerror or exc})") from None
    if path.suffix == ".json":
        try:
            records = json.loads(text)
            if isinstance(records, list) and records:
                return
        except json.JSONDecodeError:
            pass  # datasets' json builder also reads JSON lines from a .json file
    lines = [(i, line) for i, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not lines:
        raise DataError(f"{key}: {path} holds no records; expected a JSON list or one JSON object per line")
    for i, line in lines:
        try:
            if not isinstance(json.loads(line), dict):
                raise ValueError("not an object")
        except ValueError as exc:
            raise DataError(f"{key}: {path}, line {i}: not a JSON object ({exc}); expected a JSON list or one JSON "
                            "object per line") from None


def preflight(config: ExperimentConfig, *, evaluates_here: bool = True) -> None:
    """Everything checkable before the first step: benchmark names and files, the generation backend, and a
    reachable source for every input (model, corpora, benchmarks; a token for gated repos). `run`, `prepare`,
    `train` and `eval` call it; `launch` with `evaluates_here` False (see `check_eval_config`)."""
    from entrodrop_bench.config import check_seq_len_fits_model
    from entrodrop_bench.orchestrate.sources import check_sources

    check_eval_config(config, evaluates_here=evaluates_here)
    check_sources(config)
    check_seq_len_fits_model(config)


def stage_eval(config: ExperimentConfig, layout: Layout, *, progress: bool = True, echo: Echo = print,
               engine: Any = None) -> dict:
    """Evaluate every checkpoint (`evaluate_experiment`; `engine`: a vLLM engine the caller keeps across calls)."""
    from entrodrop_bench.evaluate.stage import evaluate_experiment
    from entrodrop_bench.prepare.stage import build_world

    check_eval_config(config)
    world = build_world(config, layout, echo)
    benchmarks = None
    if world is not None:
        names = [b for b in config.eval.lm_eval_tasks + config.eval.evalplus_datasets if b.startswith("tiny_")]
        benchmarks = {b: world.benchmark_file(b) for b in names}
    summary = evaluate_experiment(config, layout, world_benchmarks=benchmarks, progress=progress, engine=engine)
    failures = summary.pop("failures", [])
    echo(f"eval: {summary}")
    summary["failures"] = failures
    return summary


def eval_failures(summary: dict) -> list[str]:
    """What an eval stage failed to do, one line each (empty: everything was evaluated)."""
    return [f"eval: {line}" for line in summary.get("failures", [])]


def train_failures(states: dict[str, str]) -> list[str]:
    return [f"train: {job} {state}" for job, state in states.items() if state != "complete"]


def stage_select(config: ExperimentConfig, layout: Layout, echo: Echo = print) -> Selection:
    """The one stage that computes the selection; tables, figures and the leaderboard read what it writes."""
    from entrodrop_bench.report.selection import select

    selection = select(config, layout)
    chosen = [m for m, v in selection.methods.items() if v.best_run is not None]
    echo(f"select: {len(chosen)} of {len(selection.methods)} methods have a selected checkpoint "
         f"({len(selection.skipped)} run/seed(s) skipped, {len(selection.missing)} result(s) missing); "
         f"wrote {layout.selection_file}")
    return selection


def written_selection(config: ExperimentConfig, layout: Layout) -> Selection:
    """selection.json as `select` last wrote it; an ArtifactError when it is missing or stale."""
    from entrodrop_bench.report.selection import read_selection

    return read_selection(config, layout)


def selection_failures(selection: Selection) -> list[str]:
    """Methods the selection could not represent, with why (each skipped run/seed names its reason)."""
    lines = [f"select: {s.run}/seed{s.seed}: {s.reason}" for s in selection.skipped]
    return lines if all(v.best_run is None for v in selection.methods.values()) else []


def stage_tables(config: ExperimentConfig, layout: Layout, echo: Echo = print, from_items: Path | None = None) -> list:
    """The tables from selection.json; with `from_items` (a per-item outcomes file) every number that comes from
    per-item outcomes is recomputed from that file, and the runs folder is not read."""
    from entrodrop_bench.report.item_outcomes import rebuilt_selection
    from entrodrop_bench.report.tables import write_tables

    paths = write_tables(config, layout, rebuilt_selection(config, layout, from_items) if from_items else None)
    echo(f"tables: {len(paths)} files in {layout.tables_dir}")
    return paths


def stage_figures(config: ExperimentConfig, layout: Layout, echo: Echo = print) -> list:
    from entrodrop_bench.report.figures import write_figures

    paths = write_figures(config, layout)
    echo(f"figures: {len(paths)} files in {layout.figures_dir}")
    return paths


def stage_leaderboard(config: ExperimentConfig, layout: Layout, echo: Echo = print) -> list:
    from entrodrop_bench.report.leaderboard import build_entries

    entries = build_entries(config, layout)
    echo(f"leaderboard: {len(entries)} entries in {layout.leaderboard_entries}")
    return entries


def run_all(config: ExperimentConfig, layout: Layout, *, progress: bool = True, echo: Echo = print) -> list[str]:
    """Every stage; a run that fails training or a benchmark that fails evaluation does not stop the others.
    `select` writes selection.json, which tables, figures and the leaderboard then read.

    Returns what failed, one line each (empty: everything succeeded).
    """
    tic = time.perf_counter()
    check_eval_config(config)  # an unknown benchmark fails now, not after hours of training
    failures = train_failures(stage_train(config, layout, progress=progress, echo=echo, fill_idle=True))
    failures += eval_failures(stage_eval(config, layout, progress=progress, echo=echo))
    failures += selection_failures(stage_select(config, layout, echo))
    stage_tables(config, layout, echo)
    stage_figures(config, layout, echo)
    stage_leaderboard(config, layout, echo)
    echo(f"run: done in {time.perf_counter() - tic:.0f}s; results in {layout.results_dir}"
         + (f"; {len(failures)} failure(s)" if failures else ""))
    return failures
