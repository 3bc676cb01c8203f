"""`train:`: optimizer, schedule, batch, seeds and precision, identical for every method."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from entrodrop_bench.config.base import Section, Seed
from entrodrop_bench.errors import shown
from entrodrop_bench.validation import FieldProblem


class TrainConfig(Section):
    lr: float = Field(1e-3, gt=0)
    """Peak learning rate."""
    schedule: Literal["cosine", "constant"] = "cosine"
    """Learning-rate schedule after the warmup: cosine decay to 0 at the last step, or constant at `lr`."""
    warmup_fraction: float = Field(0.02, ge=0, lt=1)
    """Linear warmup, as a fraction of total steps."""
    global_batch_tokens: int = Field(4096, gt=0)
    """Tokens per optimizer step (sequences x seq_len), reached with gradient accumulation."""
    micro_batch_size: int = Field(16, gt=0)
    """Sequences per forward pass on one device."""
    grad_clip: float = Field(1.0, gt=0)
    """Clip the global gradient norm of each optimizer step to this value."""
    checkpoint_every_epochs: float = Field(1.0, gt=0)
    """Checkpoint interval, in target-domain epochs."""
    keep_checkpoints: int | None = Field(None, gt=0)
    """Keep only the newest N checkpoints (None keeps all: every one is evaluated)."""
    seeds: list[Seed] = Field(default_factory=lambda: [0], min_length=1)
    """Training seeds, each its own run folder (`seed<k>`): distinct integers in [0, 2**32)."""
    threads: int | None = Field(None, gt=0)
    """torch CPU threads per run, and of `prepare`'s own compute (tiny world pre-training, entropy pass; None: torch
    default)."""
    parallel_runs: int = Field(1, gt=0)
    """Runs trained side by side on CPU, one process each (two single-thread runs beat one two-thread run)."""
    precision: Literal["fp32", "bf16-mixed", "bf16-pure"] = "fp32"
    """`fp32`: fp32 weights, optimizer state and compute (the default, as in HF's Trainer). `bf16-mixed`:
    fp32 master weights and AdamW state, forward and backward under bf16 autocast (accelerate
    mixed_precision="bf16", on GPU and CPU alike); checkpoints are saved in fp32 so resumes are exact.
    `bf16-pure`: weights and AdamW state in bfloat16 (needs model.dtype: bfloat16), half the memory of
    fp32 master weights, but an update smaller than ~1/256 of a weight rounds away: at lr 1e-5 most
    elements never change (measured: 15% moved after 50 steps, against 100% in fp32)."""
    gradient_checkpointing: bool = False
    """Recompute each decoder layer's activations in the backward instead of storing them (HF
    `gradient_checkpointing_enable`, non-reentrant): activation memory drops from one copy per layer to
    one per layer boundary, for about a third more compute. Same gradients, up to float rounding."""
    chunked_loss: bool = True
    """Apply the LM head to chunks of at most 2^25 logits and recompute each chunk's logits in the backward,
    so a micro-batch's full [tokens x vocab] logits never exist (Qwen3, 4 x 4096 tokens: 10 GB of fp32
    logits, against 128 MiB per chunk). A micro-batch whose logits fit in one chunk (the tiny presets') takes
    the plain loss. On CUDA with `liger-kernel` installed (extra `gpu`), Liger's fused linear cross-entropy
    computes the training loss instead. False: always the plain loss over the full logits."""

    @model_validator(mode="after")
    def _distinct_seeds(self) -> TrainConfig:
        repeated = sorted({s for s in self.seeds if self.seeds.count(s) > 1})
        if repeated:
            raise FieldProblem("seeds", f"{shown(self.seeds)} repeats {shown(repeated)}: each seed is one run folder, so list each seed once")
        return self
