"""One fingerprint per kind (tokenizer, corpus, weights) keys every cache of the prepare stage: new base-model
weights saved at the same path re-key every cache that depends on them (the base-model signals and the gate
shares), and leave the tokenized corpora, which do not, as they were."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from safetensors import safe_open

from entrodrop_bench.artifacts import GateShares, PreparedRecord
from entrodrop_bench.errors import DataError
from entrodrop_bench.paths import Layout
from entrodrop_bench.pipeline import stage_prepare
from entrodrop_bench.prepare.fingerprints import corpus_fingerprint, docs_fingerprint, weights_fingerprint
from entrodrop_bench.prepare.signals import read_gate_shares

METHODS = {"plain": {"plugin": "plain"},
           "entrodrop": {"plugin": "entrodrop", "params": {"gamma_max": 0.3, "j0": 0.2}},
           "matched": {"plugin": "token_dropout", "params": {"gamma_max": {"match": "entrodrop"}, "j0": 0.2}}}


def _signal_caches(layout: Layout) -> dict[str, bytes]:
    """Cache file name -> its values' bytes, for every base-model signal cache."""
    out = {}
    for path in sorted(layout.entropy_cache_dir.glob("*.safetensors")):
        with safe_open(str(path), framework="np") as f:
            out[path.name] = f.get_tensor("values").tobytes()
    return out


def _corpus_caches(layout: Layout) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(layout.data_cache("any").parent.rglob("*")) if p.is_file()}


def test_new_weights_at_the_same_path_recompute_every_dependent_cache(mini_config, mini_assets, tmp_path):
    model_dir = tmp_path / "base"
    shutil.copytree(mini_assets["model"], model_dir)
    config = mini_config(methods=METHODS, model={"name_or_path": str(model_dir)})
    layout = Layout.from_config(config)
    prepared = stage_prepare(config, layout, echo=lambda _: None)
    signals, corpora = _signal_caches(layout), _corpus_caches(layout)
    shares = GateShares.read(GateShares.path(layout)).runs
    old = weights_fingerprint(prepared.load_base_model())
    assert len(signals) == 2  # target-train entropy (entrodrop's gate) and validation entropy
    # the same weights: nothing is recomputed
    stage_prepare(config, layout, echo=lambda _: None)
    assert _signal_caches(layout) == signals and GateShares.read(GateShares.path(layout)).runs == shares

    # new weights, same path: perturb every parameter and save over the old files
    model = prepared.load_base_model()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    model.save_pretrained(model_dir)
    with pytest.raises(DataError, match="no gate share measured .* base weights; run `entrodrop-bench prepare CONFIG`"):
        read_gate_shares(prepared, weights_fingerprint(prepared.load_base_model()))
    again = stage_prepare(config, layout, echo=lambda _: None)
    new = weights_fingerprint(again.load_base_model())
    assert new != old
    after = _signal_caches(layout)
    fresh = {name: values for name, values in after.items() if name not in signals}
    assert len(fresh) == 2, "both signal caches re-keyed on the new weights"
    assert all(v not in signals.values() for v in fresh.values()), "and recomputed: other values"
    new_shares = GateShares.read(GateShares.path(layout)).runs
    assert {r: s.key for r, s in new_shares.items()}.keys() == {r: s.key for r, s in shares.items()}.keys()
    assert all(new_shares[r].key != shares[r].key for r in shares), "every gate share re-keyed on the new weights"
    assert read_gate_shares(again, new) == new_shares
    assert _corpus_caches(layout) == corpora, "the tokenized corpora do not depend on the weights"
    record = PreparedRecord.read(PreparedRecord.path(layout))
    assert record.target_train.hash == corpus_fingerprint(again.target_train.tokens, again.target_train.offsets)


def test_a_corpus_has_one_fingerprint_however_it_is_held():
    docs = [[5, 6, 7], [8], [9, 10]]
    from entrodrop_bench.prepare.data import TokenizedCorpus

    corpus = TokenizedCorpus.from_docs(docs)
    assert corpus.content_hash() == docs_fingerprint(docs) == docs_fingerprint([np.array(d) for d in docs])
    assert docs_fingerprint([[5, 6], [7, 8], [9, 10]]) != docs_fingerprint(docs), "document boundaries count"
