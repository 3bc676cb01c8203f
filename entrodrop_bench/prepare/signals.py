"""Per-token signals of the frozen base model for the trainer's own needs (validation loss groups,
Figure 2c), through the same cached entropy pass EntroDrop's plugin uses, so each is computed once."""

from __future__ import annotations

import numpy as np
import torch

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


def warm_caches(prepared: Prepared) -> None:
    """Compute the target-train and validation entropies once, before runs start in parallel."""
    model = prepared.load_base_model()
    model.eval()
    base_model_signals(prepared, prepared.target_train, model=model)
    base_model_signals(prepared, prepared.target_val, model=model)
    write_sample_entropy(prepared, model)


def write_sample_entropy(prepared: Prepared, model: torch.nn.Module, k: float = 0.5) -> None:
    """One validation document's tokens, base-model entropy and low-entropy gate, for Figure 2c."""
    from entrodrop_bench.atomic import write_json

    values, offsets = base_model_signals(prepared, prepared.target_val, model=model)
    doc = prepared.target_val.doc(0)
    sig = values[offsets[0] : offsets[1]]
    eligible = np.isfinite(sig) & ~np.isin(doc, list(prepared.special_ids))
    threshold = np.quantile(sig[eligible], k) if eligible.any() else np.inf
    tokens = [prepared.tokenizer.decode([int(t)]) for t in doc]
    write_json(
        prepared.layout.sample_entropy_file,
        {
            "tokens": tokens,
            "entropy": [None if not np.isfinite(v) else float(v) for v in sig],
            "gated": [bool(e and v <= threshold) for e, v in zip(eligible, sig)],
            "percentile": k,
        },
    )
