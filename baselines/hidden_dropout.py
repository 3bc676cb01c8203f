"""Hidden dropout (Srivastava et al., 2014) on each decoder layer's attention output and MLP output,
before they are added to the residual stream; paper grid p = 0.05 / 0.1.

Qwen3 configs have no hidden-dropout field, so the dropout is attached as forward hooks on the modules
named `*.layers.<i>.self_attn` and `*.layers.<i>.mlp` (Qwen3, Llama, Mistral, Qwen2 and the tiny model
all use these names). The hooks are identity in eval mode and do not change checkpoints.

Masks are drawn from a generator derived from the micro-batch's TokenMeta.generator (set in
`transform_embeddings`, which the trainer calls right before each forward), so they are a pure function
of (seed, step, micro-batch) on every device; a forward without it falls back to torch's global RNG.
"""

from __future__ import annotations

import re

import torch
from pydantic import Field

from baselines.common import TrainingOnly, device_generator
from entrodrop_bench.errors import UserError
from entrodrop_bench.regularizer import RegularizerConfig, TokenMeta, register_regularizer

SUBLAYER = re.compile(r"(^|\.)layers\.\d+\.(self_attn|mlp)$")


class HiddenDropoutConfig(RegularizerConfig):
    p: float = Field(0.1, ge=0, lt=1, description="Dropout probability on attention and MLP outputs (paper grid: 0.05, 0.1).")


def sublayers(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """The attention and MLP modules of every decoder layer."""
    return [(name, m) for name, m in model.named_modules() if SUBLAYER.search(name)]


@register_regularizer("hidden_dropout")
class HiddenDropout(TrainingOnly):
    """Dropout on sub-layer outputs via forward hooks (training mode only)."""

    Config = HiddenDropoutConfig
    config: HiddenDropoutConfig
    version = "1"

    def __init__(self, config: HiddenDropoutConfig) -> None:
        super().__init__(config)
        self.handles: list[torch.utils.hooks.RemovableHandle] = []
        self._generator: torch.Generator | None = None

    def adjust_model(self, model: torch.nn.Module) -> None:
        super().adjust_model(model)
        if self.handles:
            return  # already attached
        found = sublayers(model)
        if not found:
            raise UserError(
                f"hidden_dropout: {type(model).__name__} has no modules named *.layers.<i>.self_attn / *.mlp to attach "
                "dropout to; this plugin supports Llama-style decoders (Qwen, Llama, Mistral)."
            )
        self.handles = [m.register_forward_hook(self._hook) for _, m in found]

    def remove_hooks(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    def transform_embeddings(self, embeds: torch.Tensor, meta: TokenMeta) -> torch.Tensor:
        if self.active():
            self._generator = device_generator(meta.generator, embeds.device)
        return embeds

    def _drop(self, x: torch.Tensor) -> torch.Tensor:
        p = self.config.p
        if self._generator is None or self._generator.device != x.device:
            return torch.nn.functional.dropout(x, p, training=True)
        keep = torch.rand(x.shape, generator=self._generator, device=x.device) >= p
        return x.masked_fill(~keep, 0) * (1.0 / (1.0 - p))

    def _hook(self, module: torch.nn.Module, args, output):
        if not module.training or self.config.p == 0:
            return None
        if isinstance(output, tuple):
            return (self._drop(output[0]), *output[1:])
        return self._drop(output)
