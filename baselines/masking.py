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
from typing import Literal

import numpy as np
import torch
from pydantic import Field, field_validator

from baselines.common import TrainingOnly, device_generator
from entrodrop_bench.errors import ConfigError
from entrodrop_bench.regularizer import PrepareContext, RegularizerConfig, TokenMeta


class TokenDropoutConfig(RegularizerConfig):
    gamma_max: float = Field(0.1, ge=0, le=1, description="Upper bound of the dropout ratio gamma (paper default 0.1; Table 4 grid 0.05-0.4).")
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


def build_schedule(config: TokenDropoutConfig, total_steps: int, baseline_min_val_step: int | None, *, plugin: str) -> GammaSchedule:
    j0 = 0.0 if config.schedule == "static" else resolve_j0(config.j0, total_steps, baseline_min_val_step, plugin=plugin)
    return GammaSchedule(config.gamma_max, config.schedule, j0, config.sharpness / max(total_steps, 1))


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

    # --- setup ------------------------------------------------------------------------------
    def prepare(self, ctx: PrepareContext) -> None:
        self.schedule = build_schedule(self.config, ctx.total_steps, ctx.baseline_min_val_step, plugin=self.name or "token_dropout")
        self.run_seed = ctx.seed
        weight = ctx.model.get_input_embeddings().weight.detach()
        if self.config.mask_embedding == "mean":
            self.mask_vector = weight.float().mean(dim=0).cpu()
        else:
            self.mask_vector = torch.zeros(weight.shape[1])

    def gate(self, meta: TokenMeta) -> torch.Tensor | None:
        """Bool [batch, seq] of tokens this method may drop (None: every eligible token)."""
        return None

    # --- per step ---------------------------------------------------------------------------
    def step_gamma(self, step: int, gamma_max: float) -> float:
        """gamma_j ~ U(0, gamma_max(j)), the same for every micro-batch and process of step j."""
        if self._gamma_cache is None or self._gamma_cache[0] != step:
            u = float(np.random.default_rng([self.run_seed & 0xFFFFFFFF, step, 0x70D]).random())
            self._gamma_cache = (step, u)
        return self._gamma_cache[1] * gamma_max

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

    def _count(self, eligible: torch.Tensor, candidates: torch.Tensor, mask: torch.Tensor) -> None:
        # Device tensors: no host sync per micro-batch; log_values() syncs once.
        self._counts["eligible"] = self._counts["eligible"] + eligible.sum()
        self._counts["gated"] = self._counts["gated"] + candidates.sum()
        self._counts["masked"] = self._counts["masked"] + mask.sum()

    def log_values(self) -> dict[str, float]:
        """This step's values; the counters restart for the next step."""
        n = float(self._counts["eligible"])
        gamma = self._last["gamma"]
        values = {
            "gamma_max": float(self._last["gamma_max"]),
            "gamma": float(gamma.mean()) if isinstance(gamma, torch.Tensor) else float(gamma),
            "gated_fraction": float(self._counts["gated"]) / n if n else 0.0,
            "masked_fraction": float(self._counts["masked"]) / n if n else 0.0,
        }
        self._counts = {"eligible": 0, "gated": 0, "masked": 0}
        return values
