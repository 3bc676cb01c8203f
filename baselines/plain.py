"""The plain continual pre-training baseline: no regularization (no weight decay, no dropout)."""

from __future__ import annotations

from entrodrop_bench.regularizer import Regularizer, RegularizerConfig, TableRole, register_regularizer


class PlainConfig(RegularizerConfig):
    """No parameters."""


@register_regularizer("plain")
class Plain(Regularizer):
    """Every hook is the base class's no-op: AdamW without weight decay, inputs untouched."""

    Config = PlainConfig
    version = "1"

    @classmethod
    def table_role(cls, config: PlainConfig) -> TableRole:
        return TableRole(label="Baseline", kind="baseline", rank=0)
