"""Experiment trackers (`output.trackers`): TensorBoard by default, W&B through accelerate's tracker when asked,
checked at load; a real tiny training run logs to W&B in offline mode (skipped without the wandb extra)."""

from __future__ import annotations

import importlib.util
import json
import struct
from pathlib import Path

import pytest

from entrodrop_bench.artifacts import ValCurve
from entrodrop_bench.config import ExperimentConfig, load_config
from entrodrop_bench.errors import ConfigError
from entrodrop_bench.paths import CONFIGS_DIR, Layout
from entrodrop_bench.pipeline import stage_train


def test_trackers_default_to_tensorboard_and_stay_out_of_the_config_hash(mini_config):
    config = mini_config()
    assert config.output.trackers == ["tensorboard"]
    with_wandb = config.model_copy(update={"output": config.output.model_copy(update={"trackers": []})})
    assert with_wandb.config_hash() == config.config_hash()


@pytest.mark.parametrize(("trackers", "expected"), [
    ("[tensorboard, tensorboard]", r"output\.trackers: .*lists a tracker twice"),
    ("[mlflow]", r"output\.trackers\.0: .*'tensorboard' or 'wandb'"),
    ("wandb", r"output\.trackers: .*valid list"),
])
def test_bad_trackers_are_refused_at_load_naming_the_field(trackers, expected):
    with pytest.raises(ConfigError, match=expected):
        load_config(CONFIGS_DIR / "tiny.yaml", [f"output.trackers={trackers}"])


def test_wandb_without_the_package_is_refused_at_load(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(ConfigError, match=r"output\.trackers: 'wandb' needs the wandb package.*pip install -e '\.\[wandb\]'"):
        load_config(CONFIGS_DIR / "tiny.yaml", ["output.trackers=[tensorboard, wandb]"])


def test_no_tracker_writes_no_event_files(mini_config):
    config = mini_config(output={"trackers": []})
    layout = Layout.from_config(config)
    assert stage_train(config, layout, progress=False, echo=lambda s: None) == {"plain/seed0": "complete"}
    assert not (layout.run_dir("plain", 0) / "tb").exists()


def test_training_logs_to_wandb_offline_and_tensorboard(mini_config, monkeypatch):
    wandb = pytest.importorskip("wandb", reason="wandb is not installed (pip install -e '.[wandb]')")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DISABLE_GIT", "true")
    config: ExperimentConfig = mini_config(output={"trackers": ["tensorboard", "wandb"], "wandb_project": "edb-test"})
    layout = Layout.from_config(config)
    assert stage_train(config, layout, progress=False, echo=lambda s: None) == {"plain/seed0": "complete"}
    run_dir = layout.run_dir("plain", 0)
    assert list((run_dir / "tb").rglob("events.out.tfevents.*")), "TensorBoard still logs beside W&B"
    offline = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 1
    records = _wandb_records(next(offline[0].glob("run-*.wandb")))
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert (run.project, run.display_name, run.run_group) == ("edb-test", "mini/plain/seed0", "mini")
    history = [{"_step": r.history.step.num, **{i.key or "/".join(i.nested_key): json.loads(i.value_json)
                                                     for i in r.history.item}}
               for r in records if r.WhichOneof("record_type") == "history"]
    log = [json.loads(line) for line in layout.train_log_file("plain", 0).read_text().splitlines()]
    logged = {h["_step"]: h for h in history}
    assert sorted(s for s, h in logged.items() if "loss" in h) == [r["step"] for r in log]  # every step
    assert all(logged[r["step"]]["loss"] == pytest.approx(r["loss"]) for r in log)
    curve = ValCurve.read(ValCurve.path(layout, "plain", 0)).points
    val = {s: h["val_overall"] for s, h in logged.items() if "val_overall" in h}
    assert list(val) == [p.step for p in curve]  # the base model's, then every checkpoint's
    assert list(val.values()) == pytest.approx([p.overall for p in curve])
    assert wandb.run is None, "the W&B run was finished"


def _wandb_records(path: Path) -> list:
    """The records of an offline W&B run file: a 7-byte header, then LevelDB-log chunks in 32 KiB blocks
    (crc32, length, type: full, first, middle, last), each record a protobuf `Record`."""
    from wandb.proto import wandb_internal_pb2

    data, block, pos = path.read_bytes(), 32768, 7
    assert data[:4] == b":W&B", data[:7]
    out, partial = [], b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind in (1, 2):
            partial = chunk
        elif kind in (3, 4):
            partial += chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(partial)
            out.append(record)
        elif kind == 0:  # zero padding to the end of the block
            pos += block - pos % block
    return out
