"""Per-token signals of the frozen base model: those the methods declare (`Regularizer.signals`) over the target
training documents, and the trainer's own (validation loss groups, Figure 2c's sample), all through the one cached
pass of `entrodrop_bench.prepare.entropy`, so each is computed once."""

from __future__ import annotations

import numpy as np
import torch

from entrodrop_bench.artifacts import SampleEntropy
from entrodrop_bench.prepare.data import TokenizedCorpus
from entrodrop_bench.prepare.stage import Prepared


def base_model_signals(prepared: Prepared, corpus: TokenizedCorpus, *, kind: str = "entropy", model: torch.nn.Module | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Flat per-token signal values (NaN at each document's first token) and document offsets."""
    from entrodrop_bench.prepare import entropy

    model = model if model is not None else prepared.load_base_model()
    docs = corpus.docs()
    key = entropy.signals_cache_key(model, prepared.tokenizer, docs, seq_len=prepared.plan.seq_len, kind=kind)
    cache_file = prepared.layout.entropy_cache(key)
    return entropy.cached_token_signals(model, docs, cache_file=cache_file, kind=kind, seq_len=prepared.plan.seq_len,
                                        tokenizer=prepared.tokenizer, compute=prepared.writer)


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
    ).write(SampleEntropy.path(prepared.layout))
