"""Helpers shared by several plugins: training-only guards and per-micro-batch device RNGs."""

from __future__ import annotations

import weakref

from entrodrop_bench.registry import lazy_import
from entrodrop_bench.regularizer import Regularizer

torch = lazy_import("torch")  # imported on first use: loading a config imports no torch


class TrainingOnly(Regularizer):
    """A regularizer whose embedding transform is a no-op while its model is in eval mode.

    The trainer calls `transform_embeddings` only in training mode anyway; remembering the model given
    to `adjust_model` makes that guarantee hold for any other caller too (validation, generation).
    """

    _model_ref: weakref.ReferenceType | None = None

    def adjust_model(self, model: torch.nn.Module) -> None:
        self._model_ref = weakref.ref(model)

    def active(self) -> bool:
        """False when the adjusted model is known and in eval mode."""
        model = self._model_ref() if self._model_ref is not None else None
        return model is None or model.training


def device_generator(generator: torch.Generator, device: torch.device) -> torch.Generator:
    """A generator on `device` derived from `generator` (a pure function of its seed and draws so far).

    On CPU the given generator is used directly; elsewhere a device generator is seeded from one 63-bit
    draw, so large noise tensors are drawn where they are used instead of being copied over.
    """
    if device.type == "cpu":
        return generator
    seed = int(torch.randint(0, 2**63 - 1, (1,), generator=generator))
    return torch.Generator(device=device).manual_seed(seed)
