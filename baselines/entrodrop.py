"""EntroDrop (paper Section 3): entropy-guided token dropout with a curriculum on the drop rate.

Gate (Eq. 2): for each target training document, g_t = 1 when the base model's signal at token t is at or
below the `percentile` k (default 0.5) of the signals of that document's eligible tokens (not its first
token, not special tokens). `target: high` gates tokens above the (1 - k) percentile instead (Table 3
ablation), `target: all` gates every eligible token (= vanilla token dropout). Drop (Eq. 3):
P(m_t = 0) = gamma_j * g_t, gamma_j and the curriculum as in `baselines.masking`.

Signal: `entropy` of p(. | x_<t) (the paper) or `nll` = -log p(x_t | x_<t) of the frozen base model, declared
through `signals`: the prepare stage computes it once before runs start, and the plugin receives it in
`PrepareContext.signals`.
Percentiles use numpy's default (linear interpolation between order statistics).

Online signals (the paper's Limitations: "dynamic training loss as a real-time signal"): `online_loss` and
`online_entropy` start from the base model's `nll` or `entropy` and replace each token's value, at every training
visit, with its training loss or predictive entropy in that visit's forward pass (`observes`, so no extra forward).
The gate is recomputed from the current values at `refresh`: every target-epoch boundary or every N steps, at the
start of the step; each refresh logs the share of eligible target tokens whose gate flipped (`gate_flip_fraction`)
and whose gate now differs from the base model's, static EntroDrop's (`gate_drift_fraction`). A value is not recorded (the visit is counted as skipped) when the token's own input, or the input
it was predicted from, was the mask vector in that visit: the latter is where masking perturbs a token's loss (its
prediction is made from the mask), the former is the token's own drop; the token keeps its last clean value. The
table (`baselines.online_signal`) is combined over processes before each refresh and checkpoint, so every process
gates the same tokens, and it is saved in every checkpoint (`state_dict`), so a resume is exact.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from baselines.masking import TokenDropoutBase, TokenDropoutConfig
from baselines.online_signal import OnlineSignalTable
from entrodrop_bench.registry import lazy_import
from entrodrop_bench.regularizer import (
    TARGET,
    LogSeries,
    PrepareContext,
    ReportFields,
    TableRole,
    TokenMeta,
    register_regularizer,
)
from entrodrop_bench.validation import FieldProblem

torch = lazy_import("torch")  # imported on first use: loading a config imports no torch

ONLINE_SIGNALS = {"online_loss": ("nll", "loss"), "online_entropy": ("entropy", "entropy")}
"""Online signal -> (the base-model signal it starts from, the per-token training value it records)."""


def _doc_quantiles(sorted_values: torch.Tensor, starts: torch.Tensor, counts: torch.Tensor, q: float) -> torch.Tensor:
    """Per-document q-quantile (numpy's 'linear' method, in float64) of values sorted within each document; NaN for
    empty documents."""
    out = torch.full((len(counts),), math.nan, dtype=torch.float64, device=counts.device)
    has = counts > 0
    pos = q * (counts[has] - 1).double()
    lo = pos.floor().long()
    hi = torch.minimum(lo + 1, counts[has] - 1)
    base = starts[has]
    v_lo, v_hi = sorted_values[base + lo], sorted_values[base + hi]
    out[has] = v_lo + (pos - lo) * (v_hi - v_lo)
    return out


def document_gates_tensor(values: torch.Tensor, lengths: torch.Tensor, eligible: torch.Tensor, percentile: float,
                          target: str) -> torch.Tensor:
    """Flat bool gate per token (EntroDrop's Eq. 2 within each document of `lengths` tokens), on the tensors' device:
    one sort of the corpus per call, so online EntroDrop refreshes a 20M-token gate on the GPU rather than the host."""
    if target == "all":
        return eligible.clone()
    doc_of = torch.repeat_interleave(torch.arange(len(lengths), device=values.device), lengths)
    idx = eligible.nonzero().squeeze(1)
    v, d = values[idx], doc_of[idx]
    by_value = torch.sort(v, stable=True).indices  # in the values' own dtype: the order float64 would give, faster
    v = v.double()
    order = by_value[torch.sort(d[by_value], stable=True).indices]  # by document, then value
    counts = torch.bincount(d, minlength=len(lengths))
    starts = torch.cumsum(counts, 0) - counts
    gates = torch.zeros(len(values), dtype=torch.bool, device=values.device)
    if target == "low":
        gates[idx] = v <= _doc_quantiles(v[order], starts, counts, percentile)[d]
    else:
        gates[idx] = v > _doc_quantiles(v[order], starts, counts, 1.0 - percentile)[d]
    return gates


def document_gates(values: np.ndarray, offsets: np.ndarray, eligible: np.ndarray, percentile: float, target: str) -> np.ndarray:
    """`document_gates_tensor` over numpy arrays (flat values, document offsets, eligible tokens)."""
    lengths = torch.from_numpy(np.diff(offsets).astype(np.int64))
    return document_gates_tensor(torch.from_numpy(np.asarray(values)), lengths, torch.from_numpy(np.asarray(eligible, dtype=bool)),
                                 percentile, target).numpy()


class EntroDropConfig(TokenDropoutConfig):
    # Its rate is its gate share times gamma_max; other methods match it (token_dropout's `gamma_max: {match: ...}`).
    RATE_MATCHING: ClassVar[bool] = False

    gamma_max: float = Field(0.1, description="Upper bound of the dropout ratio gamma, in [0, 1] (paper default 0.1; "
                                              "Table 4 grid 0.05-0.4).")
    signal: Literal["entropy", "nll", "online_loss", "online_entropy"] = Field(
        "entropy", description="Per-token signal the gate reads. Of the frozen base model, once before training: entropy of "
        "p(.|x_<t) (paper) or nll = -log p(x_t|x_<t). Online, from the model being trained: online_loss (each token's "
        "training loss at its latest unmasked visit) or online_entropy (its predictive entropy then); tokens not yet "
        "visited keep the base model's nll or entropy."
    )
    refresh: Literal["epoch"] | int = Field(
        "epoch", description="Online signals only: when the gate is recomputed from the current values, at the start of a "
        "step: `epoch` (each target-epoch boundary) or every N optimizer steps (an int >= 1)."
    )
    percentile: float = Field(0.5, gt=0, lt=1, description="k of Eq. 2: share of each document's eligible tokens that are gated (bottom k for low).")
    target: Literal["low", "high", "all"] = Field(
        "low", description="Tokens gated: low (signal <= k-th percentile; paper), high (> (1-k)-th percentile; Table 3) or all (vanilla)."
    )

    @field_validator("refresh")
    @classmethod
    def _check_refresh(cls, value):
        if isinstance(value, bool) or (isinstance(value, int) and value < 1):
            raise ValueError("refresh is `epoch` or a number of optimizer steps >= 1")
        return value

    @model_validator(mode="after")
    def _check_online(self):
        online = self.signal in ONLINE_SIGNALS
        if "refresh" in self.model_fields_set and not online:
            raise FieldProblem("refresh", f"refresh applies to online signals (online_loss, online_entropy), not signal {self.signal}")
        if online and self.target == "all":
            raise FieldProblem("signal", "target all gates every eligible token: an online signal would have nothing to gate")
        return self


@register_regularizer("entrodrop")
class EntroDrop(TokenDropoutBase):
    """Entropy-guided token dropout: drop low-entropy target tokens' input embeddings, curriculum on gamma."""

    Config = EntroDropConfig
    config: EntroDropConfig
    version = "1"

    @classmethod
    def signals(cls, config: EntroDropConfig) -> frozenset[str]:
        if config.target == "all":
            return frozenset()
        return frozenset({ONLINE_SIGNALS[config.signal][0] if config.signal in ONLINE_SIGNALS else config.signal})

    @classmethod
    def observes(cls, config: EntroDropConfig) -> frozenset[str]:
        return frozenset({ONLINE_SIGNALS[config.signal][1]}) if config.signal in ONLINE_SIGNALS else frozenset()

    @classmethod
    def table_role(cls, config: EntroDropConfig) -> TableRole:
        if config.signal in ONLINE_SIGNALS:
            observed = ONLINE_SIGNALS[config.signal][1]
            return TableRole(label=f"+EntroDrop (online {observed})", kind="comparison", targets=config.target,
                             online_signal=observed)
        in_sweep = config.target == "low" and config.schedule != "static"
        return TableRole(label="+EntroDrop", kind="proposed", targets=config.target,
                         drop_rate=config.gamma_max if in_sweep else None)

    @classmethod
    def report_fields(cls, config: EntroDropConfig) -> ReportFields:
        """Token dropout's fields, its gate's share k, and for an online gate the shares of eligible target tokens whose
        gate flipped at each refresh and whose gate differs from the base model's (Figure 5)."""
        fields = super().report_fields(config)
        online = config.signal in ONLINE_SIGNALS
        series = (LogSeries("gate_flip_fraction", "gates flipped at the refresh"),
                  LogSeries("gate_drift_fraction", "differs from the base model's gate", dashed=True)) if online else ()
        return dataclasses.replace(fields, gate_share=None if config.target == "all" else config.percentile, series=series)

    def __init__(self, config: EntroDropConfig) -> None:
        super().__init__(config)
        self.gates: torch.Tensor | None = None
        self.offsets: torch.Tensor | None = None
        self.lengths: torch.Tensor | None = None
        self.static_gated_fraction = 1.0
        self._on_device: dict[torch.device, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self._checked = False
        self.eligible: np.ndarray | None = None
        """Flat bool over the target training tokens: those the gate ranks (set with the signals)."""
        # Online signals only (set in `prepare`):
        self.online: OnlineSignalTable | None = None
        self.base_gates: np.ndarray | None = None
        self.refreshed_at = 0
        """Step at whose start the gate was last recomputed (0: the base model's gate)."""
        self._target_epoch = None
        self._refresh_values: dict[str, float] = {}
        self._visits: dict[str, torch.Tensor | int] = {"usable": 0, "skipped": 0}

    def prepare(self, ctx: PrepareContext) -> None:
        super().prepare(ctx)
        if self.config.target == "all":
            return  # vanilla: no signal needed
        cfg = self.config
        (kind,) = self.signals(cfg)  # an online signal starts from the base model's
        if kind not in ctx.signals:
            raise RuntimeError(f"entrodrop: PrepareContext.signals has no {kind!r} signal (the trainer passes the signals a "
                               "plugin declares, computed by the prepare stage)")
        values, offsets = ctx.signals[kind]
        self.set_signals(values, offsets, ctx.target_docs, special_ids=set(getattr(ctx.tokenizer, "all_special_ids", []) or []))
        if cfg.signal in ONLINE_SIGNALS:
            if cfg.refresh == "epoch" and ctx.target_epoch is None:
                raise RuntimeError("entrodrop refresh: epoch needs PrepareContext.target_epoch (given by the trainer)")
            self.online = OnlineSignalTable(values, ctx.device, ctx.num_processes)
            self.base_gates = self.gates.numpy().copy()  # the base model's gate: static EntroDrop's, for the drift
            self._target_epoch = ctx.target_epoch

    def set_signals(self, values: np.ndarray, offsets: np.ndarray, docs: list[list[int]], *, special_ids: set[int]) -> None:
        """Gates from per-token signals (flat values + offsets of `docs`); special tokens are never gated."""
        tokens = np.fromiter((t for d in docs for t in d), dtype=np.int64, count=int(offsets[-1]))
        eligible = np.isfinite(values) & ~np.isin(tokens, np.array(sorted(special_ids), dtype=np.int64))
        eligible[offsets[:-1][np.diff(offsets) > 0]] = False  # first token of each document
        self.eligible = eligible
        self.offsets = torch.from_numpy(offsets.astype(np.int64))
        self.lengths = torch.from_numpy(np.diff(offsets).astype(np.int64))
        self._set_gates(document_gates(values, offsets, eligible, self.config.percentile, self.config.target))

    def _set_gates(self, gates: np.ndarray) -> None:
        self.static_gated_fraction = float(gates.sum() / max(int(self.eligible.sum()), 1))
        self.gates = torch.from_numpy(gates)
        self._on_device.clear()

    def token_gates(self, signals: np.ndarray, offsets: np.ndarray, eligible: np.ndarray) -> np.ndarray | None:
        """Eq. 2's gate over `signals` (the base model's entropies, whatever `signal` this run trains on)."""
        return document_gates(signals, offsets, eligible, self.config.percentile, self.config.target)

    def _tables(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if device not in self._on_device:
            self._on_device[device] = (self.gates.to(device), self.offsets.to(device), self.lengths.to(device))
        return self._on_device[device]

    def _flat_index(self, meta: TokenMeta) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(the gates on the batch's device, each token's index into the flat target-token tables, whether the
        token lies inside the target documents given to `prepare`)."""
        gates, offsets, lengths = self._tables(meta.doc_id.device)
        n_docs = len(lengths)
        doc = meta.doc_id.clamp(0, max(n_docs - 1, 0))
        inside = (meta.domain == TARGET) & (meta.doc_id >= 0) & (meta.doc_id < n_docs) & (meta.position >= 0) & (meta.position < lengths[doc])
        index = (offsets[doc] + meta.position).clamp(0, max(len(gates) - 1, 0))
        return gates, index, inside

    def gate(self, meta: TokenMeta) -> torch.Tensor | None:
        if self.gates is None:
            if self.config.target == "all":
                return None
            raise RuntimeError("EntroDrop.prepare() must run before transform_embeddings()")
        if len(self.lengths) == 0 or len(self.gates) == 0:
            return torch.zeros_like(meta.doc_id, dtype=torch.bool)
        gates, index, inside = self._flat_index(meta)
        if not self._checked:
            # Once per run (one host sync): the trainer's document ids must index ctx.target_docs.
            self._checked = True
            bad = meta.eligible & ~inside
            if bool(bad.any()):
                raise RuntimeError(
                    f"EntroDrop: {int(bad.sum())} eligible target tokens refer to (doc_id, position) outside the "
                    "target documents given to prepare(); TokenMeta.doc_id must index PrepareContext.target_docs"
                )
        return gates[index] & inside

    # --- online signals ---------------------------------------------------------------------
    def observe_tokens(self, meta: TokenMeta, values: dict[str, torch.Tensor]) -> None:
        """Record each eligible target token's value from this visit, unless masking touched it (module docstring)."""
        if self.online is None or len(self.gates) == 0:
            return
        value = values[ONLINE_SIGNALS[self.config.signal][1]]
        _, index, inside = self._flat_index(meta)
        masked = self.last_mask if self.last_mask is not None else torch.zeros_like(inside)
        touched = masked.clone()
        touched[:, 1:] |= masked[:, :-1]  # predicted from the mask vector
        usable = meta.eligible & inside & ~torch.isnan(value)
        keep = usable & ~touched
        spare = torch.full_like(index, self.online.n)
        stamp = self.online.stamp(meta.step, meta.micro_batch, meta.micro_batches)
        self.online.record(torch.where(keep, index, spare).flatten(), value.flatten(), stamp)
        self._visits["usable"] = self._visits["usable"] + usable.sum()
        self._visits["skipped"] = self._visits["skipped"] + (usable & touched).sum()

    def refresh_due(self, step: int) -> bool:
        """Whether the gate is recomputed at the start of `step`: a target-epoch boundary, or every `refresh` steps."""
        if self.online is None or step <= self.refreshed_at:
            return False
        if self.config.refresh == "epoch":
            return math.floor(self._target_epoch(step) + 1e-9) > math.floor(self._target_epoch(step - 1) + 1e-9)
        return step % self.config.refresh == 0

    def begin_step(self, step: int) -> None:
        if self.refresh_due(step):
            self.refresh(step)

    def refresh(self, step: int) -> None:
        """Recompute the gate from the current values (combined over processes first; a collective call)."""
        self.online.merge()
        values = self.online.values[: self.online.n]
        gates = document_gates_tensor(values, self.lengths.to(values.device), torch.from_numpy(self.eligible).to(values.device),
                                      self.config.percentile, self.config.target).cpu().numpy()
        if not self.online.agree(gates):
            raise RuntimeError(f"entrodrop online signal: the processes computed different gates at step {step}")
        n = max(int(self.eligible.sum()), 1)
        recorded = self.online.recorded().cpu().numpy() & self.eligible
        self._refresh_values = {"gate_flip_fraction": float((gates != self.gates.numpy())[self.eligible].sum() / n),
                                "gate_drift_fraction": float((gates != self.base_gates)[self.eligible].sum() / n),
                                "online_recorded_fraction": float(recorded.sum() / n)}
        self._set_gates(gates)
        self.refreshed_at = step

    def state_dict(self) -> dict[str, Any]:
        """The online table and the gate computed from it at the last refresh; nothing for a static signal."""
        if self.online is None:
            return {}
        self.online.merge()  # the main process saves: it must hold every process's newest values
        return {**self.online.state_dict(), "gates": self.gates.clone(), "refreshed_at": self.refreshed_at}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.online is None:
            return
        if "values" not in state:
            raise ValueError("this checkpoint holds no online signal table (saved by a version without it or by a static "
                             "signal): an online run cannot resume from it exactly; delete the run's checkpoints to retrain")
        self.online.load_state_dict(state)
        self._set_gates(state["gates"].numpy().astype(bool))
        self.refreshed_at = int(state["refreshed_at"])

    def log_values(self) -> dict[str, float]:
        values = {**super().log_values(), "corpus_gated_fraction": self.static_gated_fraction, **self._refresh_values}
        self._refresh_values = {}
        if self.online is not None:
            usable = float(self._visits["usable"])
            values["online_skipped_fraction"] = float(self._visits["skipped"]) / usable if usable else 0.0
            self._visits = {"usable": 0, "skipped": 0}
        return values
