"""Inter-stage files: today's on-disk formats still read, other formats are refused with what to do, and no
module outside paths.py spells an inter-stage file name."""

from __future__ import annotations

import ast
import json
import math
import re
from pathlib import Path

import pytest
from helpers import REPO

from entrodrop_bench.artifacts import (
    ArtifactError,
    CheckpointHashMemo,
    CheckpointManifest,
    EvalResult,
    PreparedRecord,
    RunStatus,
    ValCurve,
)
from entrodrop_bench.paths import Layout

# Files exactly as the code before the artifact models wrote them (run folders on users' machines hold these).
TODAY = {
    RunStatus: {
        "format_version": 1, "state": "complete", "reason": None, "total_steps": 8, "method": "entrodrop",
        "plugin": "entrodrop", "params": {"gamma_max": 0.1}, "seed": 0, "config_hash": "0123456789abcdef",
        "run_key": "fedcba9876543210", "stats": {"masked_fraction": 0.05, "gated_fraction": 0.5},
        "updated": "2026-01-01T00:00:00.000000+00:00"},
    CheckpointManifest: {
        "format_version": 1, "run": "plain", "method": "plain", "plugin": "plain", "params": {}, "seed": 0, "step": 4,
        "total_steps": 8, "target_epoch": 1.0, "tokens_seen": {"target": 240, "general": 160},
        "config_hash": "0123456789abcdef", "run_key": "fedcba9876543210", "git_commit": "abc1234",
        "val_loss": {"overall": 2.5, "low_entropy": 0.5, "high_entropy": "NaN"}, "weights_sha256": "00" * 32,
        "created": "2026-01-01T00:00:00.000000+00:00"},
    PreparedRecord: {
        "format_version": 1, "config_hash": "0123456789abcdef", "model_path": "runs/world/base_model",
        "tokenizer_hash": "tok", "target_train": {"docs": 10, "tokens": 1000, "hash": "a"},
        "target_val": {"docs": 2, "tokens": 200, "hash": "b"}, "general": {"docs": 10, "tokens": 900, "hash": "c"},
        "plan": {"seq_len": 64, "rows_per_step": 2, "total_steps": 8, "target_share": 0.6,
                 "target_train_tokens": 1000, "target_epochs": 1.5}, "writer_rank": 0},
    EvalResult: {
        "format_version": 1, "run": "plain", "method": "plain", "seed": 0, "step": 4, "target_epoch": 1.0,
        "benchmark": "tiny_code", "harness": "evalplus", "metrics": {"pass@1": 0.5, "base_pass@1": 0.75},
        "primary_metric": "pass@1", "score": 0.5, "provenance": {
            "checkpoint": "runs/train/plain/seed0/checkpoint-4", "checkpoint_sha256": "ab" * 32, "task_version": "1",
            "task_config_hash": "0123456789abcdef", "num_fewshot": 0, "seed": 0, "batch_size": 16, "limit": None,
            "max_gen_toks": 256, "data_file": None, "versions": {"evalplus": "0.3.1", "torch": "2.13.0"},
            "wall_time_s": 1.5, "date": "2026-01-01T00:00:00+00:00", "n_samples": 4, "sandbox": "bwrap",
            "sandbox_strong": True, "adapter": "evalplus", "ground_truth_sha256": "cd" * 32}},
    CheckpointHashMemo: {"files": {"model.safetensors": [1024, 1767225600000000000]}, "sha256": "ef" * 32},
}


def _file(tmp_path: Path, data) -> Path:
    path = tmp_path / "runs" / "some.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    # NaN as json.dumps writes it (the "NaN" strings above stand for it)
    path.write_text(json.dumps(data, indent=2).replace('"NaN"', "NaN") + "\n")
    return path


@pytest.mark.parametrize("model", list(TODAY), ids=lambda m: m.__name__)
def test_a_file_in_todays_format_reads_and_writes_back_the_same(model, tmp_path):
    path = _file(tmp_path, TODAY[model])
    record = model.read(path)
    again = tmp_path / "again.json"
    record.write(again)
    assert model.read(again) == record
    want = {**TODAY[model], "format_version": model.FORMAT}
    assert json.loads(again.read_text().replace("NaN", '"NaN"')) == want


def test_a_validation_curve_in_todays_format_reads(tmp_path):
    """val_curve.json has always been a bare list of points; it stays one."""
    points = [{"step": 0, "target_epoch": 0.0, "overall": 3.0, "low_entropy": 1.0, "high_entropy": 5.0},
              {"step": 4, "target_epoch": 1.0, "overall": 2.5, "low_entropy": "NaN", "high_entropy": 4.0}]
    curve = ValCurve.read(_file(tmp_path, points))
    assert [p.step for p in curve.points] == [0, 4] and math.isnan(curve.points[1].low_entropy)
    curve.write(tmp_path / "again.json")
    assert json.loads((tmp_path / "again.json").read_text().replace("NaN", '"NaN"')) == points


@pytest.mark.parametrize("model", [*TODAY, ValCurve], ids=lambda m: m.__name__)
def test_a_file_of_a_future_format_is_refused_naming_the_file_and_the_stage(model, tmp_path):
    path = _file(tmp_path, {**TODAY.get(model, {}), "format_version": 99})
    with pytest.raises(ArtifactError) as err:
        model.read(path)
    message = str(err.value)
    assert str(path) in message and "format 99" in message and f"format {model.FORMAT}" in message
    assert f"entrodrop-bench {model.STAGE}`" in message


def test_a_file_missing_a_field_is_refused_naming_the_field(tmp_path):
    data = {k: v for k, v in TODAY[CheckpointManifest].items() if k != "run_key"}
    with pytest.raises(ArtifactError, match=r"some\.json is not a valid CheckpointManifest file \(run_key: Field required"):
        CheckpointManifest.read(_file(tmp_path, data))


def test_each_model_finds_its_file_through_the_layout(tmp_path):
    layout = Layout(tmp_path / "runs", tmp_path / "results")
    ckpt = layout.checkpoint_dir("plain", 0, 4)
    assert RunStatus.path(layout, "plain", 0) == layout.status_file("plain", 0)
    assert ValCurve.path(layout, "plain", 0) == layout.val_curve_file("plain", 0)
    assert CheckpointManifest.path(ckpt) == Layout.manifest_file(ckpt)
    assert EvalResult.path(layout, "plain", 0, 4, "gsm8k") == layout.result_file("plain", 0, 4, "gsm8k")
    assert PreparedRecord.path(layout) == layout.prepared_file
    assert CheckpointHashMemo.path(layout, "plain", 0, 4).parent == layout.eval_work_dir("plain", 0, 4)


# --------------------------------------------------------------------------- file names live in paths.py only
INTER_STAGE_NAMES = ("manifest.json", "status.json", "val_curve.json", "prepared.json", "selection.json",
                     "leaderboard_entries.json", "train_log.jsonl", "trainer_state.pt", "checkpoint_hash.json",
                     "config.resolved.yaml", "resolved_config.yaml", "sample_entropy.json")
# A cache or weights file name: something (a name or a formatted key) before ".safetensors". The bare suffix
# (a test of a file's suffix) is not a name.
SAFETENSORS_NAME = re.compile(r"\S\.safetensors$")


def _file_names_spelled(source: str) -> list[tuple[int, str]]:
    """(line, literal) of every string literal that is, or ends a path with, an inter-stage file name. Prose
    (docstrings, messages: anything with a space) only mentions files and is not counted."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.JoinedStr):  # f"{key}.safetensors": the formatted part counts as a name
            parts = [v.value if isinstance(v, ast.Constant) else "x" for v in node.values]
            text = "".join(str(p) for p in parts)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
        else:
            continue
        if " " in text or "\n" in text:
            continue
        if text.endswith(INTER_STAGE_NAMES) or SAFETENSORS_NAME.search(text):
            found.append((node.lineno, text))
    return sorted(found)


def test_the_checker_sees_names_and_ignores_prose():
    source = 'a = "manifest.json"\nb = d / f"{key}.safetensors"\nc = "x/val_curve.json"\n"""Writes status.json."""\n' \
             'e = p.suffix in {".safetensors"}\nf = f"no {name} in status.json"\n'
    assert [line for line, _ in _file_names_spelled(source)] == [1, 2, 3]


def test_no_module_but_paths_spells_an_inter_stage_file_name():
    offenders = []
    for root in ("entrodrop_bench", "baselines"):
        for path in sorted((REPO / root).rglob("*.py")):
            if path == REPO / "entrodrop_bench" / "paths.py":
                continue
            offenders += [f"{path.relative_to(REPO)}:{line}: {text!r}" for line, text in _file_names_spelled(path.read_text())]
    assert not offenders, "file names belong in entrodrop_bench/paths.py (a Layout method):\n" + "\n".join(offenders)
