"""The shipped base model and tokenizer of the tiny world (`prepare.tiny.prebuilt`): a world built from them is the
world the build produces, byte for byte; a changed shipped file or `ENTRODROP_TINY_PREBUILT=0` makes it build;
`configs/tiny.yaml`'s world is shipped, and (slow) equals what the build produces on a machine like the one that
built it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from entrodrop_bench.config import TinyWorldConfig, load_config
from entrodrop_bench.paths import CONFIGS_DIR, WorldPaths
from entrodrop_bench.prepare.tiny import build_world, prebuilt
from entrodrop_bench.prepare.tiny.world import world_hash

SMALL = {"seed": 7, "n_target_docs": 60, "n_general_docs": 1500, "n_benchmark": 25, "vocab_size": 400, "hidden_size": 32,
         "num_layers": 2, "num_heads": 4, "pretrain_tokens": 6000, "pretrain_domain_fraction": 0.2}


def _files(root: Path) -> dict[str, bytes]:
    """Every file of a world but its marker (which records how it was built), by relative path."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "world.json"}


@pytest.fixture()
def shipped_dir(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "shipped"
    monkeypatch.setattr(prebuilt, "prebuilt_world_dir", lambda key: folder / key)
    monkeypatch.delenv(prebuilt.PREBUILT_ENV, raising=False)
    return folder


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[TinyWorldConfig, WorldPaths]:
    import torch

    torch.set_num_threads(1)
    cfg = TinyWorldConfig(**SMALL)
    mp = pytest.MonkeyPatch()
    mp.setenv(prebuilt.PREBUILT_ENV, "0")
    try:
        return cfg, build_world(cfg, tmp_path_factory.mktemp("built") / "world", log=lambda _: None)
    finally:
        mp.undo()


def test_a_world_from_the_shipped_copy_equals_the_built_one(built, shipped_dir, tmp_path):
    cfg, world = built
    dest = prebuilt.export_prebuilt(world, world_hash(cfg))
    assert dest == shipped_dir / world_hash(cfg)
    record = json.loads((dest / "world.json").read_text())
    assert set(record["files"]) == {f for f in _files(dest)} and record["built_on"] and record["torch"]
    logs: list[str] = []
    again = build_world(cfg, tmp_path / "world", log=logs.append)
    assert any("shipped copy" in line for line in logs), logs
    assert not any("pre-training" in line for line in logs), logs
    assert _files(again.root) == _files(world.root)
    marker = json.loads(again.marker_file.read_text())
    assert marker["base_model"] == "shipped" and marker["n_params"] == record["n_params"]


def test_a_changed_shipped_file_or_the_switch_builds_instead(built, shipped_dir, tmp_path, monkeypatch):
    cfg, world = built
    dest = prebuilt.export_prebuilt(world, world_hash(cfg))
    weights = dest / "base_model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    logs: list[str] = []
    again = build_world(cfg, tmp_path / "changed", log=logs.append)
    assert any("does not match its record" in line and "base_model/model.safetensors" in line for line in logs), logs
    assert any("pre-training" in line for line in logs)
    assert _files(again.root) == _files(world.root)  # built here: the same world, not the changed file

    prebuilt.export_prebuilt(world, world_hash(cfg))  # intact again, but switched off
    monkeypatch.setenv(prebuilt.PREBUILT_ENV, "0")
    logs = []
    build_world(cfg, tmp_path / "switched_off", log=logs.append)
    assert any("pre-training" in line for line in logs) and not any("shipped copy" in line for line in logs)


def test_the_demo_world_is_shipped_and_intact():
    """Changing configs/tiny.yaml's world without shipping its base model would make every cold demo pre-train it."""
    cfg = load_config(CONFIGS_DIR / "tiny.yaml").tiny
    found = prebuilt.find_prebuilt(world_hash(cfg), log=pytest.fail)
    assert found is not None, ("configs/tiny.yaml's world has no shipped base model: run "
                               "`python -m entrodrop_bench.prepare.tiny.prebuilt configs/tiny.yaml`")
    assert found[1]["config"] == cfg.model_dump(mode="json")


@pytest.mark.slow
def test_the_shipped_demo_world_is_what_the_build_produces_here(tmp_path, monkeypatch):
    """Pre-trains configs/tiny.yaml's base model (~1.5 min) and compares it with the shipped one, byte for byte.
    Float rounding differs between CPUs, so this holds only on a machine like the one that built it."""
    import torch

    cfg = load_config(CONFIGS_DIR / "tiny.yaml")
    shipped, record = prebuilt.find_prebuilt(world_hash(cfg.tiny))
    here = (prebuilt.machine(), torch.backends.cpu.get_cpu_capability(), torch.__version__)
    there = (record["built_on"], record.get("cpu_capability"), record["torch"])
    if here != there:
        pytest.skip(f"the shipped base model was built on {there}, this machine is {here}: float rounding may differ")
    monkeypatch.setenv(prebuilt.PREBUILT_ENV, "0")
    torch.set_num_threads(cfg.train.threads)
    world = build_world(cfg.tiny, tmp_path / "world", log=lambda _: None)
    for rel in record["files"]:
        assert (world.root / rel).read_bytes() == (shipped.root / rel).read_bytes(), rel
