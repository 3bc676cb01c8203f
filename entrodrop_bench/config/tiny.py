"""`tiny:`: how the embedded tiny preset generates its world (corpora, tokenizer, base model, benchmarks)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from entrodrop_bench.config.base import Section, Seed
from entrodrop_bench.validation import FieldProblem

TINY_SOURCES = ("tiny_math", "tiny_code", "tiny_general")  # the embedded world's corpora
TINY_MAX_POSITIONS = 1024
"""The tiny preset's model's `max_position_embeddings` (prepare.tiny.base_model builds it with this)."""


class TinyWorldConfig(Section):
    seed: Seed = 1234
    """Seed of the whole generated world: corpora, tokenizer, base model, benchmarks."""
    target_domain: Literal["math", "code"] = "math"
    """Domain of the generated target corpus and its benchmarks (`tiny_math` or `tiny_code`)."""
    n_target_docs: int = Field(250, gt=0)
    """Documents in the scarce target corpus (repeated for many epochs in training)."""
    n_general_docs: int = Field(20000, gt=0)
    """Documents in the general replay corpus."""
    n_benchmark: int = Field(200, gt=0)
    """Held-out examples per tiny benchmark."""
    vocab_size: int = Field(1024, gt=64)
    """Size of the tiny BPE tokenizer's vocabulary."""
    hidden_size: int = Field(128, gt=0)
    """Width of the tiny base model (a Qwen3-architecture decoder)."""
    num_layers: int = Field(3, gt=0)
    """Decoder layers of the tiny base model."""
    num_heads: int = Field(4, gt=0)
    """Attention heads; must divide hidden_size."""
    pretrain_tokens: int = Field(900_000, gt=0)
    """General plus domain-format tokens the tiny base model is pre-trained on."""
    pretrain_domain_fraction: float = Field(0.6, ge=0, le=1)
    """Share of base pre-training spent on fresh domain-format text (never the target docs or benchmarks)."""

    @model_validator(mode="after")
    def _heads_divide(self) -> TinyWorldConfig:
        if self.hidden_size % self.num_heads:
            raise FieldProblem("num_heads", f"{self.num_heads} does not divide tiny.hidden_size {self.hidden_size}")
        return self
