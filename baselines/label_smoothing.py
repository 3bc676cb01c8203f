"""Label smoothing (Szegedy et al., 2016): train against (1 - epsilon) x the next token + epsilon x uniform.

A loss-side method: the inputs, the model and the weights are untouched; the per-token training loss is
(1 - epsilon) x cross-entropy + epsilon x the mean over the vocabulary of -log p (torch's `label_smoothing`), on every
predicted token, target and general alike. Validation and evaluation keep the plain cross-entropy. Written against
the public plugin interface alone (`Regularizer.token_loss`), as a third-party plugin would be.
"""

from __future__ import annotations

from pydantic import Field

from entrodrop_bench.registry import lazy_import
from entrodrop_bench.regularizer import Regularizer, RegularizerConfig, TableRole, register_regularizer

F = lazy_import("torch.nn.functional")  # imported on first use: loading a config imports no torch


class LabelSmoothingConfig(RegularizerConfig):
    epsilon: float = Field(0.1, ge=0, lt=1, description="Probability mass spread uniformly over the vocabulary (0.1 is "
                                                        "the usual value; 0 is the plain cross-entropy).")


@register_regularizer("label_smoothing")
class LabelSmoothing(Regularizer):
    """Cross-entropy against smoothed targets."""

    Config = LabelSmoothingConfig
    config: LabelSmoothingConfig
    version = "1"

    @classmethod
    def table_role(cls, config: LabelSmoothingConfig) -> TableRole:
        return TableRole(label="+Label Smoothing", rank=5)

    def token_loss(self, logits, targets):
        return F.cross_entropy(logits, targets, ignore_index=-100, reduction="none", label_smoothing=self.config.epsilon)
