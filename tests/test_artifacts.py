"""Inter-stage files: today's on-disk formats still read, other formats are refused with what to do, no module
outside paths.py spells an inter-stage file name or forms a result path, and the content hashes keep their values."""

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
    SampleEntropy,
    TrainLog,
    ValCurve,
)
from entrodrop_bench.atomic import bytes_sha256, file_sha256, json_sha256
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


# Optional fields added since these files were first written: an old file reads, and writes back with their default.
ADDED_SINCE = {EvalResult: {"items": None}, RunStatus: {"resolved": {}, "cost": None}, CheckpointManifest: {"cost": None}}
# ... and inside a result's provenance (`backend`: a result written before it was recorded was HF's).
ADDED_IN_PROVENANCE = {EvalResult: {"backend": "hf"}}


@pytest.mark.parametrize("model", list(TODAY), ids=lambda m: m.__name__)
def test_a_file_in_todays_format_reads_and_writes_back_the_same(model, tmp_path):
    path = _file(tmp_path, TODAY[model])
    record = model.read(path)
    again = tmp_path / "again.json"
    record.write(again)
    assert model.read(again) == record
    want = {**TODAY[model], "format_version": model.FORMAT, **ADDED_SINCE.get(model, {})}
    if model in ADDED_IN_PROVENANCE:
        want["provenance"] = {**want["provenance"], **ADDED_IN_PROVENANCE[model]}
    assert json.loads(again.read_text().replace("NaN", '"NaN"')) == want


def test_a_validation_curve_of_format_1_still_reads_without_per_document_losses(tmp_path):
    """val_curve.json was a bare list of points (format 1); it still reads, with no per-document losses, and
    is written back as format 2 with the same points."""
    points = [{"step": 0, "target_epoch": 0.0, "overall": 3.0, "low_entropy": 1.0, "high_entropy": 5.0},
              {"step": 4, "target_epoch": 1.0, "overall": 2.5, "low_entropy": "NaN", "high_entropy": 4.0}]
    curve = ValCurve.read(_file(tmp_path, points))
    assert [p.step for p in curve.points] == [0, 4] and math.isnan(curve.points[1].low_entropy)
    assert curve.doc_ids is None and curve.doc_tokens is None and all(p.doc_losses is None for p in curve.points)
    curve.write(tmp_path / "again.json")
    again = json.loads((tmp_path / "again.json").read_text().replace("NaN", '"NaN"'))
    assert again["format_version"] == 2 and again["doc_ids"] is None
    assert again["points"] == [{**p, "doc_losses": None} for p in points]


def test_a_validation_curve_of_format_2_keeps_per_document_losses(tmp_path):
    data = {"format_version": 2, "doc_ids": [0, 3, 7], "doc_tokens": [10, 4, 6],
            "points": [{"step": 0, "target_epoch": 0.0, "overall": 2.0, "low_entropy": 1.0, "high_entropy": 3.0,
                        "doc_losses": [2.1234567891, 1.5, 2.0]}]}
    curve = ValCurve.read(_file(tmp_path, data))
    curve.write(tmp_path / "again.json")
    again = ValCurve.read(tmp_path / "again.json")
    assert again.doc_ids == [0, 3, 7] and again.doc_tokens == [10, 4, 6]
    assert again.points[0].doc_losses == [2.123457, 1.5, 2.0]  # kept to 6 decimals
    bad = {**data, "doc_tokens": [10, 4]}
    with pytest.raises(ArtifactError, match="doc_ids \\(3\\) and doc_tokens \\(2\\)"):
        ValCurve.read(_file(tmp_path, bad))


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


def test_a_training_log_in_todays_format_reads_and_writes_back(tmp_path):
    """train_log.jsonl has always been one JSON object per line, with the method's values as extra keys."""
    lines = ['{"step": 1, "loss": 3.5, "lr": 0.001, "masked_fraction": 0.25, "step_s": 0.5, "tokens_per_s": 256.0}',
             '{"step": 2, "loss": NaN, "lr": 0.0005, "masked_fraction": 0.5, "step_s": 0.25, "tokens_per_s": 512.0}']
    path = tmp_path / "train_log.jsonl"
    path.write_text("".join(line + "\n" for line in lines))
    log = TrainLog.read(path)
    assert [r.step for r in log.records] == [1, 2] and log.last_step() == 2 and math.isnan(log.records[1].loss)
    assert log.records[0].model_dump()["masked_fraction"] == 0.25
    log.write(tmp_path / "again.jsonl")
    assert [json.loads(line) for line in (tmp_path / "again.jsonl").read_text().splitlines()][0] == json.loads(lines[0])
    assert TrainLog.read(tmp_path / "again.jsonl").records[0] == log.records[0]


def test_a_bad_training_log_is_refused_naming_the_file_and_line(tmp_path):
    path = tmp_path / "train_log.jsonl"
    path.write_text('{"step": 1, "loss": 3.5, "lr": 0.001, "step_s": 0.5, "tokens_per_s": 256.0}\n{"step": 2, "lo\n')
    with pytest.raises(ArtifactError, match=r"train_log\.jsonl line 2 is not valid JSON .*re-run `entrodrop-bench train"):
        TrainLog.read(path)
    path.write_text('{"step": 1, "loss": 3.5, "lr": 0.001}\n')
    with pytest.raises(ArtifactError, match=r"not a valid TrainLog file \(records\.0\.step_s: Field required"):
        TrainLog.read(path)


def test_a_sample_entropy_file_in_todays_format_reads_and_writes_back_the_same(tmp_path):
    """sample_entropy.json has always been an object of three lists and no format marker; it stays one."""
    data = {"tokens": ["a", " é", "\n"], "entropy": [None, 0.5, 1.25], "eligible": [False, True, True]}
    path = tmp_path / "sample_entropy.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    sample = SampleEntropy.read(path)
    assert sample.tokens == data["tokens"] and sample.entropy == data["entropy"]
    sample.write(tmp_path / "again.json")
    assert (tmp_path / "again.json").read_text() == path.read_text()


@pytest.mark.parametrize("data, problem", [
    ({"tokens": ["a"], "entropy": [], "eligible": [True]}, r"tokens \(1\), entropy \(0\) and eligible \(1\) differ"),
    ({"tokens": ["a"], "entropy": [0.5], "gated": [True]}, r"eligible: Field required"),  # a file of older versions
])
def test_a_bad_sample_entropy_file_is_refused_naming_the_problem_and_the_stage(tmp_path, data, problem):
    path = tmp_path / "sample_entropy.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match=problem + r".*re-run `entrodrop-bench prepare CONFIG`"):
        SampleEntropy.read(path)


def test_each_model_finds_its_file_through_the_layout(tmp_path):
    layout = Layout(tmp_path / "runs", tmp_path / "results")
    ckpt = layout.checkpoint_dir("plain", 0, 4)
    assert RunStatus.path(layout, "plain", 0) == layout.status_file("plain", 0)
    assert ValCurve.path(layout, "plain", 0) == layout.val_curve_file("plain", 0)
    assert CheckpointManifest.path(ckpt) == Layout.manifest_file(ckpt)
    assert EvalResult.path(layout, "plain", 0, 4, "gsm8k") == layout.result_file("plain", 0, 4, "gsm8k")
    assert PreparedRecord.path(layout) == layout.prepared_file
    assert CheckpointHashMemo.path(layout, "plain", 0, 4).parent == layout.eval_work_dir("plain", 0, 4)
    assert TrainLog.path(layout, "plain", 0) == layout.train_log_file("plain", 0)
    assert SampleEntropy.path(layout) == layout.sample_entropy_file


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


# --------------------------------------------------------------------------- result paths are formed in paths.py only
# `<path> / "literal"` and `<path> / f"..."` outside paths.py, allowed only where the path is not one of this
# project's results or caches (file:function; "<module>" for module level):
NON_RESULT_PATHS = {
    # the project's own lm-eval task definitions, checked in under tasks/ (inputs)
    "entrodrop_bench/evaluate/suites.py:local_task_yaml",
    "entrodrop_bench/evaluate/suites.py:task_config_hash",
    # task YAMLs inside the installed lm-eval package
    "entrodrop_bench/evaluate/suites.py:builtin_task_yaml",
    # LiveCodeBench's few-shot examples beside the user's dataset file (an input)
    "entrodrop_bench/evaluate/livecodebench.py:load_exemplars",
    # NLTK's data folder and its punkt_tab layout
    "entrodrop_bench/evaluate/nltk_data.py:default_root",
    "entrodrop_bench/evaluate/nltk_data.py:punkt_tab_dir",
    # the sandbox's private temporary root, removed after each program
    "entrodrop_bench/evaluate/sandbox.py:_Staging.host_dirs",
    "entrodrop_bench/evaluate/sandbox.py:run_sandboxed",
    # the kernel's cgroup files of each sandbox's memory cgroup (under /sys/fs/cgroup), removed after each run
    "entrodrop_bench/evaluate/sandbox.py:MemoryCgroup.close",
    "entrodrop_bench/evaluate/sandbox.py:MemoryCgroup.create",
    "entrodrop_bench/evaluate/sandbox.py:MemoryCgroup.procs_file",
    # the checked-in GPU measurement the planner reads, and a model folder's config.json (inputs)
    "entrodrop_bench/orchestrate/plan.py:<module>",
    "entrodrop_bench/orchestrate/plan.py:backbone",
    # the Hugging Face token file and hub/datasets caches
    "entrodrop_bench/orchestrate/sources.py:hub_token",
    "entrodrop_bench/orchestrate/sources.py:in_local_cache",
}


def _path_joins(source: str) -> list[tuple[int, str, str]]:
    """(line, enclosing function's qualified name, expression) of every `x / "literal"` and `x / f"..."`."""
    found = []

    def visit(node: ast.AST, scope: list[str]) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            scope = [*scope, node.name]
        if (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div)
                and (isinstance(node.right, ast.JoinedStr)
                     or isinstance(node.right, ast.Constant) and isinstance(node.right.value, str))):
            found.append((node.lineno, ".".join(scope) or "<module>", ast.unparse(node)))
        for child in ast.iter_child_nodes(node):
            visit(child, scope)

    visit(ast.parse(source), [])
    return sorted(found)


def _all_path_joins() -> dict[str, list[str]]:
    """file:function -> the path expressions it forms, over entrodrop_bench/ and baselines/ but paths.py."""
    joins: dict[str, list[str]] = {}
    for root in ("entrodrop_bench", "baselines"):
        for path in sorted((REPO / root).rglob("*.py")):
            if path == REPO / "entrodrop_bench" / "paths.py":
                continue
            for line, scope, text in _path_joins(path.read_text()):
                joins.setdefault(f"{path.relative_to(REPO)}:{scope}", []).append(f"line {line}: {text}")
    return joins


def test_the_path_checker_sees_joins_with_literals_in_their_function():
    source = ('A = ROOT / "x"\nclass C:\n    def f(self, d):\n        return d / f"{self.n}.json", d / name, 3 / 2\n'
              'def g(d):\n    return (d / "a") / "b"\n')
    assert [(line, scope) for line, scope, _ in _path_joins(source)] == [(1, "<module>"), (4, "C.f"), (6, "g"), (6, "g")]


def test_no_module_but_paths_forms_a_result_path():
    joins = _all_path_joins()
    offenders = [f"{where}: {text}" for where, texts in joins.items() if where not in NON_RESULT_PATHS for text in texts]
    assert not offenders, ("result paths belong in entrodrop_bench/paths.py (a Layout method or a path class "
                           "there); a path that is no result goes in NON_RESULT_PATHS with why:\n" + "\n".join(offenders))
    stale = sorted(NON_RESULT_PATHS - set(joins))
    assert not stale, f"NON_RESULT_PATHS names functions that form no path any more: {stale}"


# --------------------------------------------------------------------------- one set of content hashes
def test_the_content_hashes_keep_their_values(tmp_path):
    """Run keys, config hashes, world keys, cache keys and task hashes are stored on disk: a changed digest would
    retrain or re-evaluate everything. Values computed by the code before the hashes moved into atomic.py."""
    from entrodrop_bench.config import load_config, run_key
    from entrodrop_bench.evaluate.store import checkpoint_sha256
    from entrodrop_bench.evaluate.suites import task_config_hash
    from entrodrop_bench.prepare.entropy import key_from_parts
    from entrodrop_bench.prepare.tiny.world import world_hash
    from entrodrop_bench.report.leaderboard import entry_key
    from entrodrop_bench.report.selection import _config_digest

    assert bytes_sha256(b"entrodrop") == "8d18496a665a75817095c325acfa273c63e421641d1843e7e0c615928ac03e5a"
    (tmp_path / "f").write_bytes(b"entrodrop")
    assert file_sha256(tmp_path / "f") == bytes_sha256(b"entrodrop")
    assert json_sha256({"b": [1, 2.5, None], "a": "x"}, length=16) == "b649bb117135db06"
    assert key_from_parts({"kind": "entropy", "weights": "w", "seq_len": "64"}) == "entropy-c616f5c1465bc9364c2f148b"
    checkpoint = tmp_path / "checkpoint-4"
    checkpoint.mkdir()
    (checkpoint / "model.safetensors").write_bytes(b"weights")
    (checkpoint / "config.json").write_text("{}")
    (checkpoint / "trainer_state.pt").write_bytes(b"not hashed")
    assert checkpoint_sha256(checkpoint) == "9ec0cdbf409d290232d4880f3811897c2575ea24bc891a672ba9b1e4b6e9d9f5"
    # These follow configs/tiny.yaml and the config schema: a deliberate change there changes them too.
    config = load_config(REPO / "configs" / "tiny.yaml")
    assert config.config_hash() == "268b0c69b8af08f4"  # eval.vllm_cpu_kvcache_gib and eval.vllm_reuse_engine joined the schema
    assert run_key(config, "entrodrop", 0) == "2ee1793a72371999"
    assert run_key(config, "entrodrop_gamma@gamma_max=0.05", 0) == "ef58a008c545fe8b"
    assert world_hash(config.tiny) == "c9c8eff5ea845e64"
    # eval.heldout_seed joined the digest: it decides the held-out view selection.json records (and the methods,
    # which entrodrop_online joined).
    assert _config_digest(config) == "a5b8604674f00b1b6b20606dc1d425d326b965a37f963e756a30e5fe2dd0f53e"
    assert entry_key(config, "entrodrop") == "tiny/tiny@default/entrodrop/22de47e9ea12"
    # ... and this one tasks/tiny_math.yaml and tasks/utils.py.
    assert task_config_hash("tiny_math", None, limit=4, num_fewshot=0, max_gen_toks=64) == ("c60f81892a4a3a27", "1.0")
