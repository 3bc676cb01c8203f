"""NEFTune (Jain et al., 2024): uniform noise on the input embeddings during training.

noise = U(-1, 1) * alpha / sqrt(L * d), with L the number of real (non-pad) tokens of the sample (the
packed row) and d the embedding width; padding gets no noise; eval mode gets none. The paper uses the
recommended alpha = 5. Noise is added to every real token (target and general), as NEFTune does.
"""

from __future__ import annotations

from pydantic import Field

from baselines.common import TrainingOnly, device_generator
from entrodrop_bench.registry import lazy_import
from entrodrop_bench.regularizer import RegularizerConfig, TableRole, TokenMeta, register_regularizer

torch = lazy_import("torch")  # imported on first use: loading a config imports no torch


class NEFTuneConfig(RegularizerConfig):
    alpha: float = Field(5.0, ge=0, le=100, description="Noise scale alpha; noise magnitude alpha / sqrt(L d) (paper: 5).")


@register_regularizer("neftune")
class NEFTune(TrainingOnly):
    """Adds U(-1,1) * alpha / sqrt(L d) to each real token's input embedding."""

    Config = NEFTuneConfig
    config: NEFTuneConfig
    version = "1"

    @classmethod
    def table_role(cls, config: NEFTuneConfig) -> TableRole:
        return TableRole(label="+NEFTune", rank=3)

    def transform_embeddings(self, embeds: torch.Tensor, meta: TokenMeta) -> torch.Tensor:
        if not self.active() or self.config.alpha == 0:
            return embeds
        real = ~meta.is_pad
        length = real.sum(dim=1, keepdim=True).clamp(min=1).to(torch.float32)  # [B, 1]
        scale = self.config.alpha / torch.sqrt(length * embeds.shape[-1])  # [B, 1]
        gen = device_generator(meta.generator, embeds.device)
        noise = torch.rand(embeds.shape, generator=gen, device=embeds.device, dtype=torch.float32).mul_(2).sub_(1)
        noise.mul_((scale * real).unsqueeze(-1))
        return (embeds.float() + noise).to(embeds.dtype)
