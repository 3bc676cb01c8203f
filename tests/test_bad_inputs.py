"""The bad-input table: each row is a bad input given to the real CLI entry point.

Every row must produce one clear paragraph on stderr (exit 2, no traceback; `--debug` would show it),
raised before any compute, with no partial output left behind. Rows marked `recovers` are inputs the
harness is specified to repair rather than reject (a corrupt or foreign entropy cache): they must be
detected, logged and recomputed.
"""

from __future__ import annotations

import errno
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from entrodrop_bench.cli import main
from entrodrop_bench.paths import CONFIGS_DIR


@dataclass
class Case:
    setup: Callable[[Path, Callable], list[str]]
    """Builds the bad input under tmp; returns CLI argv."""
    error: str
    """Regex the one-paragraph error must match."""


def _tiny(tmp: Path, mutate: Callable[[dict], None]) -> list[str]:
    data = yaml.safe_load((CONFIGS_DIR / "tiny.yaml").read_text())
    data["output"] = {"runs_dir": str(tmp / "runs"), "results_dir": str(tmp / "results")}
    mutate(data)
    path = tmp / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    return ["prepare", str(path)]


def _mini(tmp: Path, mini_config, edit: Callable[[dict], None] = lambda d: None, command: str = "prepare") -> list[str]:
    data = mini_config().model_dump(mode="json")
    edit(data)
    path = tmp / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    return [command, str(path), "--no-progress"]


def _malformed(tmp, _):
    (tmp / "c.yaml").write_text("name: tiny\ndata: {token_budget: [1, 2\n")
    return ["prepare", str(tmp / "c.yaml")]


def _jsonl(path: Path, texts: list[str]) -> str:
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return str(path)


def _no_pad_model(tmp: Path, mini_config) -> list[str]:
    import shutil

    model = tmp / "model"
    shutil.copytree(mini_config().model.name_or_path, model)
    cfg = json.loads((model / "tokenizer_config.json").read_text())
    cfg.pop("pad_token", None)
    (model / "tokenizer_config.json").write_text(json.dumps(cfg))
    special = model / "special_tokens_map.json"
    if special.exists():
        m = json.loads(special.read_text())
        m.pop("pad_token", None)
        special.write_text(json.dumps(m))
    return _mini(tmp, mini_config, lambda d: d["model"].update(name_or_path=str(model)))


def _bad_evalplus_file(tmp, mini_config):
    bad = tmp / "humaneval.jsonl"
    bad.write_text(json.dumps({"task_id": "HumanEval/0", "prompt": "def f():\n"}) + "\n")
    return _mini(tmp, mini_config, lambda d: d["eval"].update(evalplus_datasets=["humaneval"], data_overrides={"humaneval": str(bad)}), "eval")


def _trained(tmp: Path, mini_config) -> tuple[list[str], Path]:
    argv = _mini(tmp, mini_config, command="train")
    assert main(argv) == 0
    runs = Path(yaml.safe_load(Path(argv[1]).read_text())["output"]["runs_dir"])
    return argv, runs


def _corrupt_checkpoint(tmp, mini_config):
    argv, runs = _trained(tmp, mini_config)
    status = runs / "train/plain/seed0/status.json"
    status.write_text(status.read_text().replace('"complete"', '"running"'))
    ckpts = sorted((runs / "train/plain/seed0").glob("checkpoint-*"))
    (ckpts[-1] / "model.safetensors").write_bytes(b"not a safetensors file")
    return argv


def _incompatible_run_dir(tmp, mini_config):
    argv = _mini(tmp, mini_config)
    runs = Path(yaml.safe_load(Path(argv[1]).read_text())["output"]["runs_dir"])
    runs.mkdir(parents=True)
    (runs / "prepared.json").write_text(json.dumps({"format_version": 999}))
    return argv


def _bad_leaderboard(tmp, _):
    bad = tmp / "leaderboard.json"
    bad.write_text(json.dumps({"schema_version": 1, "entries": [{"method": 3}]}))
    (tmp / "results").mkdir()
    (tmp / "results" / "leaderboard_entries.json").write_text("[]")
    return ["leaderboard", "publish", str(tmp / "results"), "--into", str(bad)]


def _disk_full(tmp, mini_config, monkeypatch):
    import torch

    real_save = torch.save

    def full(obj, f, *a, **k):
        if str(f).endswith("trainer_state.pt"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", full)
    return _mini(tmp, mini_config, command="train")


CASES: dict[str, Case] = {
    "malformed yaml": Case(_malformed, r"is not valid YAML"),
    "unknown key": Case(lambda t, m: _tiny(t, lambda d: d["train"].update(lr_peak=1)), r"train\.lr_peak: unknown key"),
    "wrong type": Case(lambda t, m: _tiny(t, lambda d: d["train"].update(micro_batch_size="big")), r"train\.micro_batch_size: .*integer"),
    "unregistered method": Case(lambda t, m: _tiny(t, lambda d: d["methods"].update(x={"plugin": "dropconnect"})), r"unknown regularizer 'dropconnect'\. Registered: .*plain"),
    "gamma_max above 1": Case(lambda t, m: _tiny(t, lambda d: d["methods"]["entrodrop"]["params"].update(gamma_max=2)), r"gamma_max"),
    "gamma_max below 0": Case(lambda t, m: _tiny(t, lambda d: d["methods"]["entrodrop"]["params"].update(gamma_max=-0.1)), r"gamma_max"),
    "percentile 0": Case(lambda t, m: _tiny(t, lambda d: d["methods"]["entrodrop"]["params"].update(percentile=0)), r"percentile"),
    "percentile above 1": Case(lambda t, m: _tiny(t, lambda d: d["methods"]["entrodrop"]["params"].update(percentile=1.5)), r"percentile"),
    "zero token budget": Case(lambda t, m: _tiny(t, lambda d: d["data"].update(token_budget=0)), r"data\.token_budget"),
    "negative token budget": Case(lambda t, m: _tiny(t, lambda d: d["data"].update(token_budget=-100)), r"data\.token_budget"),
    "mix ratio does not sum": Case(lambda t, m: _tiny(t, lambda d: d["data"].update(mix_ratio=[0.7, 0.4])), r"mix_ratio"),
    "missing data file": Case(lambda t, m: _tiny(t, lambda d: d["data"]["target"].update(path=str(t / "none.jsonl"))), r"data\.target\.path: file .* does not exist"),
    "empty corpus": Case(lambda t, m: _mini(t, m, lambda d: d["data"]["target"].update(path=_jsonl(t / "e.jsonl", ["", "  "]))), r"data\.target: corpus .* is empty"),
    "corpus smaller than one sequence": Case(lambda t, m: _mini(t, m, lambda d: d["data"]["target"].update(path=_jsonl(t / "s.jsonl", ["1 + 1 = 2"] * 5))), r"fewer than one sequence"),
    "tokenizer without pad token": Case(_no_pad_model, r"has no pad token; set model\.pad_token"),
    "unknown lm-eval task": Case(lambda t, m: _mini(t, m, lambda d: d["eval"].update(lm_eval_tasks=["gsm9k"]), "run"), r"unknown lm-eval task 'gsm9k'"),
    "unknown code benchmark": Case(lambda t, m: _mini(t, m, lambda d: d["eval"].update(evalplus_datasets=["humaneval_pro"]), "run"), r"unknown code benchmark 'humaneval_pro'"),
    "evalplus dataset not in its schema": Case(_bad_evalplus_file, r"humaneval\.jsonl, line 1: missing fields"),
    "corrupt checkpoint": Case(_corrupt_checkpoint, r"checkpoint .*checkpoint-\d+ is corrupt"),
    "run dir from an incompatible version": Case(_incompatible_run_dir, r"written by run format 999"),
    "leaderboard violating the schema": Case(_bad_leaderboard, r"not a valid leaderboard.*\$"),
    "bad override syntax": Case(lambda t, m: _tiny(t, lambda d: None) + ["train.lr"], r"expected key\.path=value"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gives_one_clear_paragraph(name, tmp_path, mini_config, capsys):
    case = CASES[name]
    argv = case.setup(tmp_path, mini_config)
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and "Traceback" not in err

    assert re.search(case.error, err, re.S), err
    runs = tmp_path / "runs"
    if name not in ("corrupt checkpoint",):
        assert not (runs / "train").exists(), "failed before compute: no training output"


def test_disk_full_during_save(tmp_path, mini_config, monkeypatch, capsys):
    argv = _disk_full(tmp_path, mini_config, monkeypatch)
    assert main(argv) in (1, 2)
    out = capsys.readouterr()
    assert "No space left on device" in out.err + out.out and "Traceback" not in out.err
    runs = Path(yaml.safe_load(Path(argv[1]).read_text())["output"]["runs_dir"])
    run_dir = runs / "train/plain/seed0"
    assert not list(run_dir.glob("checkpoint-*")) and not list(run_dir.glob(".*partial"))


@pytest.mark.parametrize("damage", ["truncate", "garbage", "foreign model"])
def test_corrupt_or_foreign_entropy_cache_is_recomputed(tmp_path, mini_config, caplog, damage):
    from entrodrop_bench.experiment import prepare
    from entrodrop_bench.paths import Layout
    from entrodrop_bench.signals import base_model_signals

    config = mini_config()
    prepared = prepare(config, Layout.from_config(config), echo=lambda s: None)
    good, _ = base_model_signals(prepared, prepared.target_val)
    (cache,) = list(Layout.from_config(config).entropy_cache_dir.glob("*.safetensors"))
    if damage == "truncate":
        cache.write_bytes(cache.read_bytes()[:100])
    elif damage == "garbage":
        cache.write_bytes(b"\x00" * 4096)
    else:  # a cache with this file name but computed from another model's weights
        from safetensors import safe_open
        from safetensors.numpy import save_file

        with safe_open(str(cache), "np") as f:
            meta, arrays = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a mapping)
        meta = {k: ("0" * 16 if "weights" in k else v) for k, v in meta.items()}
        save_file({k: v * 0 for k, v in arrays.items()}, str(cache), metadata=meta)
    caplog.set_level("WARNING")
    again, _ = base_model_signals(prepared, prepared.target_val)
    assert any("recomput" in r.getMessage().lower() for r in caplog.records), [r.getMessage() for r in caplog.records]
    import numpy as np

    assert np.allclose(good, again, equal_nan=True)
