"""Crash tests: a real CLI subprocess is killed (SIGKILL) and the re-run recovers exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from entrodrop_bench.artifacts import RunStatus, ValCurve
from entrodrop_bench.orchestrate.pipeline import stage_train
from entrodrop_bench.paths import Layout


def _cli(config_file: Path, *args: str, env: dict | None = None, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "entrodrop_bench.cli", *args, str(config_file), "--no-progress"],
                            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def _yaml(config, path: Path) -> Path:
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    return path


def _final(layout: Layout, run: str) -> tuple[list[float], dict]:
    losses = [json.loads(line)["loss"] for line in layout.train_log_file(run, 0).read_text().splitlines()]
    return losses, load_file(str(layout.checkpoints(run, 0)[-1][1] / "model.safetensors"))


def _same(a: tuple[list[float], dict], b: tuple[list[float], dict]) -> bool:
    return a[0] == b[0] and all(torch.equal(a[1][k], b[1][k]) for k in a[1])


METHOD = {"m": {"plugin": "entrodrop", "params": {"gamma_max": 0.4, "schedule": "static"}}}


def test_kill_mid_training_then_resume_matches_uninterrupted_run(mini_config, tmp_path):
    train = {"checkpoint_every_epochs": 1, "threads": 1}
    data = {"token_budget": 65536}
    ref = mini_config(methods=METHOD, train=train, data=data, output={"runs_dir": str(tmp_path / "ref"), "results_dir": str(tmp_path / "r1")})
    assert _cli(_yaml(ref, tmp_path / "ref.yaml"), "train").wait() == 0
    crash = mini_config(methods=METHOD, train=train, data=data, output={"runs_dir": str(tmp_path / "crash"), "results_dir": str(tmp_path / "r2")})
    cfg_file, layout = _yaml(crash, tmp_path / "crash.yaml"), Layout.from_config(crash)
    proc = _cli(cfg_file, "train")
    deadline = time.time() + 120
    while not layout.checkpoints("m", 0) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before it could be killed; raise the budget"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = RunStatus.read(RunStatus.path(layout, "m", 0))
    assert killed.state == "running" and killed.cost.train_wall_s > 0 and killed.cost.sessions == 1
    assert _cli(cfg_file, "train").wait() == 0
    assert _same(_final(Layout.from_config(ref), "m"), _final(layout, "m"))
    # The cost: the same tokens and FLOPs as the uninterrupted run, and the killed session's wall time kept.
    resumed, whole = (RunStatus.read(RunStatus.path(lay, "m", 0)).cost for lay in (layout, Layout.from_config(ref)))
    assert (resumed.tokens_trained, resumed.train_flops) == (whole.tokens_trained, whole.train_flops)
    assert resumed.sessions == 2 and resumed.train_wall_s > killed.cost.train_wall_s and whole.sessions == 1


def test_kill_during_checkpoint_save_keeps_previous_checkpoint(mini_config, tmp_path):
    config = mini_config(methods=METHOD, train={"checkpoint_every_epochs": 0.5})
    cfg_file, layout = _yaml(config, tmp_path / "c.yaml"), Layout.from_config(config)
    from entrodrop_bench.prepare.stage import prepare

    steps = prepare(config, layout, echo=lambda s: None).plan.checkpoint_steps(0.5)
    assert len(steps) >= 3
    env = {"ENTRODROP_BENCH_FAULT": f"before-replace:checkpoint-{steps[1]}"}
    proc = _cli(cfg_file, "train", env=env)
    assert proc.wait() == -signal.SIGKILL
    run_dir = layout.run_dir("m", 0)
    assert [s for s, _ in layout.checkpoints("m", 0)] == [steps[0]], "the partial save must not count as a checkpoint"
    assert any(p.name.endswith(".partial") for p in run_dir.iterdir()), "the fault should have left a partial folder"
    first = load_file(str(layout.checkpoint_dir("m", 0, steps[0]) / "model.safetensors"))
    assert all(torch.isfinite(t).all() for t in first.values())
    assert _cli(cfg_file, "train").wait() == 0
    assert [s for s, _ in layout.checkpoints("m", 0)] == steps
    assert not any(p.name.endswith(".partial") for p in run_dir.iterdir())


@pytest.mark.parametrize("name", ["val_curve.json", "status.json"])
def test_kill_while_writing_a_json_keeps_the_old_file(tmp_path, name):
    target = tmp_path / name
    target.write_text('{"old": true}\n')
    code = f"from entrodrop_bench.atomic import write_json; write_json({str(target)!r}, {{'new': True}})"
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, "ENTRODROP_BENCH_FAULT": f"before-replace:{name}"})
    assert proc.returncode == -signal.SIGKILL
    assert json.loads(target.read_text()) == {"old": True}


def _log_without_timings(layout: Layout, run: str) -> list[dict]:
    records = [json.loads(line) for line in layout.train_log_file(run, 0).read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("step_s", "tokens_per_s")} for r in records]


def _finished(layout: Layout, run: str) -> tuple[list[dict], list[dict], list[int]]:
    curve = ValCurve.read(ValCurve.path(layout, run, 0)).points
    return _log_without_timings(layout, run), curve, [s for s, _ in layout.checkpoints(run, 0)]


def test_kill_after_the_final_checkpoint_then_rerun_completes_every_file(mini_config, tmp_path):
    """Killed after the final checkpoint is published but before the log, curve and rotation that follow it: the
    re-run must not call the run complete until they are rewritten, identical to an uninterrupted run's."""
    from entrodrop_bench.train.status import run_is_complete

    train = {"checkpoint_every_epochs": 1, "threads": 1, "keep_checkpoints": 1}

    def config(name: str):
        return mini_config(methods=METHOD, train=train, output={"runs_dir": str(tmp_path / name), "results_dir": str(tmp_path / f"{name}-r")})

    ref = config("ref")
    ref_layout = Layout.from_config(ref)
    assert stage_train(ref, ref_layout, progress=False, echo=lambda s: None) == {"m/seed0": "complete"}
    total = RunStatus.read(RunStatus.path(ref_layout, "m", 0)).total_steps
    crash = config("crash")
    cfg_file, layout = _yaml(crash, tmp_path / "crash.yaml"), Layout.from_config(crash)
    proc = _cli(cfg_file, "train", env={"ENTRODROP_BENCH_FAULT": f"after-replace:checkpoint-{total}"})
    assert proc.wait() == -signal.SIGKILL
    # The damage: the final checkpoint is complete, the files written after it are a checkpoint behind.
    assert layout.checkpoints("m", 0)[-1][0] == total and len(layout.checkpoints("m", 0)) == 2, "rotation follows the logs"
    assert ValCurve.read(ValCurve.path(layout, "m", 0)).last_step() < total
    assert len(layout.train_log_file("m", 0).read_text().splitlines()) < total
    assert not run_is_complete(layout, "m", 0)

    assert _cli(cfg_file, "train").wait() == 0
    assert run_is_complete(layout, "m", 0)
    assert _finished(layout, "m") == _finished(ref_layout, "m")
    assert RunStatus.read(RunStatus.path(layout, "m", 0)).state == "complete"


def test_run_marked_complete_with_missing_logs_is_repaired_without_training(mini_config, tmp_path):
    """A run left by an earlier version (status complete, log and curve short of the final step) is repaired from its
    final checkpoint; the checkpoint itself is not retrained."""
    config = mini_config(methods=METHOD, train={"checkpoint_every_epochs": 1, "threads": 1})
    layout = Layout.from_config(config)
    assert stage_train(config, layout, progress=False, echo=lambda s: None) == {"m/seed0": "complete"}
    good = _finished(layout, "m")
    final = layout.checkpoints("m", 0)[-1][1] / "model.safetensors"
    stamp = final.stat().st_mtime_ns
    curve_file, log_file = ValCurve.path(layout, "m", 0), layout.train_log_file("m", 0)
    curve = ValCurve.read(curve_file)
    curve.points.pop()
    curve.write(curve_file)
    log_file.write_text("".join(log_file.read_text().splitlines(keepends=True)[:-3]))
    messages: list[str] = []
    assert stage_train(config, layout, progress=False, echo=messages.append) == {"m/seed0": "complete"}
    assert not any("already complete" in m for m in messages)
    assert _finished(layout, "m") == good
    assert final.stat().st_mtime_ns == stamp, "repairing the logs must not retrain the final checkpoint"


def test_kill_between_leaderboard_json_and_its_page_is_repaired_by_republishing(tmp_path):
    """publish writes the JSON, then its HTML page: killed in between, the next publish (which changes nothing in the
    JSON) still renders the page from it."""
    from entrodrop_bench.report.leaderboard_html import render

    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "leaderboard_entries.json").write_text("[]")
    board = tmp_path / "board.json"
    cmd = [sys.executable, "-m", "entrodrop_bench.cli", "leaderboard", "publish", str(tmp_path / "results"), "--into", str(board)]
    killed = subprocess.run(cmd, env={**os.environ, "ENTRODROP_BENCH_FAULT": "after-replace:board.json"})
    assert killed.returncode == -signal.SIGKILL
    assert board.is_file() and not board.with_suffix(".html").exists()
    before = board.read_bytes()
    assert subprocess.run(cmd).returncode == 0
    assert board.read_bytes() == before
    assert board.with_suffix(".html").read_text() == render(json.loads(before))
