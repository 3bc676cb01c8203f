"""`entrodrop-bench launch CONFIG --executor slurm|local` and `entrodrop-bench status CONFIG`.

The experiment becomes jobs, submitted through submitit's `AutoExecutor` (SLURM, or the same jobs as local
processes), with the dependencies the stages have:

    prepare                      once; every training job waits for it (afterok)
    train/<run>/seed<k>          one per run and seed: `entrodrop-bench train CONFIG --run R --seed K` (through
                                 `accelerate launch` when the job has several GPUs). Runs that read the baseline's
                                 validation minimum (`j0: auto`), and rate-matched runs (`{match: <method>}`), wait
                                 for the baseline's job of their seed (afterok).
                                 On its time limit or on preemption, submitit's checkpointing requeues the job and the
                                 trainer resumes from the last complete checkpoint (exactly, as on any restart).
    eval/<i>                     `launcher.eval_jobs` workers; each starts once the training jobs have started (SLURM
                                 `after`), evaluates every checkpoint that exists, then polls for new ones
                                 (`launcher.eval_poll_seconds`) until no training job is queued or running, and fails
                                 if a run did not complete (so the report does not run on partial results)
    report                       select, tables, figures, leaderboard build, after every evaluation job (afterok)

Every job id goes into `<runs_dir>/launch/jobs.json` (`LaunchJobs`). Launching again skips work that is complete
on disk, does not resubmit a job that is still queued or running (it becomes the dependency instead), and
resubmits what failed or was cancelled; `status` lists each job with its state and, for failed ones, its logs.
The local executor has no scheduler: `launch` itself submits each local job once the jobs it depends on have
ended, and waits for all of them.
"""

from __future__ import annotations

import getpass
import pickle
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import yaml

from entrodrop_bench.artifacts import LaunchedJob, LaunchJobs, RunCost
from entrodrop_bench.atomic import write_text
from entrodrop_bench.config import ExperimentConfig, load_config
from entrodrop_bench.cost import cost_of, duration, si, stored_run_results
from entrodrop_bench.errors import UserError
from entrodrop_bench.paths import Layout, resolve_project_path

Executor = Literal["slurm", "local"]
Echo = Callable[[str], None]
# Job states as `status` shows them. `done`: the job ended well; `failed`: it ended otherwise (error, cancelled,
# timed out too often, killed); `not submitted`: a job it needed failed first.
QUEUED, RUNNING, DONE, FAILED, NOT_SUBMITTED = "queued", "running", "done", "failed", "not submitted"
IN_FLIGHT = (QUEUED, RUNNING)
_SLURM_QUEUED = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SUSPENDED"}
_SLURM_RUNNING = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING", "RESIZING"}


# --- what runs inside a job --------------------------------------------------------------------------------------
class StageJob:
    """The callable submitit pickles into each job: one stage of the experiment, reading the launched config.

    `checkpoint` is submitit's hook on a time limit or preemption: it returns the same call, which submitit
    requeues; a training job then resumes from its run's last complete checkpoint."""

    def __init__(self, config_file: str, kind: str, run: str | None = None, seed: int | None = None) -> None:
        self.config_file = config_file
        self.kind = kind
        self.run = run
        self.seed = seed

    def __call__(self) -> str:
        config = load_config(self.config_file)
        layout = Layout.from_config(config)
        from entrodrop_bench.orchestrate import pipeline

        if self.kind == "prepare":
            pipeline.preflight(config, evaluates_here=False)
            pipeline.stage_prepare(config, layout)
            return "prepared"
        if self.kind == "train":
            return _train_in_job(config, Path(self.config_file), self.run, self.seed)
        if self.kind == "eval":
            return eval_worker(config, layout)
        if self.kind == "report":
            return _report(config, layout)
        raise ValueError(f"unknown job kind {self.kind!r}")

    def checkpoint(self, *args, **kwargs):
        import submitit

        return submitit.helpers.DelayedSubmission(StageJob(self.config_file, self.kind, self.run, self.seed))


def _ignore_usr2() -> None:
    # The preemption signal is for submitit in the job's main process (it requeues the job); a trainer child
    # that died of it first would turn a requeue into a failure.
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)


def _train_in_job(config: ExperimentConfig, config_file: Path, run: str, seed: int) -> str:
    """The per-run training entry point in a child process (through `accelerate launch` with several GPUs)."""
    train = ["train", str(config_file), "--run", run, "--seed", str(seed), "--no-progress"]
    gpus = config.launcher.gpus_per_job
    if gpus > 1:
        accel = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(gpus)]
        if config.launcher.accelerate_config:
            accel += ["--config_file", str(resolve_project_path(config.launcher.accelerate_config))]
        else:
            accel += ["--multi_gpu"]
        cmd = [*accel, "-m", "entrodrop_bench.cli", *train]
    else:
        cmd = [sys.executable, "-m", "entrodrop_bench.cli", *train]
    print(f"launch: {' '.join(cmd)}", flush=True)
    rc = subprocess.call(cmd, preexec_fn=_ignore_usr2)
    if rc != 0:
        raise RuntimeError(f"training {run}/seed{seed} exited with {rc} (its output is above in this log)")
    return "complete"


def _training_over(config: ExperimentConfig, layout: Layout) -> tuple[bool, list[str]]:
    """(no training job of this experiment is queued or running, runs that are not complete)."""
    from entrodrop_bench.train.status import run_is_complete

    incomplete = [f"{r}/seed{s}" for r in config.runs for s in config.train.seeds if not run_is_complete(layout, r, s)]
    if not incomplete:
        return True, []
    current = read_jobs(layout).current()
    states = job_states(layout, [current[f"train/{job}"] for job in incomplete if f"train/{job}" in current])
    pending = [job for job in incomplete if f"train/{job}" not in current or states[f"train/{job}"][0] in IN_FLIGHT]
    return not pending, incomplete


def _checkpoint_set(layout: Layout) -> set[tuple[str, int, int]]:
    return {(run, seed, step) for run, seed in layout.train_runs() for step, _ in layout.checkpoints(run, seed)}


def eval_worker(config: ExperimentConfig, layout: Layout, *, echo: Echo = print) -> str:
    """Evaluate checkpoints as they appear until training has ended: `eval` over what exists whenever the set of
    checkpoints changed, otherwise a poll every `launcher.eval_poll_seconds`. Raises (the job fails, and the
    report job does not run) when an evaluation failed or a run did not complete."""
    from entrodrop_bench.orchestrate import pipeline

    seen: set | None = None
    summary: dict = {}
    engine = None  # under eval.backend vllm: one engine for the job, whichever poll finds its checkpoints
    if config.eval.backend == "vllm" and config.eval.workers == 1:
        from entrodrop_bench.evaluate.vllm_backend import WorkerEngine

        engine = WorkerEngine(config)
    try:
        while True:
            over, incomplete = _training_over(config, layout)  # before listing: a checkpoint written before is seen
            now = _checkpoint_set(layout)
            if now != seen:
                summary = pipeline.stage_eval(config, layout, progress=False, echo=echo, engine=engine)
                seen = now
                continue
            if over:
                break
            time.sleep(config.launcher.eval_poll_seconds)
    finally:
        if engine is not None:
            engine.close()
    problems = pipeline.eval_failures(summary)
    if incomplete:
        problems.append(f"training did not complete for {', '.join(incomplete)} (see `entrodrop-bench status CONFIG`)")
    if problems:
        raise RuntimeError("evaluation left work undone:\n  " + "\n  ".join(problems))
    return f"evaluated {len(seen or ())} checkpoint(s)"


def _report(config: ExperimentConfig, layout: Layout) -> str:
    from entrodrop_bench.orchestrate import pipeline

    failures = pipeline.selection_failures(pipeline.stage_select(config, layout))
    pipeline.stage_tables(config, layout)
    pipeline.stage_figures(config, layout)
    pipeline.stage_leaderboard(config, layout)
    if failures:
        raise RuntimeError("select: " + "; ".join(failures))
    return "reported"


# --- the jobs file and job states --------------------------------------------------------------------------------
def read_jobs(layout: Layout) -> LaunchJobs:
    return LaunchJobs.read_or_none(LaunchJobs.path(layout)) or LaunchJobs()


def _result_file(layout: Layout, job_id: str) -> Path:
    from submitit.core.utils import JobPaths

    return JobPaths(layout.launch_logs_dir, job_id).result_pickle


def _outcome(layout: Layout, job: LaunchedJob) -> tuple[str, str]:
    """A job no longer in the queue: done or failed, from submitit's result file."""
    path = _result_file(layout, job.job_id)
    try:
        with open(path, "rb") as fh:
            kind, value = pickle.load(fh)
    except FileNotFoundError:
        return FAILED, "ended without a result (cancelled, killed or out of time)"
    except Exception as exc:  # noqa: BLE001 - an unreadable result is a failed job, said so
        return FAILED, f"unreadable result file {path} ({type(exc).__name__})"
    if kind == "success":
        return DONE, str(value)
    last = [line for line in str(value).strip().splitlines() if line.strip()]
    return FAILED, (last[-1] if last else "error")[:300]


def _squeue() -> dict[str, tuple[str, str]] | None:
    """job id -> (SLURM state, reason) of this user's jobs the controller still knows; None: no SLURM here."""
    if shutil.which("squeue") is None:
        return None
    proc = subprocess.run(["squeue", "-h", "-t", "all", "-u", getpass.getuser(), "-o", "%i|%T|%r"],
                          capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise UserError(f"squeue failed ({proc.stderr.strip()[:300]}); is SLURM reachable from here (SLURM_CONF)?")
    out = {}
    for line in proc.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3:
            out[parts[0]] = (parts[1], parts[2])
    return out


def _local_alive(job_id: str) -> bool:
    """A local job's controller process is alive (and is one: a reused pid runs something else)."""
    try:
        cmdline = Path(f"/proc/{int(job_id)}/cmdline").read_bytes()
    except (OSError, ValueError):
        return False
    return b"submitit" in cmdline and b"zombie" not in _proc_state(job_id)


def _proc_state(job_id: str) -> bytes:
    try:
        stat = Path(f"/proc/{int(job_id)}/stat").read_bytes()
        return b"zombie" if stat.rsplit(b")", 1)[1].split()[0] == b"Z" else b""
    except (OSError, ValueError, IndexError):
        return b""


def job_states(layout: Layout, jobs: list[LaunchedJob]) -> dict[str, tuple[str, str]]:
    """key -> (state, detail) of each job: queued, running, done, failed or not submitted."""
    states: dict[str, tuple[str, str]] = {}
    queue = _squeue() if any(j.executor == "slurm" and j.job_id for j in jobs) else {}
    for job in jobs:
        if job.job_id is None:
            states[job.key] = (NOT_SUBMITTED, job.note or "")
        elif job.executor == "local":
            states[job.key] = (RUNNING, "") if _local_alive(job.job_id) else _outcome(layout, job)
        elif queue is None:
            states[job.key] = _outcome(layout, job)
        elif job.job_id in queue:
            slurm_state, reason = queue[job.job_id]
            if slurm_state in _SLURM_QUEUED:
                states[job.key] = (QUEUED, reason if reason != "None" else slurm_state)
            elif slurm_state in _SLURM_RUNNING:
                states[job.key] = (RUNNING, "")
            elif slurm_state == "COMPLETED":
                states[job.key] = _outcome(layout, job)
            else:
                kind, detail = _outcome(layout, job)
                states[job.key] = (FAILED, f"{slurm_state}: {detail}" if kind == FAILED else slurm_state)
        else:
            states[job.key] = _outcome(layout, job)
    return states


# --- deciding and submitting -------------------------------------------------------------------------------------
@dataclass
class Planned:
    """A job to submit: its key, what it runs, and the keys it waits for."""

    key: str
    kind: str
    run: str | None = None
    seed: int | None = None
    after_ok: list[str] = field(default_factory=list)
    after_start: list[str] = field(default_factory=list)


def _complete_runs(config: ExperimentConfig, layout: Layout) -> set[tuple[str, int]]:
    from entrodrop_bench.train.status import run_is_complete

    return {(r, s) for r in config.runs for s in config.train.seeds if run_is_complete(layout, r, s)}


def _evaluations_complete(config: ExperimentConfig, layout: Layout) -> bool:
    """Every run complete and every checkpoint x benchmark has a stored result and no recorded failure."""
    if len(_complete_runs(config, layout)) < len(config.runs) * len(config.train.seeds):
        return False
    benchmarks = list(dict.fromkeys(config.eval.lm_eval_tasks + config.eval.evalplus_datasets))
    for run in config.runs:
        for seed in config.train.seeds:
            for step, _ in layout.checkpoints(run, seed):
                for bench in benchmarks:
                    if (not layout.result_file(run, seed, step, bench).is_file()
                            or layout.eval_failure_file(run, seed, step, bench).exists()):
                        return False
    return True


def _report_current(config: ExperimentConfig, layout: Layout) -> bool:
    from entrodrop_bench.errors import DataError
    from entrodrop_bench.report.selection import read_selection

    try:
        read_selection(config, layout)
    except DataError:
        return False
    return layout.leaderboard_entries.is_file()


def plan_jobs(config: ExperimentConfig, layout: Layout, states: dict[str, tuple[str, str]]) -> tuple[list[Planned], list[str]]:
    """(jobs to submit, keys of in-flight jobs kept), from what is on disk and what is queued or running."""
    in_flight = {key for key, (state, _) in states.items() if state in IN_FLIGHT}
    todo: list[Planned] = []
    new_or_running: set[str] = set()

    def need(planned: Planned) -> None:
        if planned.key in in_flight:
            new_or_running.add(planned.key)
            return
        todo.append(planned)
        new_or_running.add(planned.key)

    complete = _complete_runs(config, layout)
    train_keys = [(r, s) for r in config.runs for s in config.train.seeds if (r, s) not in complete]
    if train_keys and not layout.prepared_file.is_file():
        need(Planned("prepare", "prepare"))
    prep = [k for k in ("prepare",) if k in new_or_running]
    baselines = [r for r, spec in config.runs.items() if spec.role.kind == "baseline"]
    for run, seed in train_keys:
        after = list(prep)
        spec = config.runs[run]
        # j0: auto reads the baseline's validation minimum; a rate-matched run's rate may depend on that step too.
        if spec.baseline_dependency or spec.rate_dependency:
            after += [f"train/{b}/seed{seed}" for b in baselines if f"train/{b}/seed{seed}" in new_or_running]
        need(Planned(f"train/{run}/seed{seed}", "train", run, seed, after_ok=after))
    trainers = [f"train/{r}/seed{s}" for r, s in train_keys]
    eval_keys = [f"eval/{i}" for i in range(config.launcher.eval_jobs)]
    if train_keys or not _evaluations_complete(config, layout):
        for key in eval_keys:
            need(Planned(key, "eval", after_ok=list(prep) if not trainers else [], after_start=trainers))
    evals = [k for k in eval_keys if k in new_or_running]
    if "report" in in_flight and not todo:
        new_or_running.add("report")  # waits for the evaluation jobs still in flight: nothing new to add
    elif todo or not _report_current(config, layout):
        # A report still pending from an earlier launch would not wait for what is submitted now: a new one does.
        todo.append(Planned("report", "report", after_ok=evals))
    return todo, sorted(in_flight & new_or_running)


def _executor(config: ExperimentConfig, layout: Layout, kind: Executor, planned: Planned, job_ids: dict[str, str]):
    import submitit

    lc = config.launcher
    layout.launch_logs_dir.mkdir(parents=True, exist_ok=True)
    executor = submitit.AutoExecutor(folder=layout.launch_logs_dir, cluster=kind, slurm_max_num_timeout=lc.max_requeues,
                                     local_max_num_timeout=lc.max_requeues)
    gpus = lc.gpus_per_job if planned.kind == "train" else min(lc.gpus_per_job, 1)
    params: dict = {"timeout_min": lc.time_minutes, "name": f"{config.name}:{planned.key}"}
    if kind == "slurm":
        params |= {"cpus_per_task": lc.cpus_per_job, "tasks_per_node": 1, "nodes": 1}
        if gpus:
            params["gpus_per_node"] = gpus
        if lc.mem_gb is not None:
            params["mem_gb"] = lc.mem_gb
        if lc.partition:
            params["slurm_partition"] = lc.partition
        extra: dict = {**({"account": lc.account} if lc.account else {}), **lc.sbatch_options}
        deps = [f"afterok:{':'.join(job_ids[k] for k in planned.after_ok)}"] if planned.after_ok else []
        deps += [f"after:{':'.join(job_ids[k] for k in planned.after_start)}"] if planned.after_start else []
        if deps:
            # A job whose dependency failed is cancelled rather than left pending forever; a re-launch resubmits it.
            extra |= {"dependency": ",".join(deps), "kill-on-invalid-dep": "yes"}
        if extra:
            params["slurm_additional_parameters"] = extra
    executor.update_parameters(**params)
    return executor


def _record(layout: Layout, jobs: LaunchJobs, record: LaunchedJob) -> None:
    jobs.jobs.append(record)
    jobs.write(LaunchJobs.path(layout))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _snapshot_config(config: ExperimentConfig, layout: Layout) -> Path:
    """The resolved config the jobs read: one file per config hash, written once (never under a running job)."""
    path = layout.launch_config_file(config.config_hash())
    text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    if not path.is_file() or path.read_text() != text:  # the launcher section may differ within one hash
        write_text(path, text)
    return path


def _submit(config: ExperimentConfig, layout: Layout, kind: Executor, planned: Planned, config_file: Path,
            job_ids: dict[str, str], jobs: LaunchJobs, echo: Echo):
    executor = _executor(config, layout, kind, planned, job_ids)
    job = executor.submit(StageJob(str(config_file), planned.kind, planned.run, planned.seed))
    job_ids[planned.key] = job.job_id
    deps = [job_ids[k] for k in planned.after_ok + planned.after_start]
    _record(layout, jobs, LaunchedJob(key=planned.key, job_id=job.job_id, executor=kind, submitted=_now(),
                                      depends_on=deps, stdout=str(job.paths.stdout), stderr=str(job.paths.stderr),
                                      config_hash=config.config_hash()))
    echo(f"launch: {planned.key} -> job {job.job_id}" + (f" (after {', '.join(deps)})" if deps else ""))
    return job


def launch(config: ExperimentConfig, layout: Layout, executor: Executor, *, wait: bool = False, echo: Echo = print) -> int:
    """Submit what the experiment still needs; returns the exit status (0: submitted, or everything done)."""
    from filelock import FileLock

    from entrodrop_bench.orchestrate import pipeline

    if executor == "slurm" and shutil.which("sbatch") is None:
        raise UserError("--executor slurm: sbatch is not on PATH (no SLURM client here); use --executor local, or "
                        "run on a SLURM login node")
    pipeline.preflight(config, evaluates_here=False)  # an unreachable input fails now, not in a job hours later
    layout.launch_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(layout.launch_lock)):
        jobs = read_jobs(layout)
        current = jobs.current()
        states = job_states(layout, list(current.values()))
        _check_other_config(config, current, states)
        _list_failed(current, states, echo)
        todo, kept = plan_jobs(config, layout, states)
        other = [k for k in kept if current[k].executor != executor]
        if other and todo:
            raise UserError(f"{', '.join(other)} still run under the {current[other[0]].executor} executor, which "
                            f"--executor {executor} jobs cannot wait for; wait for them to end (or cancel them), "
                            "then launch again")
        job_ids = {k: current[k].job_id for k in kept}
        for key in kept:
            echo(f"launch: {key} is already {states[key][0]} as job {current[key].job_id}; not submitted again")
        if not todo:
            echo("launch: nothing to submit: " + ("every job is complete" if not kept else "the rest is in flight"))
            return 0
        config_file = _snapshot_config(config, layout)
        if executor == "slurm":
            for planned in todo:
                _submit(config, layout, executor, planned, config_file, job_ids, jobs, echo)
    if executor == "local":
        return _run_local(config, layout, todo, config_file, job_ids, echo)
    if wait:
        return wait_for(layout, [job_ids[p.key] for p in todo], config, echo)
    echo(f"launch: {len(todo)} job(s) submitted; `entrodrop-bench status CONFIG` shows their progress")
    return 0


def _check_other_config(config: ExperimentConfig, current: dict[str, LaunchedJob], states: dict) -> None:
    other = [j for k, j in current.items() if states[k][0] in IN_FLIGHT and j.config_hash != config.config_hash()]
    if other:
        ids = ", ".join(f"{j.key} ({j.job_id})" for j in other[:5])
        raise UserError(f"jobs of this runs_dir launched with other settings are still queued or running: {ids}; wait "
                        "for them, or cancel them (scancel), before launching a changed config into the same "
                        "output.runs_dir")


def _list_failed(current: dict[str, LaunchedJob], states: dict, echo: Echo) -> None:
    for key, job in current.items():
        state, detail = states[key]
        if state == FAILED:
            echo(f"launch: {key} (job {job.job_id}) failed: {detail}; logs: {job.stdout} {job.stderr}")
        elif state == NOT_SUBMITTED:
            echo(f"launch: {key} was not submitted: {detail}")


def _run_local(config: ExperimentConfig, layout: Layout, todo: list[Planned], config_file: Path,
               job_ids: dict[str, str], echo: Echo) -> int:
    """Local processes in dependency order: a job starts once every job it waits for has ended well (an
    evaluation job once training has started), at most `launcher.local_jobs` training jobs at a time."""
    waiting = list(todo)
    running: dict[str, object] = {}
    outcome: dict[str, str] = {}
    jobs = read_jobs(layout)

    def ended(key: str) -> str | None:
        if key in outcome:
            return outcome[key]
        if key in running or any(p.key == key for p in waiting):
            return None
        if key not in job_ids:  # never planned: nothing to wait for
            return DONE
        # kept from an earlier launch, still in flight then: wait for it, then read how it ended
        if _local_alive(job_ids[key]):
            return None
        return _outcome(layout, read_jobs(layout).current()[key])[0]

    while waiting or running:
        for key, job in list(running.items()):
            if job.done():
                state, detail = _outcome(layout, read_jobs(layout).current()[key])
                outcome[key] = state
                echo(f"launch: {key} (job {job.job_id}) {state}" + (f": {detail}" if state == FAILED else ""))
                del running[key]
        for planned in list(waiting):
            deps = [ended(k) for k in planned.after_ok]
            if any(d in (FAILED, NOT_SUBMITTED) for d in deps):
                failed = [k for k, d in zip(planned.after_ok, deps) if d in (FAILED, NOT_SUBMITTED)]
                outcome[planned.key] = NOT_SUBMITTED
                _record(layout, jobs, LaunchedJob(key=planned.key, job_id=None, executor="local", submitted=_now(),
                                                  config_hash=config.config_hash(), note=f"{', '.join(failed)} failed"))
                echo(f"launch: {planned.key} not submitted: {', '.join(failed)} failed")
                waiting.remove(planned)
                continue
            started = all(k in job_ids or k in outcome for k in planned.after_start)
            busy = sum(1 for k in running if k.startswith("train/"))
            if all(d == DONE for d in deps) and started and (planned.kind != "train" or busy < config.launcher.local_jobs):
                running[planned.key] = _submit(config, layout, "local", planned, config_file, job_ids, jobs, echo)
                jobs = read_jobs(layout)
                waiting.remove(planned)
        time.sleep(0.5)
    failed = [k for k, v in outcome.items() if v != DONE]
    echo(f"launch: {len(outcome) - len(failed)} local job(s) done" + (f", {len(failed)} failed or not submitted: "
                                                                      f"{', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def wait_for(layout: Layout, job_ids: list[str], config: ExperimentConfig, echo: Echo, poll_s: float = 2.0) -> int:
    """Until none of `job_ids` is queued or running; then the status table. 0 when every job ended well."""
    while True:
        current = [j for j in read_jobs(layout).current().values() if j.job_id in job_ids]
        states = job_states(layout, current)
        if not any(state in IN_FLIGHT for state, _ in states.values()):
            break
        time.sleep(poll_s)
    echo(format_status(status(config, layout)))
    return 0 if all(state == DONE for state, _ in states.values()) else 1


# --- status ------------------------------------------------------------------------------------------------------
@dataclass
class RunRow:
    run: str
    seed: int
    state: str
    checkpoints: int
    evaluated: int
    eval_failed: int
    pairs: int
    job: str
    tokens: int | None = None
    """Tokens trained so far (`cost.TrainCost`); None when the run's status records no cost."""
    flops: float | None = None
    train_wall_s: float | None = None
    eval_wall_s: float | None = None
    """Summed wall time of the run's stored results; None without any."""
    device: str | None = None
    device_hours: float | None = None


def status(config: ExperimentConfig, layout: Layout) -> dict:
    """Runs (state, checkpoints, evaluations done/failed of all) and every current job with its state."""
    from entrodrop_bench.train.status import read_status, run_is_complete

    current = read_jobs(layout).current()
    states = job_states(layout, list(current.values()))
    benchmarks = list(dict.fromkeys(config.eval.lm_eval_tasks + config.eval.evalplus_datasets))
    rows = []
    for run in config.runs:
        for seed in config.train.seeds:
            key = f"train/{run}/seed{seed}"
            job = current.get(key)
            run_status = read_status(layout, run, seed)
            if run_is_complete(layout, run, seed):
                state = "done"
            elif run_status is not None and run_status.state == "diverged":
                state = "failed (diverged)"
            elif job is not None:
                state = states[key][0]
            else:
                state = "not launched" if run_status is None else "partial (not launched)"
            ckpts = layout.checkpoints(run, seed)
            pairs = [(step, b) for step, _ in ckpts for b in benchmarks]
            done = sum(layout.result_file(run, seed, step, b).is_file() for step, b in pairs)
            failed = sum(layout.eval_failure_file(run, seed, step, b).exists() for step, b in pairs)
            row = RunRow(run, seed, state, len(ckpts), done, failed, len(pairs), job.job_id or "-" if job else "-")
            _add_cost(row, cost_of(run_status, stored_run_results(layout, run, seed)))
            rows.append(row)
    jobs = [{"key": k, "job_id": j.job_id, "executor": j.executor, "state": states[k][0], "detail": states[k][1],
             "stdout": j.stdout, "stderr": j.stderr} for k, j in current.items()]
    return {"runs": [r.__dict__ for r in rows], "jobs": jobs}


def _add_cost(row: RunRow, cost: RunCost | None) -> None:
    if cost is None:
        return
    if cost.eval_results:
        row.eval_wall_s = cost.eval_wall_s
    row.device_hours = cost.device_hours
    if cost.train is not None:
        t = cost.train
        row.tokens, row.flops, row.train_wall_s = t.tokens_trained, t.train_flops, t.train_wall_s
        row.device = t.device if t.device_count == 1 else f"{t.device_count} x {t.device}"


def format_status(report: dict) -> str:
    """The runs table with each run's measured cost (`-` where not recorded), then the jobs."""
    lines = ["run/seed                                  state         ckpts  evals (done/failed/all)  job       "
             "  tokens   FLOPs  train   eval  device  device-h"]
    for r in report["runs"]:
        name = f"{r['run']}/seed{r['seed']}"
        device_h = "-" if r.get("device_hours") is None else f"{r['device_hours']:.3g}"
        lines.append(f"{name:<41} {r['state']:<13} {r['checkpoints']:>5}  {r['evaluated']:>5}/{r['eval_failed']}/"
                     f"{r['pairs']:<13}  {r['job']:<10} {si(r.get('tokens')):>7} {si(r.get('flops')):>7} "
                     f"{duration(r.get('train_wall_s')):>6} {duration(r.get('eval_wall_s')):>6}  {r.get('device') or '-'}  {device_h}")
    if report["jobs"]:
        lines += ["", "job                                       id          state"]
        for j in report["jobs"]:
            lines.append(f"{j['key']:<41} {j['job_id'] or '-':<11} {j['state']}")
            if j["state"] in (FAILED, NOT_SUBMITTED):
                lines.append(f"    {j['detail']}" + (f"\n    logs: {j['stdout']}  {j['stderr']}" if j["job_id"] else ""))
    else:
        lines += ["", "no jobs launched (entrodrop-bench launch CONFIG --executor slurm|local)"]
    return "\n".join(lines)

