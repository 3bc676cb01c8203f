"""The files `prepare` writes: `PreparedRecord` (prepared.json), `GateShares` (cache/gate_shares.json) and
`SampleEntropy` (the sample of per-token entropies Figure 2c draws)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, model_validator

from entrodrop_bench import RUN_FORMAT_VERSION
from entrodrop_bench.artifacts.base import Artifact
from entrodrop_bench.paths import Layout


class CorpusRecord(BaseModel):
    """Size and content hash of one tokenized corpus."""

    model_config = ConfigDict(extra="forbid")

    docs: int
    """Number of documents."""
    tokens: int
    """Number of tokens."""
    hash: str
    """The corpus's fingerprint (`prepare.fingerprints.corpus_fingerprint`)."""


class PreparedRecord(Artifact):
    """What `prepare` produced for an experiment; its format is the format of the whole runs directory."""

    FORMAT: ClassVar[int] = RUN_FORMAT_VERSION
    STAGE: ClassVar[str] = "prepare CONFIG"
    # prepare refuses a runs directory of another format, so re-running it alone does not help.
    REMEDY: ClassVar[str] = "use another output.runs_dir or delete the old runs, then re-run `entrodrop-bench {stage}`"

    config_hash: str
    """`ExperimentConfig.config_hash()` of the config that was prepared."""
    model_path: str
    """The base model's local folder or hub id."""
    tokenizer_hash: str
    """The tokenizer's fingerprint (`prepare.fingerprints.tokenizer_fingerprint`)."""
    target_train: CorpusRecord
    """The target corpus's training split."""
    target_val: CorpusRecord
    """The target corpus's held-out validation split."""
    general: CorpusRecord
    """The general-domain corpus mixed into training."""
    plan: dict[str, Any]
    """The token-budget plan (`TrainingPlan.to_json()`)."""
    writer_rank: int
    """Rank of the process that wrote the record (0 unless launched oddly)."""

    @classmethod
    def path(cls, layout: Layout) -> Path:
        return layout.prepared_file


class GateShare(BaseModel):
    """How much of the target training corpus one masking run's gate passes (`Regularizer.token_gates` over the
    signal the method declares; a method without signals has no gate and passes every eligible token)."""

    model_config = ConfigDict(extra="forbid")

    key: str
    """Hash of what it was measured from (the fingerprints of the target corpus, the tokenizer and the base model's
    weights, the plugin and its gate settings); another key is re-measured."""
    signal: str | None
    """The base-model signal the gate read (None: no gate)."""
    eligible_tokens: int
    """Target training tokens any token dropout may touch (not a document's first token, not special)."""
    gated_tokens: int
    """Of those, the tokens the gate passes."""
    gated_fraction: float
    """`gated_tokens / eligible_tokens`: the g of a rate-matched gamma_max (`baselines.masking`)."""


class GateShares(Artifact):
    """Per run of a masking method (one that declares `expected_masked_fraction`), its gated share of the eligible
    target training tokens, measured once by `prepare`; rate-matched runs resolve their gamma_max from it."""

    FORMAT: ClassVar[int] = 1
    STAGE: ClassVar[str] = "prepare CONFIG"

    runs: dict[str, GateShare]
    """Run name -> its gate share."""

    @classmethod
    def path(cls, layout: Layout) -> Path:
        return layout.gate_shares_file


class SampleEntropy(Artifact):
    """One target validation document as the base model sees it, for Figure 2c: its tokens, their entropy
    and which of them any token dropout may touch (the report draws the proposed method's gate over it).

    On disk a JSON object without a format marker (format 1). Files of versions before `eligible` held `gated`
    instead; they are refused, and re-running prepare rewrites them."""

    FORMAT: ClassVar[int] = 1
    STAGE: ClassVar[str] = "prepare CONFIG"
    REMEDY: ClassVar[str] = "re-run `entrodrop-bench {stage}` to rewrite it"

    tokens: list[str]
    """Each token of the document, decoded on its own."""
    entropy: list[float | None]
    """The base model's entropy at each token; null where it has none (the first token, special tokens)."""
    eligible: list[bool]
    """Whether token dropout may touch each token (finite entropy, not a special token)."""

    @model_validator(mode="after")
    def _same_length(self) -> SampleEntropy:
        if not len(self.tokens) == len(self.entropy) == len(self.eligible):
            raise ValueError(f"tokens ({len(self.tokens)}), entropy ({len(self.entropy)}) and eligible "
                             f"({len(self.eligible)}) differ in length")
        return self

    @classmethod
    def path(cls, layout: Layout) -> Path:
        return layout.sample_entropy_file

    @classmethod
    def from_data(cls, data: Any, path: Path | str = "<data>") -> SampleEntropy:
        if isinstance(data, dict) and "format_version" not in data:
            data = {**data, "format_version": 1}
        return super().from_data(data, path)

    def render(self) -> str:
        return json.dumps(self.model_dump(exclude={"format_version"}), indent=2) + "\n"
