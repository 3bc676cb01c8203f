"""Plugins are found through the `entrodrop_bench.regularizers` entry-point group, built-in and third-party alike."""

from __future__ import annotations

import importlib
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import torch

from entrodrop_bench.artifacts import ValCurve
from entrodrop_bench.errors import ConfigError
from entrodrop_bench.paths import Layout
from entrodrop_bench.regularizer import (
    REGULARIZERS,
    TARGET,
    Regularizer,
    TokenMeta,
    build_regularizer,
    register_regularizer,
)

FIXTURES = Path(__file__).parent / "fixtures_thirdparty"
THIRD_PARTY = "scale_target_embeddings"


@pytest.fixture
def fresh_registry(monkeypatch):
    """The registry with discovery not yet run (built-ins already imported), restored afterwards."""
    REGULARIZERS.discover()
    items, origins, discovered = dict(REGULARIZERS._items), dict(REGULARIZERS._origins), REGULARIZERS._discovered
    REGULARIZERS._discovered = False
    yield REGULARIZERS
    REGULARIZERS._items.clear()
    REGULARIZERS._items.update(items)
    REGULARIZERS._origins.clear()
    REGULARIZERS._origins.update(origins)
    REGULARIZERS._discovered = discovered
    sys.modules.pop("my_reg_plugin", None)


def test_builtins_are_declared_as_entry_points_named_as_their_plugins():
    """pyproject.toml declares each built-in as a third-party package would (an entry per plugin, named as it), and
    the registry knows the same table for a source tree that is not installed."""
    import tomllib

    from entrodrop_bench.paths import PROJECT_ROOT
    from entrodrop_bench.regularizer import BUILTIN_REGULARIZERS

    declared = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["entrodrop_bench.regularizers"]
    assert declared == BUILTIN_REGULARIZERS
    for name, module in declared.items():
        assert REGULARIZERS.get(name).__module__ == module


def test_third_party_package_is_discovered_through_its_entry_point(fresh_registry, monkeypatch):
    assert THIRD_PARTY not in fresh_registry._items
    monkeypatch.syspath_prepend(str(FIXTURES))
    importlib.invalidate_caches()
    assert "my_reg_plugin" in {ep.name for ep in entry_points(group="entrodrop_bench.regularizers")}
    assert "my_reg_plugin" not in sys.modules  # nothing imported it by hand: discovery must

    names = fresh_registry.names()
    assert THIRD_PARTY in names and {"plain", "entrodrop"} <= set(names)
    reg = build_regularizer(THIRD_PARTY, {"factor": 0.5})
    assert isinstance(reg, Regularizer) and reg.name == THIRD_PARTY
    embeds = torch.ones(1, 3, 4)
    meta = TokenMeta(
        domain=torch.full((1, 3), TARGET), doc_id=torch.zeros(1, 3, dtype=torch.long), position=torch.arange(3)[None],
        is_special=torch.zeros(1, 3, dtype=torch.bool), is_pad=torch.zeros(1, 3, dtype=torch.bool), step=0, total_steps=1,
        generator=torch.Generator(),
    )
    out = reg.transform_embeddings(embeds, meta)
    assert out[0, 0].eq(1).all() and out[0, 1:].eq(0.5).all()  # position 0 is never eligible
    with pytest.raises(ConfigError, match="factor"):
        build_regularizer(THIRD_PARTY, {"factor": 2})


def test_name_collision_is_an_error(fresh_registry):
    fresh_registry.discover()
    with pytest.raises(ConfigError, match="registered twice"):

        @register_regularizer("plain")
        class AnotherPlain(Regularizer):
            pass

    assert fresh_registry.get("plain").__module__ == "baselines.plain"


def test_unknown_name_lists_registered_names():
    with pytest.raises(ConfigError) as err:
        build_regularizer("entro_drop", {}, key_path="methods.mine")
    message = str(err.value)
    assert "methods.mine.plugin" in message and "'entro_drop'" in message
    for name in ("entrodrop", "hidden_dropout", "neftune", "plain", "token_dropout", "weight_decay"):
        assert name in message


@pytest.fixture
def third_party(fresh_registry, monkeypatch):
    """The fixture package importable and discovered, as if pip-installed."""
    monkeypatch.syspath_prepend(str(FIXTURES))
    importlib.invalidate_caches()
    fresh_registry.discover()
    return sys.modules["my_reg_plugin"]


def test_third_party_dependency_is_checked_at_load_and_trains_after_the_baseline(third_party, mini_config, monkeypatch):
    from entrodrop_bench import pipeline

    methods = {"scaled": {"plugin": THIRD_PARTY, "params": {"start": "baseline"}}, "plain": {"plugin": "plain"},
               "fixed": {"plugin": THIRD_PARTY, "params": {"start": 2}}}
    with pytest.raises(ConfigError, match=r"methods\.scaled\.params\.start: 'baseline' needs the step of the baseline run"):
        mini_config(methods={"scaled": methods["scaled"]})
    config = mini_config(methods=methods)
    first, later = pipeline._jobs(config, None)
    assert first == [("plain", 0), ("fixed", 0)] and later == [("scaled", 0)]  # declared, not by name

    seen = {}
    prepare = third_party.ScaleTargetEmbeddings.prepare
    monkeypatch.setattr(third_party.ScaleTargetEmbeddings, "prepare",
                        lambda self, ctx: (seen.setdefault(self.config.start, ctx.baseline_min_val_step), prepare(self, ctx)))
    states = pipeline.stage_train(config, Layout.from_config(config), progress=False, echo=lambda s: None)
    assert set(states.values()) == {"complete"}
    layout = Layout.from_config(config)
    curve = ValCurve.read(ValCurve.path(layout, "plain", 0)).points  # format 2 is an object, not a bare list
    best = min((p for p in curve if p.step > 0), key=lambda p: (p.overall, p.step)).step
    assert seen == {"baseline": best, 2: None}  # the baseline's step reaches only the run that declared it


def test_third_party_table_role_places_and_labels_its_row(third_party, tmp_path):
    from test_selection import make_config, scores, write_run

    from entrodrop_bench.report.selection import select
    from entrodrop_bench.report.tables import write_tables

    methods = {"plain": {"plugin": "plain"}, "scaled": {"plugin": THIRD_PARTY, "params": {"start": "baseline"}},
               "neftune": {"plugin": "neftune"}, "weight_decay": {"plugin": "weight_decay"}, "entrodrop": {"plugin": "entrodrop"}}
    config = make_config(tmp_path, methods=methods)
    layout = Layout.from_config(config)
    for i, run in enumerate(methods):
        write_run(layout, run, 0, [(10, 1.0, scores(0.40 + i / 100, 0.5), 1.0)], plugin=methods[run]["plugin"])
    select(config, layout)
    write_tables(config, layout)
    rows = [line.split(" | ")[0].lstrip("| ") for line in (layout.tables_dir / "table1.md").read_text().splitlines()
            if line.startswith("| +") or line.startswith("| Baseline")]
    assert rows == ["Baseline", "+Weight Decay", "+Scaled Targets (scaled)", "+NEFTune", "+EntroDrop"]
