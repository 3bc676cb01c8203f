"""A third-party regularizer package, as someone outside this repository would write it.

Its dist-info folder declares `my_reg_plugin` in the `entrodrop_bench.regularizers` entry-point group;
entrodrop-bench imports it on first plugin lookup, which runs the decorator below.
"""

from __future__ import annotations

import torch
from pydantic import Field

from entrodrop_bench.regularizer import Regularizer, RegularizerConfig, TokenMeta, register_regularizer


class ScaleTargetConfig(RegularizerConfig):
    factor: float = Field(0.9, gt=0, le=1, description="Multiplier applied to eligible target-token input embeddings.")


@register_regularizer("scale_target_embeddings")
class ScaleTargetEmbeddings(Regularizer):
    """Shrinks the input embeddings of eligible target tokens by a constant factor."""

    Config = ScaleTargetConfig
    config: ScaleTargetConfig

    def transform_embeddings(self, embeds: torch.Tensor, meta: TokenMeta) -> torch.Tensor:
        scale = torch.where(meta.eligible, self.config.factor, 1.0).to(embeds.dtype)
        return embeds * scale.unsqueeze(-1)

    def log_values(self) -> dict[str, float]:
        return {"factor": self.config.factor}
