"""Plugins are found through the `entrodrop_bench.regularizers` entry-point group, built-in and third-party alike."""

from __future__ import annotations

import importlib
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import torch

from entrodrop_bench.errors import ConfigError
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


def test_builtins_are_declared_as_an_entry_point():
    eps = entry_points(group="entrodrop_bench.regularizers")
    assert "baselines" in {ep.value for ep in eps}


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
