"""Hidden dropout (Srivastava et al., 2014) on each decoder layer's attention output and MLP output,
before they are added to the residual stream; paper grid p = 0.05 / 0.1.

Qwen3 configs have no hidden-dropout field, so the dropout is attached as forward hooks on the modules
named `*.layers.<i>.self_attn` and `*.layers.<i>.mlp` (Qwen3, Llama, Mistral, Qwen2 and the tiny model
all use these names). The hooks are identity in eval mode and do not change checkpoints.

Masks are drawn from a generator derived from the micro-batch's TokenMeta.generator (set in
`before_forward`, which the trainer calls right before each forward), so they are a pure function
of (seed, step, micro-batch) on every device; a forward without it falls back to torch's global RNG.
Under `train.gradient_checkpointing` a decoder layer's forward runs again in the backward; each hook keeps
the generator state it drew its mask from, so the recompute draws the very same mask (torch's checkpoint
restores the global RNG itself, but not a private generator's).
"""

from __future__ import annotations

import re

from pydantic import Field

from baselines.common import TrainingOnly, device_generator
from entrodrop_bench.errors import UserError
from entrodrop_bench.registry import lazy_import
from entrodrop_bench.regularizer import RegularizerConfig, TableRole, TokenMeta, register_regularizer

torch = lazy_import("torch")  # imported on first use: loading a config imports no torch

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

    @classmethod
    def table_role(cls, config: HiddenDropoutConfig) -> TableRole:
        return TableRole(label="+Hidden Dropout", rank=2)

    def __init__(self, config: HiddenDropoutConfig) -> None:
        super().__init__(config)
        self.handles: list[torch.utils.hooks.RemovableHandle] = []
        self._generator: torch.Generator | None = None
        self._drawn_from: dict[int, torch.Tensor] = {}  # module id -> generator state its mask was drawn from

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

    def before_forward(self, meta: TokenMeta) -> None:
        if self.active():
            self._generator = device_generator(meta.generator, meta.domain.device)
            self._drawn_from = {}  # a new micro-batch: the next call of each sub-layer is a first forward

    def _drop(self, x: torch.Tensor, key: int) -> torch.Tensor:
        p = self.config.p
        gen = self._generator
        if gen is None or gen.device != x.device:
            return torch.nn.functional.dropout(x, p, training=True)
        if key in self._drawn_from:  # a checkpointed layer's recompute: replay its mask, then carry on
            now = gen.get_state()
            gen.set_state(self._drawn_from[key])
            keep = torch.rand(x.shape, generator=gen, device=x.device) >= p
            gen.set_state(now)
        else:
            self._drawn_from[key] = gen.get_state()
            keep = torch.rand(x.shape, generator=gen, device=x.device) >= p
        return x.masked_fill(~keep, 0) * (1.0 / (1.0 - p))

    def _hook(self, module: torch.nn.Module, args, output):
        if not module.training or self.config.p == 0:
            return None
        if isinstance(output, tuple):
            return (self._drop(output[0], id(module)), *output[1:])
        return self._drop(output, id(module))
