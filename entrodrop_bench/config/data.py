"""`data:`: the target and general corpora, their mix and the token budget."""

from __future__ import annotations

from pydantic import Field, model_validator

from entrodrop_bench.config.base import Section, Seed
from entrodrop_bench.validation import FieldProblem


class CorpusConfig(Section):
    source: str
    """`tiny_math`, `tiny_code`, `tiny_general` (embedded), a hub dataset id, or `json` with `path`."""
    path: str | None = None
    """Local file or folder (jsonl/json/parquet) to load instead of the hub; makes the run offline."""
    name: str | None = None
    """Hub dataset config name."""
    split: str = "train"
    """Dataset split to read (hub datasets and local files alike)."""
    text_fields: list[str] = Field(default_factory=lambda: ["text"], min_length=1)
    """Fields concatenated (newline-separated) into one document; e.g. [question, answer]."""
    max_unique_tokens: int | None = Field(None, gt=0)
    """Cap on unique tokens kept: whole documents in reading order, reading stops there (the paper's 0.02B
    target corpus; for a large general corpus, the general share of the token budget)."""
    shuffle_seed: Seed | None = None
    """Shuffle documents with this seed before reading, so that a cap keeps a random subset rather than the
    first documents of a corpus stored in source order. None reads in dataset order."""


class DataConfig(Section):
    target: CorpusConfig
    """The scarce domain corpus, repeated for many epochs."""
    general: CorpusConfig
    """The large replay corpus, sampled with negligible repetition."""
    mix_ratio: tuple[float, float] = (0.6, 0.4)
    """target:general share of the token budget; must sum to 1."""
    token_budget: int = Field(gt=0)
    """Total training tokens, identical for every method."""
    seq_len: int = Field(256, gt=1)
    """Packed sequence length."""
    validation_fraction: float = Field(0.05, gt=0, lt=1)
    """Share of target documents held out for validation loss (never trained on)."""
    max_validation_docs: int = Field(500, gt=0)
    """Cap on held-out validation documents, so that a validation pass stays short on a large target corpus."""

    @model_validator(mode="after")
    def _ratio_sums_to_one(self) -> DataConfig:
        ratio = list(self.mix_ratio)
        if any(r < 0 for r in ratio) or abs(sum(ratio) - 1.0) > 1e-6:
            raise FieldProblem("mix_ratio", f"{ratio} must be two non-negative numbers summing to 1 (target, general)")
        if ratio[0] <= 0:
            raise FieldProblem("mix_ratio", f"{ratio}: the target share must be above 0; checkpoints and epochs are "
                                            "counted in target-corpus epochs (e.g. [0.6, 0.4])")
        return self
