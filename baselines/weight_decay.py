"""Decoupled weight decay (AdamW, Loshchilov & Hutter 2019) on matrices only; paper grid 0.1 / 0.3 / 0.5."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from entrodrop_bench.registry import lazy_import
from entrodrop_bench.regularizer import Regularizer, RegularizerConfig, TableRole, register_regularizer

torch = lazy_import("torch")  # imported on first use: loading a config imports no torch


class WeightDecayConfig(RegularizerConfig):
    weight_decay: float = Field(0.1, ge=0, le=10, description="AdamW decoupled decay coefficient (paper grid: 0.1, 0.3, 0.5).")


@register_regularizer("weight_decay")
class WeightDecay(Regularizer):
    """Two optimizer groups: parameters with ndim >= 2 (embeddings, projections) decay; norms and biases do not."""

    Config = WeightDecayConfig
    config: WeightDecayConfig
    version = "1"

    @classmethod
    def table_role(cls, config: WeightDecayConfig) -> TableRole:
        return TableRole(label="+Weight Decay", rank=1)

    def param_groups(self, model: torch.nn.Module) -> list[dict[str, Any]]:
        params = [p for p in model.parameters() if p.requires_grad]  # tied weights appear once
        decay = [p for p in params if p.ndim >= 2]
        keep = [p for p in params if p.ndim < 2]
        groups = [{"params": decay, "weight_decay": self.config.weight_decay}, {"params": keep, "weight_decay": 0.0}]
        return [g for g in groups if g["params"]]
