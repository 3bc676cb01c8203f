"""Per-token signals of the frozen base model: those the methods declare (`Regularizer.signals`) over the target
training documents, and the trainer's own (validation loss groups, Figure 2c's sample), all through the one cached
pass of `entrodrop_bench.prepare.entropy`, so each is computed once."""

from __future__ import annotations

import numpy as np
import torch

from entrodrop_bench.artifacts import GateShare, GateShares, SampleEntropy
from entrodrop_bench.atomic import json_sha256
from entrodrop_bench.config import RunSpec
from entrodrop_bench.errors import DataError
from entrodrop_bench.prepare.data import TokenizedCorpus
from entrodrop_bench.prepare.fingerprints import tokenizer_fingerprint, weights_fingerprint
from entrodrop_bench.prepare.stage import Prepared
from entrodrop_bench.regularizer import declares_masking_rate


def base_model_signals(prepared: Prepared, corpus: TokenizedCorpus, *, kind: str = "entropy", model: torch.nn.Module | None = None,
                       compute: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Flat per-token signal values (NaN at each document's first token) and document offsets. `compute` False (a
    reader, e.g. training): read from the cache the prepare stage wrote, and raise when it is missing or stale;
    default: compute and write when this process is the writer."""
    from entrodrop_bench.prepare import entropy

    model = model if model is not None else prepared.load_base_model()
    docs = corpus.docs()
    key = entropy.signals_cache_key(model, prepared.tokenizer, docs, seq_len=prepared.plan.seq_len, kind=kind)
    cache_file = prepared.layout.entropy_cache(key)
    return entropy.cached_token_signals(model, docs, cache_file=cache_file, kind=kind, seq_len=prepared.plan.seq_len,
                                        tokenizer=prepared.tokenizer, compute=prepared.writer if compute is None else compute)


def run_signals(prepared: Prepared, spec: RunSpec, model: torch.nn.Module) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The base-model signals a run's plugin declares, over the target training documents, read from the caches the
    prepare stage wrote (never computed here): what the trainer hands the plugin in `PrepareContext.signals`."""
    return {kind: base_model_signals(prepared, prepared.target_train, kind=kind, model=model, compute=False)
            for kind in sorted(spec.plugin_cls.signals(spec.settings))}


def declared_signals(prepared: Prepared) -> list[str]:
    """Every signal kind a method of the experiment declares it reads over the target training documents."""
    return sorted({kind for spec in prepared.config.runs.values() for kind in spec.plugin_cls.signals(spec.settings)})


def warm_caches(prepared: Prepared) -> None:
    """Compute the declared target-train signals and the validation entropies once, before runs start in parallel."""
    model = prepared.load_base_model()
    model.eval()
    for kind in declared_signals(prepared):
        base_model_signals(prepared, prepared.target_train, kind=kind, model=model)
    base_model_signals(prepared, prepared.target_val, model=model)
    write_sample_entropy(prepared, model)
    gate_shares(prepared, model=model)


def gate_signal(spec: RunSpec) -> str | None:
    """The signal a run's gate reads: the one its plugin declares (entropy when it declares several and entropy is
    among them, else the first by name); None when it declares none (no gate)."""
    declared = sorted(spec.plugin_cls.signals(spec.settings))
    if not declared:
        return None
    return "entropy" if "entropy" in declared else declared[0]


def eligible_tokens(corpus: TokenizedCorpus, special_ids: set[int]) -> np.ndarray:
    """Flat bool: tokens any token dropout may touch (`TokenMeta.eligible`): not a document's first, not special."""
    eligible = ~np.isin(corpus.tokens, np.array(sorted(special_ids), dtype=corpus.tokens.dtype))
    lengths = np.diff(corpus.offsets)
    eligible[corpus.offsets[:-1][lengths > 0]] = False
    return eligible


def measure_gate_share(prepared: Prepared, spec: RunSpec, key: str, model: torch.nn.Module | None = None) -> GateShare:
    """A run's gated share of the eligible target training tokens, through its plugin's public `token_gates`."""
    corpus = prepared.target_train
    eligible = eligible_tokens(corpus, prepared.special_ids)
    kind = gate_signal(spec)
    gates = None
    if kind is not None:
        values, offsets = base_model_signals(prepared, corpus, kind=kind, model=model)
        eligible &= np.isfinite(values)
        gates = spec.build().token_gates(values, offsets, eligible)
    n = int(eligible.sum())
    gated = n if gates is None else int((np.asarray(gates, dtype=bool) & eligible).sum())
    return GateShare(key=key, signal=kind if gates is not None else None, eligible_tokens=n, gated_tokens=gated,
                     gated_fraction=gated / n if n else 1.0)


def gate_share_keys(prepared: Prepared, weights: str) -> dict[str, str]:
    """Run -> the key of its gate share, for every run of a masking method (`expected_masked_fraction`): the
    fingerprints of the target corpus, the tokenizer and the base model's `weights`, the plugin and the settings its
    gate depends on (`gate_settings`: grid points that differ only in the drop rate share one)."""
    base = {"corpus": prepared.target_train.content_hash(), "weights": weights,
            "tokenizer": tokenizer_fingerprint(prepared.tokenizer)}
    return {run: json_sha256({**base, "plugin": spec.plugin, "settings": spec.plugin_cls.gate_settings(spec.settings)}, length=16)
            for run, spec in prepared.config.runs.items() if declares_masking_rate(spec.plugin_cls)}


def gate_shares(prepared: Prepared, model: torch.nn.Module) -> dict[str, GateShare]:
    """Run -> gated share, for every run of a masking method: read from `GateShares` when measured for the same
    key (`gate_share_keys`, so new base weights at the same path are measured again), else measured (and written
    by the writer process). Grid points with the same gate settings are measured once."""
    layout = prepared.layout
    written = GateShares.read_or_none(GateShares.path(layout))
    have = dict(written.runs) if written else {}
    found: dict[str, GateShare] = {}
    measured: dict[str, GateShare] = {}
    for run, key in gate_share_keys(prepared, weights_fingerprint(model)).items():
        spec = prepared.config.runs[run]
        if run in have and have[run].key == key:
            found[run] = have[run]
            continue
        if key not in measured:
            measured[key] = measure_gate_share(prepared, spec, key, model)
        found[run] = measured[key]
    if measured and prepared.writer:
        GateShares(runs={**have, **found}).write(GateShares.path(layout))
    return found


def read_gate_shares(prepared: Prepared, weights: str) -> dict[str, GateShare]:
    """The gate shares `prepare` measured, for a reader that must not measure them (training): each masking run's
    share, checked against its key for these base `weights`; missing or stale ones raise, naming what to re-run."""
    path = GateShares.path(prepared.layout)
    written = GateShares.read_or_none(path)
    have = dict(written.runs) if written else {}
    stale = [run for run, key in gate_share_keys(prepared, weights).items() if run not in have or have[run].key != key]
    if stale:
        raise DataError(f"{path}: no gate share measured for run(s) {', '.join(stale)} with this corpus, tokenizer and "
                        "base weights; run `entrodrop-bench prepare CONFIG` first (training reads it, never measures it)")
    return {run: have[run] for run in gate_share_keys(prepared, weights)}


def write_sample_entropy(prepared: Prepared, model: torch.nn.Module) -> None:
    """One validation document's tokens, base-model entropy and which tokens any token dropout may touch, for
    Figure 2c (the report draws the proposed method's own gate over it: `Regularizer.token_gates`)."""
    values, offsets = base_model_signals(prepared, prepared.target_val, model=model)
    doc = prepared.target_val.doc(0)
    sig = values[offsets[0] : offsets[1]]
    eligible = np.isfinite(sig) & ~np.isin(doc, list(prepared.special_ids))
    tokens = [prepared.tokenizer.decode([int(t)]) for t in doc]
    SampleEntropy(
        tokens=tokens,
        entropy=[None if not np.isfinite(v) else float(v) for v in sig],
        eligible=[bool(e) for e in eligible],
    ).write_if_changed(SampleEntropy.path(prepared.layout))
