"""The regularizer plugin interface. Every method, EntroDrop included, is one of these.

A plugin is a class with a typed `Config` (pydantic, one docstring or `description` per field) and no-op hooks
that it may override:

    @register_regularizer("my_method")
    class MyMethod(Regularizer):
        class Config(RegularizerConfig):
            strength: float = Field(0.1, ge=0, le=1, description="...")

        def transform_embeddings(self, embeds, meta):
            ...

What a plugin declares from its typed config, read at config load (before any compute):
`baseline_dependency` (the param that needs the baseline run's minimum-validation step, EntroDrop's `j0: auto`),
`rate_dependency` (a param set from another method's masking rate, token dropout's `gamma_max: {match: entrodrop}`),
`expected_masked_fraction` (a token-dropout method's masking rate, pure arithmetic on its config),
`signals` (base-model signals that `prepare` computes once for it), `observes` (per-token values of the training
forward pass it reads: `loss`, `entropy`), `table_role` (label and role in the paper's tables), `report_fields`
(what the report shows of its runs: which `log_values` are its masked and gated fractions, its gate's share, which
resolved param is its drop rate as trained, extra logged series to draw), `gate_settings` (the settings its gate
depends on) and `progress_keys` (which `log_values` the progress bar shows). The report and the stages read these
declarations only: they never name a method's param or log key.

The training loop calls the hooks in this order: `prepare` once (before the optimizer exists), `adjust_model` once,
`param_groups` once, `load_state_dict` when it resumes from a checkpoint; then per optimizer step `begin_step` on
every process, on every training micro-batch `before_forward`, `transform_embeddings` and, after the forward,
`observe_tokens` (only for a plugin that `observes` something), `token_loss` (only for a plugin that overrides it,
in place of the cross-entropy), and `log_values` once per step; `state_dict` on every
process at each checkpoint. The report calls `token_gates` (Figure 2c).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from entrodrop_bench.registry import Registry
from entrodrop_bench.validation import validate_model

if TYPE_CHECKING:  # annotations only: importing the interface (loading a config) imports neither
    import numpy as np
    import torch


class RegularizerConfig(BaseModel):
    """Base of every plugin's config: unknown keys are errors, not silently ignored, and so are inf and nan. Give
    every field a `description` (shown by `entrodrop-bench plugins` and `config --explain`; a test checks it)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class RateMatch(RegularizerConfig):
    """A param value `{match: <method>}`: set the param, before training, so that this run's expected masked fraction
    of eligible target tokens equals that of `<method>`, another method of the same experiment (a plugin accepting
    it declares the param in `rate_dependency`)."""

    match: str = Field(description="Method (a key of `methods`) whose expected masked fraction this run matches; it must "
                                   "declare a masking rate (`expected_masked_fraction`, e.g. entrodrop).")


# Domains of a token, as stored in TokenMeta.domain.
GENERAL, TARGET = 0, 1


@dataclass
class TokenMeta:
    """Per-token metadata of one training micro-batch. Every tensor is [batch, seq_len] on the batch's device."""

    domain: torch.Tensor
    """GENERAL (0) or TARGET (1); padding carries GENERAL."""
    doc_id: torch.Tensor
    """Index of the token's document within its own corpus (target or general); -1 on padding."""
    position: torch.Tensor
    """Position of the token inside its document (0 = first token)."""
    is_special: torch.Tensor
    """True on special tokens (eos, bos, pad)."""
    is_pad: torch.Tensor
    """True on padding."""
    step: int
    """Optimizer step this micro-batch belongs to (0-based)."""
    total_steps: int
    """Total optimizer steps of the run."""
    generator: torch.Generator
    """RNG seeded from (seed, step, micro-batch): masks are a pure function of those, so resumes reproduce them."""
    micro_batch: int = 0
    """Index of this micro-batch within its optimizer step, counted over every process (unique within the step)."""
    micro_batches: int = 1
    """Micro-batches of the step, over every process."""

    @property
    def eligible(self) -> torch.Tensor:
        """Tokens a token-dropout method may touch: target domain, not first-of-document, not special or pad."""
        return (self.domain == TARGET) & (self.position > 0) & ~self.is_special & ~self.is_pad


@dataclass
class PrepareContext:
    """What a plugin may use to build its shared artifacts once, before training."""

    model: torch.nn.Module
    """The model about to be trained, still holding the base weights."""
    tokenizer: Any
    """The experiment's tokenizer (HF `PreTrainedTokenizer`)."""
    target_docs: list[list[int]]
    """Token ids of every target-domain training document, indexed by TokenMeta.doc_id."""
    cache_dir: Path
    """A folder shared by every run of the experiment, for artifacts a plugin builds itself (the built-ins need
    none: their base-model signals come in `signals`)."""
    seq_len: int
    """Packed training sequence length (data.seq_len)."""
    total_steps: int
    """Optimizer steps of the run."""
    device: torch.device
    """Device the run trains on (where `prepare` may compute its signals)."""
    seed: int
    """The run's training seed (also what the trainer seeded torch with right before `prepare`)."""
    baseline_min_val_step: int | None = None
    """Step at which this experiment's baseline run reached its minimum held-out validation loss; given only to
    a plugin whose `baseline_dependency` names a param, and None until that baseline run is complete."""
    signal_batch_size: int = 16
    """Sequences per forward pass of the frozen base model when a plugin computes its `signals`."""
    matched_masked_fraction: float | None = None
    """Given only to a plugin whose `rate_dependency` names a method: that method's expected masked fraction of
    eligible target tokens over a run of `total_steps` (its `expected_masked_fraction`, at the gated share that
    `prepare` measured for it); the plugin sets its param so that its own expected fraction equals it."""
    gated_fraction: float | None = None
    """Given with `matched_masked_fraction`: the share of eligible target tokens this run's own gate passes, as
    `prepare` measured it (1.0 for a method without a gate)."""
    num_processes: int = 1
    """Processes training this run together (accelerate's). Above 1, each sees only its own micro-batches: state built
    from what a plugin observes must be combined over processes (`torch.distributed`, in `begin_step`/`state_dict`)."""
    process_index: int = 0
    """This process's index among them (0: the main process)."""
    target_epoch: Callable[[int], float] | None = None
    """Target-domain epochs completed after a number of optimizer steps (`TrainingPlan.target_epoch`), for plugins
    that act at epoch boundaries; None outside a training run."""
    signals: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    """The base-model signals the plugin declares (`Regularizer.signals`), computed once by the prepare stage and
    read from its cache by the trainer: kind -> (flat float32 values over `target_docs` in order, NaN where nothing
    predicts a token (a document's first), and the documents' int64 offsets). The plugin never computes them."""


MethodTable = Literal["main", "targeting", "gamma", "schedule"]
"""The table families a method can be filed in (a config's `methods.<name>.table`)."""
TableKind = Literal["baseline", "comparison", "proposed"]
Targets = Literal["all", "high", "low"]


@dataclass(frozen=True)
class TableRole:
    """Where a method's runs appear in the paper's tables and figures; the report reads these, never plugin names."""

    label: str
    """Row label, e.g. `Baseline`, `+EntroDrop`; a method named otherwise than its plugin reads `<label> (<method>)`."""
    kind: TableKind = "comparison"
    """`baseline`: the row every relative gain is measured against (at most one per experiment is used);
    `comparison`: a regularization method compared with it; `proposed`: the paper's method (last row, Figures 2c, 4)."""
    rank: int = 100
    """Row order in the main table (ascending; ties keep config order): the paper's order for the built-ins."""
    targets: Targets | None = None
    """For a token-dropout method, which tokens it may drop (Table 3): all eligible ones (random masking), the high-
    or the low-signal ones. None: not a token-dropout method."""
    drop_rate: float | None = None
    """The maximum drop rate (gamma_max) this run puts in Table 4's sweep; None: not part of the sweep."""
    rate_matched_to: str | None = None
    """The method whose expected masked fraction this run matches (filled in by the harness from the plugin's
    `rate_dependency`; Table 3's rate-matched row). None: not rate-matched."""
    online_signal: str | None = None
    """For a gate refreshed during training from the model being trained (its `observes`): what it reads, `loss` or
    `entropy` (Table 3's online rows, the gate-flip figure). None: any gate is fixed before training."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LogSeries:
    """A value the method logs (a `log_values` key, at the steps where it logs it) that the report draws against the
    target epoch, one line per run that declares it (Figure 5: online EntroDrop's gate flips). The value is a share
    of eligible target tokens (in [0, 1]; drawn in %)."""

    key: str
    """The `log_values` key."""
    label: str
    """What the line shows, in words (the legend and the figure's caption)."""
    dashed: bool = False
    """Drawn dashed in the colour of the run's first series (a companion of it); solid lines get a colour each."""


@dataclass(frozen=True)
class ReportFields:
    """What the report shows of a method's runs, declared from its typed config (`Regularizer.report_fields`) and
    recorded in the selection, so that the report reads these and never a param or log key by name."""

    masked_fraction: str | None = None
    """The `log_values` key of the share of eligible target tokens the method masked at a step (its run average is
    the tables' `Masked (realized)` column); None: the method masks no tokens (the column shows `–`)."""
    gated_fraction: str | None = None
    """The `log_values` key of the share of eligible target tokens its gate passed at a step; None: no gate."""
    gate_share: float | None = None
    """Share of each document's eligible tokens its gate passes, as configured (EntroDrop's k, default included);
    Table 3's online rows print it. None: no per-document gate share."""
    trained_drop_rate: str | None = None
    """The key of `resolved_params` that holds the drop rate as trained (a rate-matched run's resolved gamma_max,
    Table 3's rate-matched row); None: nothing resolved to show."""
    series: tuple[LogSeries, ...] = ()
    """Logged values drawn against the target epoch (Figure 5); empty: none."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Regularizer:
    """Base class: every hook is a no-op, so a plugin overrides only what it changes."""

    Config: ClassVar[type[RegularizerConfig]] = RegularizerConfig
    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    progress_keys: ClassVar[tuple[str, ...]] = ()
    """Keys of `log_values()` the progress bar shows beside the loss and learning rate."""

    def __init__(self, config: RegularizerConfig) -> None:
        self.config = config

    # --- declarations, read at config load from the typed config (no instance, no compute) ----------------
    @classmethod
    def baseline_dependency(cls, config: RegularizerConfig) -> str | None:
        """The param of `config` that needs the step of the baseline run's minimum validation loss (EntroDrop's
        `j0: auto`), or None. Declaring one makes the config refuse an experiment without a baseline method
        (naming `methods.<name>.params.<param>`), trains this run after the baseline runs, and fills
        `PrepareContext.baseline_min_val_step`."""
        return None

    @classmethod
    def rate_dependency(cls, config: RegularizerConfig) -> tuple[str, str] | None:
        """(param, method): the param of `config` whose value is `{match: <method>}` (`RateMatch`), set before
        training so that this run's expected masked fraction equals that method's, or None. The config refuses,
        naming `methods.<name>.params.<param>`, a method that does not exist, has several runs (a grid), declares
        no masking rate (`expected_masked_fraction`) or is itself rate-matched; this run trains after the baseline
        runs and gets `PrepareContext.matched_masked_fraction` and `gated_fraction`."""
        return None

    @classmethod
    def expected_masked_fraction(cls, config: RegularizerConfig, *, gated_fraction: float, total_steps: int,
                                 baseline_min_val_step: int | None) -> float | None:
        """Expected share of eligible target tokens (`TokenMeta.eligible`) this method masks, averaged over the
        `total_steps` optimizer steps of a run, when its gate passes a share `gated_fraction` of them (measured by
        `prepare` through `token_gates` over the signal it declares; 1.0 without a gate). Pure arithmetic on the
        config. None (the default): the method masks no tokens, and no other method can match its rate."""
        return None

    @classmethod
    def signals(cls, config: RegularizerConfig) -> frozenset[str]:
        """Per-token signals of the frozen base model over the target training documents that `prepare` reads
        (`entropy`, `nll`; see `entrodrop_bench.prepare.entropy`): the prepare stage computes exactly these
        caches once, before runs start in parallel."""
        return frozenset()

    @classmethod
    def observes(cls, config: RegularizerConfig) -> frozenset[str]:
        """Per-token values of the training forward pass that `observe_tokens` receives: `loss` (-log p(x_t | x_<t))
        and/or `entropy` (of p(. | x_<t)). The trainer takes them from the forward it already runs, so observing
        makes no extra forward pass; it keeps such a run off Liger's fused loss (which returns only the sum), and
        `entropy` costs one more pass over each LM-head chunk's logits. Default: nothing."""
        return frozenset()

    @classmethod
    def table_role(cls, config: RegularizerConfig) -> TableRole:
        """Label and role in the paper's tables. Default: a comparison row labelled with the plugin's name."""
        return TableRole(label=cls.name)

    @classmethod
    def report_fields(cls, config: RegularizerConfig) -> ReportFields:
        """What the report shows of this method's runs beyond its scores (`ReportFields`). Default: nothing."""
        return ReportFields()

    @classmethod
    def gate_settings(cls, config: RegularizerConfig) -> dict[str, Any]:
        """The settings `token_gates` depends on, as JSON: `prepare` keys each run's measured gate share on them,
        so grid points that differ only elsewhere (a drop rate) share one measurement. Default: every setting."""
        return config.model_dump(mode="json")

    # --- hooks ------------------------------------------------------------------------------------------
    def prepare(self, ctx: PrepareContext) -> None:
        """Build artifacts shared by every epoch (EntroDrop's entropy cache, mean embedding)."""

    def adjust_model(self, model: torch.nn.Module) -> None:
        """Change the model before training (attach hidden-dropout hooks).

        Under `train.gradient_checkpointing` a hook inside a decoder layer runs twice per micro-batch (forward,
        then the recompute in the backward); randomness it draws from its own generator must repeat there
        (torch restores only its global RNG), as baselines/hidden_dropout.py does."""

    def param_groups(self, model: torch.nn.Module) -> list[dict[str, Any]]:
        """Optimizer parameter groups. Default: every trainable parameter, no weight decay."""
        return [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": 0.0}]

    def begin_step(self, step: int) -> None:
        """Called on every process at the start of optimizer step `step` (0-based), before its micro-batches (a
        process may have none in a step). Every process calls it at the same point, so collective operations
        (`torch.distributed`) are allowed here, e.g. to combine what each process observed."""

    def before_forward(self, meta: TokenMeta) -> None:
        """Called on every training micro-batch right before its forward pass (before `transform_embeddings`);
        e.g. derive this micro-batch's generator from `meta.generator` for hooks inside the model."""

    def transform_embeddings(self, embeds: torch.Tensor, meta: TokenMeta) -> torch.Tensor:
        """Return the input embeddings [batch, seq, dim] to train on. Called in training mode only."""
        return embeds

    def observe_tokens(self, meta: TokenMeta, values: dict[str, torch.Tensor]) -> None:
        """After each training micro-batch's forward: the per-token values the plugin `observes`, detached, float32,
        [batch, seq] and aligned with `meta`: `values[k][b, t]` is about token (b, t) as predicted from what precedes
        it in its row (its loss, or the entropy of that prediction). NaN where the row predicts nothing: a row's or
        packed segment's first token, padding. The values come from this micro-batch's own (transformed) inputs."""

    def token_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The per-token training loss, for a method that changes the loss itself (label smoothing): fp32 next-token
        logits [N, V] and the tokens they predict [N] (-100 where nothing is predicted: return 0 there) -> [N]. Summed
        over the micro-batch's tokens it is what the trainer differentiates (and logs as `loss`, and hands an
        `observes: loss` method). Default: the cross-entropy, the trainer's own, fastest path (overriding this makes
        the trainer call it instead, and keeps the run off Liger's fused cross-entropy).

        Called in training mode only (validation and evaluation keep the plain cross-entropy), possibly on chunks
        of rows, and again on each chunk in the backward to differentiate it: a pure function of its inputs (no
        randomness, no state), differentiable by autograd."""
        from torch.nn.functional import (
            cross_entropy,  # torch is imported when training, not with the interface
        )

        return cross_entropy(logits, targets, ignore_index=-100, reduction="none")

    def state_dict(self) -> dict[str, Any]:
        """What must survive a kill and resume (tensors, numbers, strings, lists and dicts of them), saved in every
        checkpoint. Called on every process at each checkpoint (collective operations allowed); the main
        process's return value is saved. Default: nothing (randomness drawn from TokenMeta.generator and the
        seed is a pure function of (seed, step) and needs no state)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned, on resume, after `prepare`. Default: nothing to restore."""

    def resolved_params(self) -> dict[str, Any]:
        """Params whose values `prepare` resolved (a rate-matched `gamma_max`, `j0: auto`'s step), recorded in the
        run's status (`RunStatus.resolved`) so that the report shows what was trained. Default: none."""
        return {}

    def log_values(self) -> dict[str, float]:
        """Scalars for the progress bar, TensorBoard and the step log (gamma, masked fraction...).

        Called once per optimizer step; report that step's values (reset any counters here). The trainer
        averages each over every logged step for the run's summary, so the summary survives a resume."""
        return {}

    def token_gates(self, signals: np.ndarray, offsets: np.ndarray, eligible: np.ndarray) -> np.ndarray | None:
        """Which tokens this method may drop, given flat per-token base-model signals of documents delimited by
        `offsets` and the tokens eligible at all (bool, same length): a bool array, or None when the method has
        no signal gate. Figure 2c draws it over one validation document's entropies; `prepare` measures each
        masking method's gated share with it over the target training documents and the signal the method declares
        (`signals`; a method that declares none has no gate)."""
        return None


BUILTIN_REGULARIZERS = {name: f"baselines.{name}" for name in
                        ("plain", "weight_decay", "hidden_dropout", "neftune", "token_dropout", "entrodrop", "label_smoothing")}
"""The built-in plugins (baselines/), one module each: known by name without importing any."""
REGULARIZERS: Registry[type[Regularizer]] = Registry("regularizer", "entrodrop_bench.regularizers", builtin=BUILTIN_REGULARIZERS)


def register_regularizer(name: str):
    """Class decorator: register a Regularizer subclass under `name`."""

    def decorator(cls: type[Regularizer]) -> type[Regularizer]:
        cls.name = name
        return REGULARIZERS.register(name)(cls)

    return decorator


def resolve_params(plugin: str, params: dict[str, Any], *, key_path: str = "methods") -> tuple[type[Regularizer], RegularizerConfig]:
    """The registered plugin class and its typed Config for `params`; errors name `<key_path>.plugin/.params.<key>`."""
    cls = REGULARIZERS.get(plugin, key_path=f"{key_path}.plugin")
    return cls, validate_model(cls.Config, params, key_path=f"{key_path}.params")


def build_regularizer(plugin: str, params: dict[str, Any], *, key_path: str = "methods") -> Regularizer:
    """Instantiate a registered plugin from its name and params, validating params against its Config."""
    cls, config = resolve_params(plugin, params, key_path=key_path)
    return cls(config)


def defines_token_loss(cls: type[Regularizer]) -> bool:
    """Whether a plugin overrides `token_loss` (its own training loss): the trainer then computes that loss."""
    return cls.token_loss is not Regularizer.token_loss


def declares_masking_rate(cls: type[Regularizer]) -> bool:
    """Whether a plugin implements `expected_masked_fraction` (a token-dropout method), so that another method can
    match its masking rate (`rate_dependency`) and `prepare` measures its gated share."""
    return cls.expected_masked_fraction.__func__ is not Regularizer.expected_masked_fraction.__func__
