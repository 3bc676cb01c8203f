"""A third-party regularizer package, as someone outside this repository would write it.

Its dist-info folder declares `my_reg_plugin` in the `entrodrop_bench.regularizers` entry-point group;
entrodrop-bench imports it on first plugin lookup, which runs the decorator below. It uses what EntroDrop uses:
a declared dependency on the baseline run (`start: baseline`, like EntroDrop's `j0: auto`) and a table role.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from entrodrop_bench.regularizer import (
    PrepareContext,
    Regularizer,
    RegularizerConfig,
    TableRole,
    TokenMeta,
    register_regularizer,
)


class ScaleTargetConfig(RegularizerConfig):
    factor: float = Field(0.9, gt=0, le=1, description="Multiplier applied to eligible target-token input embeddings.")
    start: int | Literal["baseline"] = Field(
        0, description="First step that scales: a step (int >= 0), or `baseline` = the step of the baseline run's "
                       "minimum validation loss (the experiment then needs a baseline method, trained first).")


@register_regularizer("scale_target_embeddings")
class ScaleTargetEmbeddings(Regularizer):
    """Shrinks the input embeddings of eligible target tokens by a constant factor, from step `start` on."""

    Config = ScaleTargetConfig
    config: ScaleTargetConfig
    progress_keys = ("factor",)

    def __init__(self, config: ScaleTargetConfig) -> None:
        super().__init__(config)
        self.first_step = None if config.start == "baseline" else config.start

    @classmethod
    def baseline_dependency(cls, config: ScaleTargetConfig) -> str | None:
        return "start" if config.start == "baseline" else None

    @classmethod
    def table_role(cls, config: ScaleTargetConfig) -> TableRole:
        return TableRole(label="+Scaled Targets", kind="comparison", rank=3)  # beside NEFTune; ties keep config order

    def prepare(self, ctx: PrepareContext) -> None:
        self.first_step = ctx.baseline_min_val_step if self.config.start == "baseline" else self.config.start

    def transform_embeddings(self, embeds: torch.Tensor, meta: TokenMeta) -> torch.Tensor:
        if self.first_step is None:
            raise RuntimeError("start: baseline is resolved in prepare(), which must run first")
        if meta.step < self.first_step:
            return embeds
        scale = torch.where(meta.eligible, self.config.factor, 1.0).to(embeds.dtype)
        return embeds * scale.unsqueeze(-1)

    def log_values(self) -> dict[str, float]:
        return {"factor": self.config.factor}
