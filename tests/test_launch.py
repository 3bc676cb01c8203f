"""`entrodrop-bench launch` and `status`: the tiny grid as jobs on a real single-node SLURM cluster
(.ci/slurm-cluster.sh) and as local processes.

SLURM tests skip, saying why, where slurmctld, slurmd, munged or sbatch are missing or the cluster does not
come up. Every test starts from one shared tiny world (prepared once per session and copied), so each launch
still runs its own `prepare` job but does not rebuild the world.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from entrodrop_bench.artifacts import LaunchedJob, LaunchJobs, RunStatus
from entrodrop_bench.atomic import file_sha256
from entrodrop_bench.config import load_config
from entrodrop_bench.paths import CONFIGS_DIR, PROJECT_ROOT, Layout

WORLD = ["tiny.n_target_docs=60", "tiny.n_general_docs=300", "tiny.n_benchmark=10", "tiny.pretrain_tokens=8000"]
# 10 steps of 2048 tokens, a checkpoint every target epoch (every 2 steps in this world); 5 items per benchmark.
SMALL = [*WORLD, "data.token_budget=20480", "train.checkpoint_every_epochs=1", "eval.limit=5",
         "launcher.eval_poll_seconds=1"]
TWO_RUNS = "methods={plain: {plugin: plain}, entrodrop: {plugin: entrodrop, params: {j0: auto}}}"
ONE_RUN = "methods={plain: {plugin: plain}}"
CLUSTER_SCRIPT = PROJECT_ROOT / ".ci" / "slurm-cluster.sh"


def _overrides(tmp: Path, *extra: str) -> list[str]:
    return [*SMALL, *extra, f"output.runs_dir={tmp / 'runs'}", f"output.results_dir={tmp / 'results'}"]


def _cli(*args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "entrodrop_bench.cli", *args], capture_output=True, text=True,
                          timeout=900, env=env, cwd=PROJECT_ROOT)
    if check:
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc


def _layout(tmp: Path, *extra: str) -> Layout:
    return Layout.from_config(load_config(CONFIGS_DIR / "tiny.yaml", _overrides(tmp, *extra)))


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> Path:
    """A runs folder whose tiny world and caches are built (once per session)."""
    tmp = tmp_path_factory.mktemp("launch-world")
    _cli("prepare", str(CONFIGS_DIR / "tiny.yaml"), *_overrides(tmp, ONE_RUN), "--no-progress")
    return tmp / "runs"


def _seed_world(tiny_world: Path, tmp: Path) -> None:
    """The shared world and caches in this test's runs folder (prepare then finds them: cheap, still a job)."""
    for name in ("world", "cache"):
        shutil.copytree(tiny_world / name, tmp / "runs" / name)


@pytest.fixture(scope="module")
def slurm(tmp_path_factory) -> dict:
    """A single-node SLURM cluster (its own munged, slurmctld, slurmd) for this module; the environment to reach it."""
    missing = [t for t in ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel")
               if shutil.which(t) is None and not Path("/usr/sbin", t).exists()]
    if missing:
        pytest.skip(f"SLURM is not installed here (missing {', '.join(missing)}; apt-get install slurm-wlm munge, "
                    "which .ci/system-deps.sh does where it can)")
    folder = tmp_path_factory.mktemp("slurm")
    # The daemons' folder under /tmp keeps munge's socket path short (sun_path holds 108 bytes).
    short = Path(f"/tmp/slurm-{os.getpid()}-{folder.name}")
    proc = subprocess.run(["bash", str(CLUSTER_SCRIPT), "up", str(short)], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        subprocess.run(["bash", str(CLUSTER_SCRIPT), "down", str(short)], capture_output=True, timeout=60)
        pytest.skip(f"the single-node SLURM cluster did not start: {proc.stderr.strip()[-1500:]}")
    env = {**os.environ, "SLURM_CONF": str(short / "slurm.conf"), "PATH": f"{os.environ['PATH']}:/usr/sbin"}
    yield env
    subprocess.run(["bash", str(CLUSTER_SCRIPT), "down", str(short)], capture_output=True, timeout=60)
    shutil.rmtree(short, ignore_errors=True)


def _jobs(layout: Layout) -> dict[str, LaunchedJob]:
    return LaunchJobs.read(LaunchJobs.path(layout)).current()


def _slurm_job(env: dict, job_id: str) -> dict[str, str]:
    """`scontrol show job` as key -> value (the cluster keeps ended jobs for an hour: MinJobAge)."""
    out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, env=env, check=True)
    return dict(item.split("=", 1) for item in out.stdout.split() if "=" in item)


def _result(layout: Layout, job_id: str) -> tuple[str, object]:
    from submitit.core.utils import JobPaths

    with open(JobPaths(layout.launch_logs_dir, job_id).result_pickle, "rb") as fh:
        return pickle.load(fh)


def _check_everything_done(tmp: Path, *extra: str) -> None:
    """Every run complete, every checkpoint evaluated on every benchmark, selection, tables and leaderboard there."""
    config = load_config(CONFIGS_DIR / "tiny.yaml", _overrides(tmp, *extra))
    layout = Layout.from_config(config)
    from entrodrop_bench.train.status import run_is_complete

    for run in config.runs:
        assert run_is_complete(layout, run, 0), run
        ckpts = layout.checkpoints(run, 0)
        assert [s for s, _ in ckpts] == [2, 4, 6, 8, 10], (run, ckpts)
        for step, _ in ckpts:
            for bench in config.eval.lm_eval_tasks:
                assert layout.result_file(run, 0, step, bench).is_file(), (run, step, bench)
    assert layout.selection_file.is_file() and layout.table_file("table1", ".md").is_file()
    assert layout.leaderboard_entries.is_file()


def _store_mtimes(runs: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in [*(runs / "store").rglob("*.json"), *(runs / "train").rglob("*.safetensors")]}


# --- SLURM ------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_slurm_launch_runs_every_stage_as_a_job_with_its_dependencies(slurm, tiny_world, tmp_path):
    """The grid with a `j0: auto` run and two evaluation jobs (the default suite's SLURM test below has one run)."""
    _seed_world(tiny_world, tmp_path)
    cfg = str(CONFIGS_DIR / "tiny.yaml")
    extra = (TWO_RUNS, "launcher.eval_jobs=2")
    out = _cli("launch", cfg, *_overrides(tmp_path, *extra), "--executor", "slurm", "--wait", env=slurm).stdout
    _check_everything_done(tmp_path, *extra)
    layout = _layout(tmp_path, *extra)
    jobs = _jobs(layout)
    assert set(jobs) == {"prepare", "train/plain/seed0", "train/entrodrop/seed0", "eval/0", "eval/1", "report"}
    ids = {k: j.job_id for k, j in jobs.items()}
    slurm_jobs = {k: _slurm_job(slurm, i) for k, i in ids.items()}
    for key, info in slurm_jobs.items():  # each stage ran as its own SLURM job and returned its result
        assert info["JobState"] == "COMPLETED" and info["JobName"] == f"tiny:{key}", (key, info)
        assert _result(layout, ids[key])[0] == "success", (key, _result(layout, ids[key]))
    # The order the dependencies ask for: prepare, plain, then entrodrop (j0: auto reads plain's validation
    # minimum); evaluation once training started; the report after every evaluation job ended.
    assert jobs["train/plain/seed0"].depends_on == [ids["prepare"]]
    assert jobs["train/entrodrop/seed0"].depends_on == [ids["prepare"], ids["train/plain/seed0"]]
    assert sorted(jobs["report"].depends_on) == sorted([ids["eval/0"], ids["eval/1"]])
    start, end = ({k: v[t] for k, v in slurm_jobs.items()} for t in ("StartTime", "EndTime"))
    assert end["prepare"] <= start["train/plain/seed0"] and end["train/plain/seed0"] <= start["train/entrodrop/seed0"]
    assert max(end["eval/0"], end["eval/1"]) <= start["report"]
    assert "train: plain/seed0 complete" in Path(jobs["train/plain/seed0"].stdout).read_text()
    assert "launch: report -> job" in out

    status = json.loads(_cli("status", cfg, *_overrides(tmp_path, *extra), "--json", env=slurm).stdout)
    assert {r["run"]: (r["state"], r["checkpoints"], r["evaluated"], r["pairs"]) for r in status["runs"]} == {
        "plain": ("done", 5, 10, 10), "entrodrop": ("done", 5, 10, 10)}
    assert {j["key"]: j["state"] for j in status["jobs"]} == dict.fromkeys(jobs, "done")

    before = _store_mtimes(tmp_path / "runs")
    again = _cli("launch", cfg, *_overrides(tmp_path, *extra), "--executor", "slurm", env=slurm).stdout
    assert "nothing to submit" in again and _jobs(layout) == jobs and _store_mtimes(tmp_path / "runs") == before


def test_requeue_and_scancel_mid_run_then_relaunch_give_the_weights_of_an_uninterrupted_run(slurm, tiny_world, tmp_path):
    """Every stage as a SLURM job; a training job preempted (USR2: submitit checkpoints and requeues it, same job id)
    and later cancelled (scancel) mid-run; a re-launch resumes it to the uninterrupted run's exact weights."""
    cfg = str(CONFIGS_DIR / "tiny.yaml")
    # The uninterrupted reference: the same run trained in one go, locally.
    ref = tmp_path / "ref"
    _seed_world(tiny_world, ref)
    _cli("train", cfg, *_overrides(ref, ONE_RUN), "--no-progress")
    final = _layout(ref, ONE_RUN).checkpoints("plain", 0)[-1]
    assert final[0] == 10

    run = tmp_path / "cut"
    _seed_world(tiny_world, run)
    layout = _layout(run, ONE_RUN)
    # The training process stops right after publishing checkpoint-4, and again after checkpoint-8 (before the
    # logs that follow a checkpoint are written): the points where the job is preempted, then cancelled.
    env = {**slurm, "ENTRODROP_BENCH_PAUSE": "after-replace:checkpoint-4,after-replace:checkpoint-8"}
    _cli("launch", cfg, *_overrides(run, ONE_RUN), "--executor", "slurm", env=env)
    train_id = _jobs(layout)["train/plain/seed0"].job_id
    _wait(lambda: Layout.manifest_file(layout.checkpoint_dir("plain", 0, 4)).is_file(), "checkpoint-4", layout)
    assert _slurm_job(slurm, train_id)["JobState"] == "RUNNING"
    at_4 = Layout.weights_file(layout.checkpoint_dir("plain", 0, 4)).stat()

    # Preemption: SLURM's signal to the job; submitit checkpoints the call and requeues the same job id.
    subprocess.run(["scancel", "--signal=USR2", train_id], env=slurm, check=True)
    _wait(lambda: (lambda info: (info["JobState"], info["Restarts"]))(_slurm_job(slurm, train_id)) == ("PENDING", "1"),
          "the requeue", layout)
    # SLURM makes a requeued job eligible only two minutes later; the test does not wait for that.
    subprocess.run(["scontrol", "update", f"JobId={train_id}", "StartTime=now"], env=slurm, check=True)
    _wait(lambda: Layout.manifest_file(layout.checkpoint_dir("plain", 0, 8)).is_file(), "checkpoint-8 after the requeue",
          layout)
    info = _slurm_job(slurm, train_id)
    assert info["JobState"] == "RUNNING" and info["Restarts"] == "1", info
    assert _jobs(layout)["train/plain/seed0"].job_id == train_id
    assert "this job is preempted" in Path(_jobs(layout)["train/plain/seed0"].stderr).read_text()

    # Cancellation: the job ends for good; the evaluation job sees training end without the run and fails, and the
    # report (afterok) is cancelled with it.
    subprocess.run(["scancel", train_id], env=slurm, check=True)
    _wait(lambda: _slurm_job(slurm, train_id)["JobState"] == "CANCELLED", "the cancel", layout)
    assert [s for s, _ in layout.checkpoints("plain", 0)] == [2, 4, 6, 8]
    jobs = _jobs(layout)
    _wait(lambda: all(_slurm_job(slurm, jobs[k].job_id)["JobState"] not in ("PENDING", "RUNNING")
                      for k in ("eval/0", "report")), "the evaluation and report jobs to end", layout)
    status = _cli("status", cfg, *_overrides(run, ONE_RUN), env=slurm).stdout
    assert f"train/plain/seed0                         {train_id:<11} failed" in status
    assert str(jobs["train/plain/seed0"].stdout) in status  # failed jobs are listed with their logs
    at_8 = Layout.weights_file(layout.checkpoint_dir("plain", 0, 8)).stat()

    relaunch = _cli("launch", cfg, *_overrides(run, ONE_RUN), "--executor", "slurm", "--wait", env=slurm).stdout
    assert f"train/plain/seed0 (job {train_id}) failed" in relaunch
    assert _submitted(relaunch) == ["train/plain/seed0", "eval/0", "report"]  # prepared already: no prepare job
    new_id = _jobs(layout)["train/plain/seed0"].job_id
    assert new_id != train_id and _slurm_job(slurm, new_id)["JobState"] == "COMPLETED"
    # Each restart resumed from the last complete checkpoint, which it left as it was (a restart from step 0 would
    # have rewritten it).
    for stat, step in ((at_4, 4), (at_8, 8)):
        now = Layout.weights_file(layout.checkpoint_dir("plain", 0, step)).stat()
        assert (now.st_ino, now.st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns), step
    ckpt = layout.checkpoint_dir("plain", 0, 10)
    assert file_sha256(Layout.weights_file(ckpt)) == file_sha256(Layout.weights_file(final[1]))
    weights, ref_weights = load_file(str(Layout.weights_file(ckpt))), load_file(str(Layout.weights_file(final[1])))
    assert all((weights[k] == ref_weights[k]).all() for k in ref_weights)
    _check_everything_done(run, ONE_RUN)
    for key, job in _jobs(layout).items():
        assert _slurm_job(slurm, job.job_id)["JobState"] == "COMPLETED" and _result(layout, job.job_id)[0] == "success", key
    # Its cost counts the three sessions (first job, its requeue, the re-launch), and status shows it.
    cost = RunStatus.read(RunStatus.path(layout, "plain", 0)).cost
    assert (cost.sessions, cost.steps, cost.device, cost.device_count) == (3, 10, "cpu", 1) and cost.train_wall_s > 0
    row = json.loads(_cli("status", cfg, *_overrides(run, ONE_RUN), "--json", env=slurm).stdout)["runs"][0]
    assert row["tokens"] == cost.tokens_trained and row["eval_wall_s"] > 0 and row["device_hours"] > cost.device_hours


def _submitted(out: str) -> list[str]:
    return [line.split()[1] for line in out.splitlines() if line.startswith("launch: ") and " -> job " in line]


def _wait(condition, what: str, layout: Layout, limit_s: float = 600) -> None:
    """Poll until `condition()` holds; the limit only keeps a broken run from hanging the suite."""
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            logs = sorted(layout.launch_logs_dir.glob("*_log.*"))
            tails = "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in logs)
            pytest.fail(f"waited {limit_s:.0f}s for {what}\n{tails}")
        time.sleep(0.5)


# --- local executor and re-launch decisions -----------------------------------------------------------------------
def test_local_executor_runs_the_same_jobs_and_a_relaunch_submits_nothing(tiny_world, tmp_path):
    _seed_world(tiny_world, tmp_path)
    cfg = str(CONFIGS_DIR / "tiny.yaml")
    out = _cli("launch", cfg, *_overrides(tmp_path, ONE_RUN), "--executor", "local").stdout
    _check_everything_done(tmp_path, ONE_RUN)
    layout = _layout(tmp_path, ONE_RUN)
    jobs = _jobs(layout)
    assert set(jobs) == {"prepare", "train/plain/seed0", "eval/0", "report"}
    assert {j.executor for j in jobs.values()} == {"local"}
    for key, job in jobs.items():
        assert _result(layout, job.job_id)[0] == "success", key
    assert jobs["train/plain/seed0"].depends_on == [jobs["prepare"].job_id]
    assert jobs["report"].depends_on == [jobs["eval/0"].job_id]
    assert "4 local job(s) done" in out
    # Without a terminal the trainer logs plain progress lines (rate and ETA) into the job's output.
    assert "train: plain/seed0 step 10/10 (100%)" in Path(jobs["train/plain/seed0"].stdout).read_text()

    before = _store_mtimes(tmp_path / "runs")
    again = _cli("launch", cfg, *_overrides(tmp_path, ONE_RUN), "--executor", "local").stdout
    assert "nothing to submit: every job is complete" in again
    assert _jobs(layout) == jobs and _store_mtimes(tmp_path / "runs") == before


def test_relaunch_keeps_in_flight_jobs_and_resubmits_failed_ones_listing_their_logs(tmp_path):
    """The decisions alone, on a jobs file: a live job is not submitted twice (it becomes the dependency), a failed
    one is resubmitted and listed with its logs, a job never submitted because its dependency failed too."""
    from submitit.core.utils import JobPaths

    from entrodrop_bench.orchestrate import launch

    config = load_config(CONFIGS_DIR / "tiny.yaml", _overrides(tmp_path, TWO_RUNS))
    layout = Layout.from_config(config)
    layout.prepared_file.parent.mkdir(parents=True)
    layout.prepared_file.write_text("{}")  # prepared: no prepare job
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "submitit"])
    try:
        failed_paths = JobPaths(layout.launch_logs_dir, "4242")
        failed_paths.result_pickle.parent.mkdir(parents=True)
        with open(failed_paths.result_pickle, "wb") as fh:
            pickle.dump(("error", "Traceback (most recent call last):\nRuntimeError: out of memory"), fh)

        def record(key: str, job_id: str | None, note: str | None = None) -> LaunchedJob:
            paths = JobPaths(layout.launch_logs_dir, job_id or "none")
            return LaunchedJob(key=key, job_id=job_id, executor="local", submitted="2026-01-01T00:00:00+00:00",
                               stdout=str(paths.stdout), stderr=str(paths.stderr), config_hash=config.config_hash(),
                               note=note)

        LaunchJobs(jobs=[record("train/plain/seed0", str(live.pid)), record("eval/0", "4242"),
                         record("train/entrodrop/seed0", None, "train/plain/seed0 failed")]).write(LaunchJobs.path(layout))
        current = launch.read_jobs(layout).current()
        states = launch.job_states(layout, list(current.values()))
        assert {k: s for k, (s, _) in states.items()} == {
            "train/plain/seed0": "running", "eval/0": "failed", "train/entrodrop/seed0": "not submitted"}
        assert states["eval/0"][1] == "RuntimeError: out of memory"
        todo, kept = launch.plan_jobs(config, layout, states)
        assert kept == ["train/plain/seed0"]
        planned = {p.key: p for p in todo}
        assert list(planned) == ["train/entrodrop/seed0", "eval/0", "report"]
        assert planned["train/entrodrop/seed0"].after_ok == ["train/plain/seed0"]  # waits for the live job
        assert planned["eval/0"].after_start == ["train/plain/seed0", "train/entrodrop/seed0"]
        assert planned["report"].after_ok == ["eval/0"]
        lines: list[str] = []
        launch._list_failed(current, states, lines.append)
        assert lines == [f"launch: eval/0 (job 4242) failed: RuntimeError: out of memory; logs: {failed_paths.stdout} "
                         f"{failed_paths.stderr}",
                         "launch: train/entrodrop/seed0 was not submitted: train/plain/seed0 failed"]
        report = launch.format_status(launch.status(config, layout))
        assert f"train/plain/seed0                         {live.pid:<11} running" in report
        assert f"logs: {failed_paths.stdout}" in report

        # Everything still in flight (a second launch while the first one's jobs run): nothing is submitted twice.
        keys = ["train/plain/seed0", "train/entrodrop/seed0", "eval/0", "report"]
        LaunchJobs(jobs=[record(k, str(live.pid)) for k in keys]).write(LaunchJobs.path(layout))
        states = launch.job_states(layout, list(launch.read_jobs(layout).current().values()))
        assert launch.plan_jobs(config, layout, states) == ([], sorted(keys))
    finally:
        live.kill()
        live.wait()
    states = launch.job_states(layout, list(launch.read_jobs(layout).current().values()))
    assert states["train/plain/seed0"] == ("failed", "ended without a result (cancelled, killed or out of time)")


def test_the_tiny_grid_as_jobs_waits_where_the_stages_need_it(tmp_path):
    """The full tiny preset's plan: runs that read the baseline (`j0: auto`) or match another method's masking rate
    wait for the baseline's job; the others only for `prepare`; evaluation for training to start; the report for
    evaluation."""
    from entrodrop_bench.orchestrate import launch

    config = load_config(CONFIGS_DIR / "tiny.yaml", [f"output.runs_dir={tmp_path / 'r'}", f"output.results_dir={tmp_path / 'o'}",
                                                     "launcher.eval_jobs=3"])
    todo, kept = launch.plan_jobs(config, Layout.from_config(config), {})
    planned = {p.key: p for p in todo}
    trains = [f"train/{r}/seed0" for r in config.runs]
    assert kept == [] and list(planned) == ["prepare", *trains, "eval/0", "eval/1", "eval/2", "report"]
    waits_for_plain = {r for r, spec in config.runs.items() if spec.baseline_dependency or spec.rate_dependency}
    assert {"entrodrop", "token_dropout", "token_dropout_matched"} <= waits_for_plain
    for run in config.runs:
        expected = ["prepare", "train/plain/seed0"] if run in waits_for_plain else ["prepare"]
        assert planned[f"train/{run}/seed0"].after_ok == expected, run
    assert all(planned[f"eval/{i}"].after_start == trains for i in range(3))
    assert planned["report"].after_ok == ["eval/0", "eval/1", "eval/2"]


@pytest.mark.parametrize(("override", "message"), [
    ("launcher.sbatch_options={dependency: afterok:1}", "launcher.sbatch_options.dependency: is set by `launch` itself"),
    ("launcher.sbatch_options={--qos: high}", "is not an sbatch option name"),
    ("launcher.gpus_per_job=-1", "launcher.gpus_per_job"),
    ("launcher.time_minutes=0", "launcher.time_minutes"),
    ("launcher.accelerate_config=configs/accelerate/none.yaml", "launcher.accelerate_config: file"),
    ("launcher.partiton=gpu", "launcher.partiton"),
])
def test_bad_launcher_settings_fail_at_load_naming_the_field(tmp_path, override, message):
    proc = _cli("launch", str(CONFIGS_DIR / "tiny.yaml"), override, f"output.runs_dir={tmp_path / 'r'}",
                "--executor", "local", check=False)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert not (tmp_path / "r").exists()
