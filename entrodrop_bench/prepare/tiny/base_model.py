"""The tiny Qwen3 base model: built from the world config and briefly pre-trained with a plain AdamW loop."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import torch

from entrodrop_bench.config import TINY_MAX_POSITIONS

PRETRAIN_SEQ_LEN = 128
# Small batches: the copy-and-compute skill of the math format appears only after ~2k optimizer steps.
PRETRAIN_BATCH = 4
PRETRAIN_LR = 2e-3
PRETRAIN_WARMUP = 0.03
MAX_POSITIONS = TINY_MAX_POSITIONS


def make_model(tokenizer, hidden_size: int, num_layers: int, num_heads: int, seed: int):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    if hidden_size % num_heads:
        from entrodrop_bench.errors import ConfigError

        raise ConfigError(f"tiny.hidden_size {hidden_size} must be divisible by tiny.num_heads {num_heads}")
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=3 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        head_dim=hidden_size // num_heads,
        max_position_embeddings=MAX_POSITIONS,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        use_cache=True,
    )
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = None
    return model


def pack(docs: list[list[int]], seq_len: int, eos_id: int) -> torch.Tensor:
    """Concatenate documents (each followed by eos) into rows of seq_len tokens; the tail is dropped."""
    flat = np.fromiter((t for d in docs for t in (*d, eos_id)), dtype=np.int64)
    n_rows = len(flat) // seq_len
    return torch.from_numpy(flat[: n_rows * seq_len].reshape(n_rows, seq_len))


def cosine_lr(step: int, total: int, peak: float, warmup_fraction: float) -> float:
    warmup = max(1, int(total * warmup_fraction))
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def pretrain(model, rows: torch.Tensor, *, seed: int, lr: float | None = None, batch: int | None = None,
             log: Callable[[str], None] = print) -> list[float]:
    """One pass over shuffled packed rows with AdamW + cosine; returns the per-step training losses."""
    lr, batch = lr or PRETRAIN_LR, batch or PRETRAIN_BATCH
    gen = torch.Generator().manual_seed(seed)
    order = rows[torch.randperm(len(rows), generator=gen)]
    total = max(1, len(order) // batch)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.01)
    model.train()
    losses, tic = [], time.perf_counter()
    for step in range(total):
        for group in opt.param_groups:
            group["lr"] = cosine_lr(step, total, lr, PRETRAIN_WARMUP)
        x = order[step * batch : (step + 1) * batch]
        loss = model(input_ids=x, labels=x, use_cache=False).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if step % max(1, total // 5) == 0 or step == total - 1:
            log(f"tiny world: pretrain step {step + 1}/{total} loss {np.mean(losses[-20:]):.3f} [{time.perf_counter() - tic:.0f}s]")
    model.eval()
    return losses
