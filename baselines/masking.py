"""Token dropout shared by `token_dropout` (vanilla) and `entrodrop`: the gamma curriculum and the masking.

Paper, Section 3.1/3.3: at step j, gamma_j ~ U(0, gamma_max(j)); each candidate target token is dropped
with probability gamma_j by replacing its INPUT EMBEDDING with a mask vector (Appendix A.3: the mean of
the base model's input embedding matrix). Labels are never changed: the dropped token is still predicted.

Curriculum gamma_max(j) (`schedule`):
- sigmoid: gamma_max / (1 + exp(-s (j - j0)))      (paper, Eq. 4)
- static:  gamma_max from step 0                    (Figure 2b ablation)
- linear:  gamma_max * min(1, j / (2 j0))           (ramp 0 -> gamma_max; reaches gamma_max / 2 at j0 like the sigmoid)

`j0`: an absolute step (int), a fraction of the run's total steps (float in (0, 1)), or `auto`: the step
of the baseline run's minimum validation loss (the paper picks j0 where the baseline turns to memorizing);
`auto` is declared through `baseline_dependency`, so the config refuses it without a baseline method and the
trainer passes the step in PrepareContext.baseline_min_val_step.

Rate matching (`gamma_max: {match: <method>}`, token_dropout only): gamma_max is set before training so that this
run's expected masked fraction of eligible target tokens equals that method's. The expected masked fraction of a
run of T steps is (`expected_masked_fraction`)

    F = g * (1/T) * sum_{j<T} E[gamma_j] = g * gamma_max * C,    C = (1/T) * sum_{j<T} curve(j) / 2,

where g is the share of eligible tokens the method's gate passes (measured by `prepare` over the target training
documents; 1 without a gate), curve(j) = gamma_max(j) / gamma_max the curriculum, and 1/2 the mean of U(0, 1).
Matching F_self = F_target gives

    gamma_max_self = gamma_max_target * g_target * C_target / (g_self * C_self),

which for the same schedule, j0 and sharpness on both sides (C cancels) is gamma_max_target * g_target / g_self:
vanilla token dropout (g_self = 1) matched to EntroDrop at gamma_max 0.1 with g = 0.5 trains at gamma_max 0.05.

Sharpness: the paper gives no value for its k in Eq. 4. Here s = sharpness / total_steps with
sharpness = 10 by default: gamma_max(j) goes from 12% to 88% of gamma_max within +-20% of the run around
j0, and at step 0 with j0 at 30% of the run it is ~5% of gamma_max ("near lossless" early training).

Randomness: the per-token uniforms and per-sample gammas come from TokenMeta.generator (seeded by the
trainer from (seed, step, micro-batch)); the per-step gamma is drawn from (run seed, step) so that every
micro-batch and process of one step share it. The run seed is PrepareContext.seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator

from baselines.common import TrainingOnly, device_generator
from entrodrop_bench.errors import ConfigError
from entrodrop_bench.registry import lazy_import
from entrodrop_bench.regularizer import PrepareContext, RateMatch, RegularizerConfig, ReportFields, TokenMeta

torch = lazy_import("torch")  # imported on first use: loading a config imports no torch


class TokenDropoutConfig(RegularizerConfig):
    RATE_MATCHING: ClassVar[bool] = True
    """Whether `gamma_max: {match: <method>}` is accepted (vanilla token dropout: yes; EntroDrop: no)."""

    gamma_max: float | RateMatch = Field(
        0.1,
        description="Upper bound of the dropout ratio gamma, in [0, 1] (paper default 0.1; Table 4 grid 0.05-0.4); "
        "or `{match: <method>}`: the gamma_max whose expected masked fraction of eligible target "
        "tokens equals that method's (e.g. EntroDrop's), resolved before training from the gated share measured at prepare.",
    )
    schedule: Literal["sigmoid", "static", "linear"] = Field(
        "sigmoid", description="Curriculum of gamma_max(j): sigmoid (paper Eq. 4), static (gamma_max from step 0) or linear ramp."
    )
    j0: int | float | Literal["auto"] = Field(
        "auto",
        description="Midpoint step of the curriculum: absolute step (int >= 0), fraction of total steps (float in (0,1)), "
        "or `auto` = step of the baseline run's minimum validation loss (needs a baseline method, e.g. `plain`, in the experiment). "
        "Unused by the static schedule.",
    )
    sharpness: float = Field(
        10.0, gt=0, le=1000,
        description="Sigmoid slope relative to the run: s = sharpness / total_steps. The paper gives no value; 10 is this project's choice.",
    )
    gamma_sampling: Literal["per_step", "per_sample"] = Field(
        "per_step", description="Draw gamma_j ~ U(0, gamma_max(j)) once per optimizer step (paper) or once per packed row."
    )
    mask_embedding: Literal["mean", "zero"] = Field(
        "mean", description="Replacement input embedding: mean of the base model's input embedding matrix (paper A.3) or zeros."
    )

    @field_validator("gamma_max", mode="before")
    @classmethod
    def _check_gamma_max(cls, value):
        # One message per mistake, instead of pydantic's error per union member.
        if isinstance(value, (dict, RateMatch)):
            if not cls.RATE_MATCHING:
                raise ValueError("rate matching ({match: <method>}) is offered by token_dropout only: give a number in [0, 1]")
            found = value.model_dump() if isinstance(value, RateMatch) else value
            if set(found) != {"match"} or not isinstance(found["match"], str):
                raise ValueError("expected {match: <method name>} (one key, `match`, naming a method of this experiment)")
            return RateMatch(match=found["match"])
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            also = " or {match: <method>}" if cls.RATE_MATCHING else ""
            raise ValueError(f"must be a number in [0, 1]{also}")
        return float(value)

    @field_validator("j0")
    @classmethod
    def _check_j0(cls, value):
        if isinstance(value, bool):
            raise ValueError("j0 must be an int step, a float fraction in (0, 1) or 'auto'")
        if isinstance(value, float) and not 0 < value < 1:
            raise ValueError("a float j0 is a fraction of total steps and must lie in (0, 1); write an integer for an absolute step")
        if isinstance(value, int) and value < 0:
            raise ValueError("an integer j0 is an absolute step and must be >= 0")
        return value


@dataclass(frozen=True)
class GammaSchedule:
    """gamma_max(j) for one run: j0 already resolved to a step (float), slope s per step."""

    gamma_max: float
    kind: str
    j0: float
    slope: float

    def __call__(self, step: int) -> float:
        if self.kind == "static":
            return self.gamma_max
        if self.kind == "linear":
            return self.gamma_max if self.j0 <= 0 else self.gamma_max * min(1.0, step / (2 * self.j0))
        z = self.slope * (step - self.j0)
        # Numerically stable logistic (math.exp overflows for large negative z otherwise).
        return self.gamma_max / (1 + math.exp(-z)) if z >= 0 else self.gamma_max * math.exp(z) / (1 + math.exp(z))


def resolve_j0(j0: int | float | str, total_steps: int, baseline_min_val_step: int | None, *, plugin: str = "entrodrop") -> float:
    """j0 as a step number; `auto` needs the baseline run's minimum-validation step."""
    if j0 == "auto":
        if baseline_min_val_step is None:
            raise ConfigError(
                f"methods.<{plugin}>.params.j0: j0=auto needs the baseline run of the same experiment, trained first: "
                "j0 is the step of the baseline run's minimum validation loss, and no complete baseline run "
                "(val_curve.json) was found. Train the baseline method (e.g. `plain: {plugin: plain}`) first, or set "
                "j0 to a step (int) or a fraction of the run (float in (0,1))."
            )
        return float(baseline_min_val_step)
    if isinstance(j0, float):
        return j0 * total_steps
    return float(j0)


def build_schedule(config: TokenDropoutConfig, total_steps: int, baseline_min_val_step: int | None, *, plugin: str,
                   gamma_max: float | None = None) -> GammaSchedule:
    """The run's curriculum; `gamma_max` replaces the config's (a rate-matched one, resolved before training)."""
    j0 = 0.0 if config.schedule == "static" else resolve_j0(config.j0, total_steps, baseline_min_val_step, plugin=plugin)
    peak = config.gamma_max if gamma_max is None else gamma_max
    if isinstance(peak, RateMatch):
        raise RuntimeError(f"gamma_max {{match: {peak.match}}} must be resolved (matched_gamma_max) before building the schedule")
    return GammaSchedule(peak, config.schedule, j0, config.sharpness / max(total_steps, 1))


def curriculum_mean(schedule: GammaSchedule, total_steps: int) -> float:
    """C = (1/T) sum_{j<T} E[gamma_j] / gamma_max with gamma_j ~ U(0, gamma_max(j)): the mean drop probability of a
    candidate token per unit of gamma_max (steps weigh equally, as in the logged per-step masked fraction)."""
    if schedule.gamma_max == 0 or total_steps <= 0:
        return 0.0
    unit = GammaSchedule(1.0, schedule.kind, schedule.j0, schedule.slope)
    return float(np.mean([unit(j) for j in range(total_steps)])) / 2


def matched_gamma_max(config: TokenDropoutConfig, ctx: PrepareContext, *, plugin: str) -> float:
    """gamma_max whose expected masked fraction (g_self * gamma_max * C_self) equals ctx.matched_masked_fraction."""
    target = config.gamma_max
    if ctx.matched_masked_fraction is None:
        raise RuntimeError(f"gamma_max {{match: {target.match}}}: PrepareContext.matched_masked_fraction was not given "
                           "(the trainer fills it for a plugin that declares a rate_dependency)")
    unit = build_schedule(config, ctx.total_steps, ctx.baseline_min_val_step, plugin=plugin, gamma_max=1.0)
    per_unit = (1.0 if ctx.gated_fraction is None else ctx.gated_fraction) * curriculum_mean(unit, ctx.total_steps)
    if ctx.matched_masked_fraction == 0:
        return 0.0
    gamma_max = ctx.matched_masked_fraction / per_unit if per_unit > 0 else math.inf
    if gamma_max > 1:
        raise ConfigError(
            f"gamma_max: {{match: {target.match}}}: method {target.match!r} masks {ctx.matched_masked_fraction:.4f} of the "
            f"eligible target tokens in expectation, more than this run can at gamma_max 1 ({per_unit:.4f}); lower "
            f"{target.match}'s gamma_max or give this run a number")
    return gamma_max


class TokenDropoutBase(TrainingOnly):
    """Drops candidate target tokens' input embeddings with probability gamma_j.

    Candidates are `meta.eligible` tokens (target domain, not first of a document, not special or pad),
    further restricted by `gate(meta)` in subclasses (EntroDrop's entropy gate). General-domain tokens,
    also inside packed rows, are never touched. `log_values()` reports gamma_max(j), gamma_j, and the
    running fractions of eligible target tokens that were gated and masked (since this object was built).
    """

    Config = TokenDropoutConfig
    config: TokenDropoutConfig
    progress_keys = ("gamma_max", "gamma")

    @classmethod
    def baseline_dependency(cls, config: TokenDropoutConfig) -> str | None:
        return "j0" if config.j0 == "auto" and config.schedule != "static" else None

    @classmethod
    def rate_dependency(cls, config: TokenDropoutConfig) -> tuple[str, str] | None:
        return ("gamma_max", config.gamma_max.match) if isinstance(config.gamma_max, RateMatch) else None

    @classmethod
    def report_fields(cls, config: TokenDropoutConfig) -> ReportFields:
        """Its logged masked and gated fractions (`log_values`), and gamma_max as trained (`resolved_params`)."""
        return ReportFields(masked_fraction="masked_fraction", gated_fraction="gated_fraction", trained_drop_rate="gamma_max")

    @classmethod
    def gate_settings(cls, config: TokenDropoutConfig) -> dict:
        """Every setting but the drop rate: the gate does not depend on it."""
        return config.model_dump(mode="json", exclude={"gamma_max"})

    @classmethod
    def expected_masked_fraction(cls, config: TokenDropoutConfig, *, gated_fraction: float, total_steps: int,
                                 baseline_min_val_step: int | None) -> float | None:
        """g * gamma_max * C (module docstring); None while gamma_max is an unresolved `{match: ...}`."""
        if isinstance(config.gamma_max, RateMatch):
            return None
        schedule = build_schedule(config, total_steps, baseline_min_val_step, plugin=cls.name or "token_dropout")
        return gated_fraction * config.gamma_max * curriculum_mean(schedule, total_steps) if config.gamma_max else 0.0

    def __init__(self, config: TokenDropoutConfig) -> None:
        super().__init__(config)
        self.schedule: GammaSchedule | None = None
        self.mask_vector: torch.Tensor | None = None
        self.run_seed = 0
        self.last_mask: torch.Tensor | None = None
        """Mask of the latest micro-batch (diagnostics and tests)."""
        self._gamma_cache: tuple[int, float] | None = None
        self._last = {"gamma_max": 0.0, "gamma": 0.0}
        self._counts: dict[str, torch.Tensor | int] = {"eligible": 0, "gated": 0, "masked": 0}
        self._processes, self._device = 1, torch.device("cpu")  # of the job training this run (`prepare`)

    # --- setup ------------------------------------------------------------------------------
    def prepare(self, ctx: PrepareContext) -> None:
        plugin = self.name or "token_dropout"
        gamma_max = matched_gamma_max(self.config, ctx, plugin=plugin) if isinstance(self.config.gamma_max, RateMatch) else None
        self.schedule = build_schedule(self.config, ctx.total_steps, ctx.baseline_min_val_step, plugin=plugin, gamma_max=gamma_max)
        self.run_seed = ctx.seed
        self._processes, self._device = ctx.num_processes, ctx.device
        weight = ctx.model.get_input_embeddings().weight.detach()
        if self.config.mask_embedding == "mean":
            self.mask_vector = weight.float().mean(dim=0).cpu()
        else:
            self.mask_vector = torch.zeros(weight.shape[1])

    def gate(self, meta: TokenMeta) -> torch.Tensor | None:
        """Bool [batch, seq] of tokens this method may drop (None: every eligible token)."""
        return None

    def resolved_params(self) -> dict[str, float]:
        """gamma_max as trained (a rate-matched one resolved) and j0 as a step (None before `prepare`)."""
        if self.schedule is None:
            return {}
        return {"gamma_max": self.schedule.gamma_max, "j0": self.schedule.j0}

    # --- per step ---------------------------------------------------------------------------
    def step_gamma(self, step: int, gamma_max: float) -> float:
        """gamma_j ~ U(0, gamma_max(j)), the same for every micro-batch and process of step j."""
        if self._gamma_cache is None or self._gamma_cache[0] != step:
            u = float(np.random.default_rng([self.run_seed & 0xFFFFFFFF, step, 0x70D]).random())
            self._gamma_cache = (step, u)
        return self._gamma_cache[1] * gamma_max

    def before_forward(self, meta: TokenMeta) -> None:
        self.last_mask = None  # this micro-batch's, once transform_embeddings masks it (not at all in eval mode)

    def transform_embeddings(self, embeds: torch.Tensor, meta: TokenMeta) -> torch.Tensor:
        if not self.active():
            return embeds
        if self.schedule is None or self.mask_vector is None:
            raise RuntimeError(f"{type(self).__name__}.prepare() must run before transform_embeddings()")
        device = embeds.device
        eligible = meta.eligible
        gated = self.gate(meta)
        candidates = eligible if gated is None else eligible & gated
        gamma_max = self.schedule(meta.step)
        gen = device_generator(meta.generator, device)
        u = torch.rand(candidates.shape, generator=gen, device=device)
        if self.config.gamma_sampling == "per_sample":
            gamma = torch.rand((candidates.shape[0], 1), generator=gen, device=device) * gamma_max
            self._last["gamma"] = gamma  # averaged lazily in log_values
        else:
            gamma = self.step_gamma(meta.step, gamma_max)
            self._last["gamma"] = gamma
        self._last["gamma_max"] = gamma_max
        mask = candidates & (u < gamma)
        self.last_mask = mask
        self._count(eligible, candidates, mask)
        fill = self.mask_vector.to(device=device, dtype=embeds.dtype)
        return torch.where(mask.unsqueeze(-1), fill, embeds)

    def _step_counts(self) -> tuple[float, float, float]:
        """(eligible, gated, masked) tokens of this step, over every process of the job."""
        counts = torch.stack([torch.as_tensor(self._counts[k], device=self._device).double()
                              for k in ("eligible", "gated", "masked")])
        if self._processes > 1 and torch.distributed.is_initialized():
            torch.distributed.all_reduce(counts)
        eligible, gated, masked = counts.tolist()
        return eligible, gated, masked

    def _count(self, eligible: torch.Tensor, candidates: torch.Tensor, mask: torch.Tensor) -> None:
        # Device tensors: no host sync per micro-batch; log_values() syncs once.
        self._counts["eligible"] = self._counts["eligible"] + eligible.sum()
        self._counts["gated"] = self._counts["gated"] + candidates.sum()
        self._counts["masked"] = self._counts["masked"] + mask.sum()

    def log_values(self) -> dict[str, float]:
        """This step's values; the counters restart for the next step. In a job of several processes (each masks
        only its own micro-batches) the counts are summed over the job first, so the fractions are the step's, as
        one process would log them; every process calls this once per step."""
        eligible, gated, masked = self._step_counts()
        gamma = self._last["gamma"]
        values = {
            "gamma_max": float(self._last["gamma_max"]),
            "gamma": float(gamma.mean()) if isinstance(gamma, torch.Tensor) else float(gamma),
            "gated_fraction": gated / eligible if eligible else 0.0,
            "masked_fraction": masked / eligible if eligible else 0.0,
        }
        self._counts = {"eligible": 0, "gated": 0, "masked": 0}
        return values
