"""EntroDrop (paper Section 3): entropy-guided token dropout with a curriculum on the drop rate.

Gate (Eq. 2): for each target training document, g_t = 1 when the base model's signal at token t is at or
below the `percentile` k (default 0.5) of the signals of that document's eligible tokens (not its first
token, not special tokens). `target: high` gates tokens above the (1 - k) percentile instead (Table 3
ablation), `target: all` gates every eligible token (= vanilla token dropout). Drop (Eq. 3):
P(m_t = 0) = gamma_j * g_t, gamma_j and the curriculum as in `baselines.masking`.

Signal: `entropy` of p(. | x_<t) (the paper) or `nll` = -log p(x_t | x_<t), computed once by
`entrodrop_bench.prepare.entropy` with the frozen base model and cached in PrepareContext.cache_dir (declared
through `signals`, so the prepare stage computes it once before runs start).
Percentiles use numpy's default (linear interpolation between order statistics).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
import torch
from pydantic import Field

from baselines.masking import TokenDropoutBase, TokenDropoutConfig
from entrodrop_bench.regularizer import TARGET, PrepareContext, TableRole, TokenMeta, register_regularizer


def _doc_quantiles(sorted_values: np.ndarray, starts: np.ndarray, counts: np.ndarray, q: float) -> np.ndarray:
    """Per-document q-quantile (numpy 'linear' method) of values sorted within each document; NaN for empty docs."""
    out = np.full(len(counts), np.nan)
    has = counts > 0
    pos = q * (counts[has] - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, counts[has] - 1)
    base = starts[has]
    v_lo, v_hi = sorted_values[base + lo], sorted_values[base + hi]
    out[has] = v_lo + (pos - lo) * (v_hi - v_lo)
    return out


def document_gates(values: np.ndarray, offsets: np.ndarray, eligible: np.ndarray, percentile: float, target: str) -> np.ndarray:
    """Flat bool gate per token: EntroDrop's Eq. 2 within each document, vectorized over the corpus."""
    n_docs = len(offsets) - 1
    if target == "all":
        return eligible.copy()
    doc_of = np.repeat(np.arange(n_docs), np.diff(offsets))
    idx = np.flatnonzero(eligible)
    v, d = values[idx].astype(np.float64), doc_of[idx]
    order = np.lexsort((v, d))  # by document, then value
    counts = np.bincount(d, minlength=n_docs)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    gates = np.zeros(len(values), dtype=bool)
    if target == "low":
        threshold = _doc_quantiles(v[order], starts, counts, percentile)
        gates[idx] = v <= threshold[d]
    else:
        threshold = _doc_quantiles(v[order], starts, counts, 1.0 - percentile)
        gates[idx] = v > threshold[d]
    return gates


class EntroDropConfig(TokenDropoutConfig):
    # Its rate is its gate share times gamma_max; other methods match it (token_dropout's `gamma_max: {match: ...}`).
    RATE_MATCHING: ClassVar[bool] = False

    gamma_max: float = Field(0.1, description="Upper bound of the dropout ratio gamma, in [0, 1] (paper default 0.1; "
                                              "Table 4 grid 0.05-0.4).")
    signal: Literal["entropy", "nll"] = Field(
        "entropy", description="Per-token signal of the frozen base model: entropy of p(.|x_<t) (paper) or nll = -log p(x_t|x_<t)."
    )
    percentile: float = Field(0.5, gt=0, lt=1, description="k of Eq. 2: share of each document's eligible tokens that are gated (bottom k for low).")
    target: Literal["low", "high", "all"] = Field(
        "low", description="Tokens gated: low (signal <= k-th percentile; paper), high (> (1-k)-th percentile; Table 3) or all (vanilla)."
    )


@register_regularizer("entrodrop")
class EntroDrop(TokenDropoutBase):
    """Entropy-guided token dropout: drop low-entropy target tokens' input embeddings, curriculum on gamma."""

    Config = EntroDropConfig
    config: EntroDropConfig
    version = "1"

    @classmethod
    def signals(cls, config: EntroDropConfig) -> frozenset[str]:
        return frozenset() if config.target == "all" else frozenset({config.signal})

    @classmethod
    def table_role(cls, config: EntroDropConfig) -> TableRole:
        in_sweep = config.target == "low" and config.schedule != "static"
        return TableRole(label="+EntroDrop", kind="proposed", targets=config.target,
                         drop_rate=config.gamma_max if in_sweep else None)

    def __init__(self, config: EntroDropConfig) -> None:
        super().__init__(config)
        self.gates: torch.Tensor | None = None
        self.offsets: torch.Tensor | None = None
        self.lengths: torch.Tensor | None = None
        self.static_gated_fraction = 1.0
        self._on_device: dict[torch.device, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self._checked = False

    def prepare(self, ctx: PrepareContext) -> None:
        super().prepare(ctx)
        if self.config.target == "all":
            return  # vanilla: no signal needed
        from entrodrop_bench.paths import signals_cache_file
        from entrodrop_bench.prepare.entropy import cached_token_signals, signals_cache_key

        cfg = self.config
        key = signals_cache_key(ctx.model, ctx.tokenizer, ctx.target_docs, seq_len=ctx.seq_len, kind=cfg.signal)
        values, offsets = cached_token_signals(
            ctx.model,
            ctx.target_docs,
            cache_file=signals_cache_file(ctx.cache_dir, key),
            kind=cfg.signal,
            seq_len=ctx.seq_len,
            device=ctx.device,
            batch_size=ctx.signal_batch_size,
        )
        self.set_signals(values, offsets, ctx.target_docs, special_ids=set(getattr(ctx.tokenizer, "all_special_ids", []) or []))

    def set_signals(self, values: np.ndarray, offsets: np.ndarray, docs: list[list[int]], *, special_ids: set[int]) -> None:
        """Gates from per-token signals (flat values + offsets of `docs`); special tokens are never gated."""
        tokens = np.fromiter((t for d in docs for t in d), dtype=np.int64, count=int(offsets[-1]))
        eligible = np.isfinite(values) & ~np.isin(tokens, np.array(sorted(special_ids), dtype=np.int64))
        eligible[offsets[:-1][np.diff(offsets) > 0]] = False  # first token of each document
        gates = document_gates(values, offsets, eligible, self.config.percentile, self.config.target)
        self.static_gated_fraction = float(gates.sum() / max(int(eligible.sum()), 1))
        self.gates = torch.from_numpy(gates)
        self.offsets = torch.from_numpy(offsets.astype(np.int64))
        self.lengths = torch.from_numpy(np.diff(offsets).astype(np.int64))
        self._on_device.clear()

    def token_gates(self, signals: np.ndarray, offsets: np.ndarray, eligible: np.ndarray) -> np.ndarray | None:
        """Eq. 2's gate over `signals` (the base model's entropies, whatever `signal` this run trains on)."""
        return document_gates(signals, offsets, eligible, self.config.percentile, self.config.target)

    def _tables(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if device not in self._on_device:
            self._on_device[device] = (self.gates.to(device), self.offsets.to(device), self.lengths.to(device))
        return self._on_device[device]

    def gate(self, meta: TokenMeta) -> torch.Tensor | None:
        if self.gates is None:
            if self.config.target == "all":
                return None
            raise RuntimeError("EntroDrop.prepare() must run before transform_embeddings()")
        gates, offsets, lengths = self._tables(meta.doc_id.device)
        n_docs = len(lengths)
        if n_docs == 0 or len(gates) == 0:
            return torch.zeros_like(meta.doc_id, dtype=torch.bool)
        doc = meta.doc_id.clamp(0, n_docs - 1)
        inside = (meta.domain == TARGET) & (meta.doc_id >= 0) & (meta.doc_id < n_docs) & (meta.position >= 0) & (meta.position < lengths[doc])
        if not self._checked:
            # Once per run (one host sync): the trainer's document ids must index ctx.target_docs.
            self._checked = True
            bad = meta.eligible & ~inside
            if bool(bad.any()):
                raise RuntimeError(
                    f"EntroDrop: {int(bad.sum())} eligible target tokens refer to (doc_id, position) outside the "
                    "target documents given to prepare(); TokenMeta.doc_id must index PrepareContext.target_docs"
                )
        index = (offsets[doc] + meta.position).clamp(0, len(gates) - 1)
        return gates[index] & inside

    def log_values(self) -> dict[str, float]:
        return {**super().log_values(), "corpus_gated_fraction": self.static_gated_fraction}
