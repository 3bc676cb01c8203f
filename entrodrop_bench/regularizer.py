"""The regularizer plugin interface. Every method, EntroDrop included, is one of these.

A plugin is a class with a typed `Config` (pydantic) and no-op hooks that it may override:

    @register_regularizer("my_method")
    class MyMethod(Regularizer):
        class Config(RegularizerConfig):
            strength: float = Field(0.1, ge=0, le=1, description="...")

        def transform_embeddings(self, embeds, meta):
            ...

The training loop calls the hooks in this order: `prepare` once (before the optimizer exists),
`adjust_model` once, `param_groups` once, then `transform_embeddings` on every training micro-batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict

from entrodrop_bench.registry import Registry


class RegularizerConfig(BaseModel):
    """Base of every plugin's config: unknown keys are errors, not silently ignored, and so are inf and nan."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# Domains of a token, as stored in TokenMeta.domain.
GENERAL, TARGET = 0, 1


@dataclass
class TokenMeta:
    """Per-token metadata of one training micro-batch. Every tensor is [batch, seq_len] on the batch's device."""

    domain: torch.Tensor
    """GENERAL (0) or TARGET (1); padding carries GENERAL."""
    doc_id: torch.Tensor
    """Index of the token's document within its own corpus (target or general); -1 on padding."""
    position: torch.Tensor
    """Position of the token inside its document (0 = first token)."""
    is_special: torch.Tensor
    """True on special tokens (eos, bos, pad)."""
    is_pad: torch.Tensor
    """True on padding."""
    step: int
    """Optimizer step this micro-batch belongs to (0-based)."""
    total_steps: int
    """Total optimizer steps of the run."""
    generator: torch.Generator
    """RNG seeded from (seed, step, micro-batch): masks are a pure function of those, so resumes reproduce them."""

    @property
    def eligible(self) -> torch.Tensor:
        """Tokens a token-dropout method may touch: target domain, not first-of-document, not special or pad."""
        return (self.domain == TARGET) & (self.position > 0) & ~self.is_special & ~self.is_pad


@dataclass
class PrepareContext:
    """What a plugin may use to build its shared artifacts once, before training."""

    model: torch.nn.Module
    """The model about to be trained, still holding the base weights."""
    tokenizer: Any
    target_docs: list[list[int]]
    """Token ids of every target-domain training document, indexed by TokenMeta.doc_id."""
    cache_dir: Path
    """Where shared artifacts (the entropy cache) live; shared by every run of the experiment."""
    seq_len: int
    total_steps: int
    device: torch.device
    plain_min_val_step: int | None = None
    """Step at which the `plain` run of this experiment reached its minimum held-out validation loss, if known."""
    extra: dict[str, Any] = field(default_factory=dict)


class Regularizer:
    """Base class: every hook is a no-op, so a plugin overrides only what it changes."""

    Config: ClassVar[type[RegularizerConfig]] = RegularizerConfig
    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"

    def __init__(self, config: RegularizerConfig) -> None:
        self.config = config

    def prepare(self, ctx: PrepareContext) -> None:
        """Build artifacts shared by every epoch (EntroDrop's entropy cache, mean embedding)."""

    def adjust_model(self, model: torch.nn.Module) -> None:
        """Change the model before training (attach hidden-dropout hooks).

        Under `train.gradient_checkpointing` a hook inside a decoder layer runs twice per micro-batch (forward,
        then the recompute in the backward); randomness it draws from its own generator must repeat there
        (torch restores only its global RNG), as baselines/hidden_dropout.py does."""

    def param_groups(self, model: torch.nn.Module) -> list[dict[str, Any]]:
        """Optimizer parameter groups. Default: every trainable parameter, no weight decay."""
        return [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": 0.0}]

    def transform_embeddings(self, embeds: torch.Tensor, meta: TokenMeta) -> torch.Tensor:
        """Return the input embeddings [batch, seq, dim] to train on. Called in training mode only."""
        return embeds

    def log_values(self) -> dict[str, float]:
        """Scalars for the progress bar, TensorBoard and the step log (gamma, masked fraction...).

        Called once per optimizer step; report that step's values (reset any counters here). The trainer
        averages each over every logged step for the run's summary, so the summary survives a resume."""
        return {}


REGULARIZERS: Registry[type[Regularizer]] = Registry("regularizer", "entrodrop_bench.regularizers", builtin_modules=("baselines",))


def register_regularizer(name: str):
    """Class decorator: register a Regularizer subclass under `name`."""

    def decorator(cls: type[Regularizer]) -> type[Regularizer]:
        cls.name = name
        return REGULARIZERS.register(name)(cls)

    return decorator


def build_regularizer(plugin: str, params: dict[str, Any], *, key_path: str = "methods") -> Regularizer:
    """Instantiate a registered plugin from its name and params, validating params against its Config."""
    from entrodrop_bench.config import validate_model  # local: config imports this module

    cls = REGULARIZERS.get(plugin, key_path=f"{key_path}.plugin")
    config = validate_model(cls.Config, params, key_path=f"{key_path}.params")
    return cls(config)
