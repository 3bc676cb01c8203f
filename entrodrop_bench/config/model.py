"""`model:`: the base model every method continues pre-training from."""

from __future__ import annotations

from typing import Literal

from entrodrop_bench.config.base import Section


class ModelConfig(Section):
    name_or_path: str = "tiny"
    """Hub id (e.g. Qwen/Qwen3-0.6B), a local HF folder, or `tiny` for the embedded tiny base model."""
    revision: str | None = None
    """Hub revision (commit or tag) to pin; recorded in the leaderboard."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Dtype the base model is read in (for the entropy pass) and every checkpoint is evaluated in. Training
    holds its own weights as `train.precision` says: fp32 master weights under `bf16-mixed` and `fp32`
    (upcast after reading, exact when the stored weights are in this dtype, as Qwen3 and Llama 3.1 are in
    bfloat16), bfloat16 weights under `bf16-pure`."""
    trust_remote_code: bool = False
    """Allow model code from the hub. Off by default; turning it on logs a warning."""
    pad_token: str | None = None
    """Token to pad with when the tokenizer defines none (Llama 3.1: <|finetune_right_pad_id|>)."""
