"""Next-token cross-entropy that never holds a whole micro-batch's logits.

The naive loss applies the LM head to every position at once: for Qwen3 (151,936-token vocabulary) a
4 x 4096 micro-batch makes 2.5G logits, 10 GB in fp32 before the log-softmax and its gradient. Here the
LM head is applied to chunks of at most `chunk_elements` logits; each chunk's logits are freed after its
per-token losses are taken and recomputed in the backward (torch.utils.checkpoint per chunk), so peak
memory is a few chunks whatever the batch, at the price of one extra LM-head matmul.

The chunked loss runs *inside* the model's own forward: the LM head's forward is swapped, for that call
only, for one that returns per-token losses instead of logits. The model is still called through
whatever wrapper holds it (accelerate, DDP, FSDP), whose hooks (gradient sync, parameter gathering,
autocast) therefore see an ordinary forward; the caller reads the losses from the output's `logits`.

On CUDA with `liger-kernel` installed (extra `gpu`), training uses Liger's fused linear cross-entropy
instead (fused Triton kernels, gradients computed in the forward); it returns only the summed loss.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import torch
from torch.utils.checkpoint import checkpoint

from entrodrop_bench.data import IGNORE_INDEX

log = logging.getLogger(__name__)

LOSS_CHUNK_ELEMENTS = 1 << 25
"""Logits per LM-head chunk (32M: 128 MiB in fp32; Qwen3: 220 tokens, Llama 3.1: 261). A micro-batch whose
logits fit in one chunk takes the plain loss over the full logits, bitwise as before chunking existed."""

# Config attributes of HF models that transform logits after the LM head: the chunked loss would skip them.
_LOGIT_TRANSFORMS = (("final_logit_softcapping", None), ("logit_scale", None), ("logits_scaling", 1.0))


def causal_lm(model: torch.nn.Module) -> torch.nn.Module:
    """The HF causal LM inside any wrapper (DDP, FSDP, accelerate, torch.compile): the first module that has
    an output embedding."""
    for module in model.modules():
        if callable(getattr(module, "get_output_embeddings", None)) and module.get_output_embeddings() is not None:
            return module
    raise TypeError(f"{type(model).__name__} holds no module with an output embedding (get_output_embeddings())")


def linear_head(model: torch.nn.Module) -> torch.nn.Module | None:
    """The LM head if the logits are exactly `head(hidden)`, else None (the full-logits loss is then used)."""
    lm = causal_lm(model)
    cfg = getattr(lm, "config", None)
    if any(getattr(cfg, attr, None) not in (None, neutral) for attr, neutral in _LOGIT_TRANSFORMS):
        return None
    head = lm.get_output_embeddings()
    return head if isinstance(head, torch.nn.Linear) else None


def naive_token_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-token losses [B, T-1] of full logits [B, T, V] against labels [B, T] (the reference path)."""
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].float().transpose(1, 2), labels[:, 1:], ignore_index=IGNORE_INDEX, reduction="none"
    )


def _chunk_losses(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor) -> torch.Tensor:
    logits = torch.nn.functional.linear(h, weight, bias)
    return torch.nn.functional.cross_entropy(logits.float(), targets, ignore_index=IGNORE_INDEX, reduction="none")


def chunked_token_losses(
    hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, labels: torch.Tensor, *, chunk_elements: int = LOSS_CHUNK_ELEMENTS
) -> torch.Tensor:
    """Per-token losses [B, T-1] of hidden states [B, T, H] under the head (weight, bias), labels [B, T].

    Same values as `naive_token_losses(linear(hidden, weight, bias), labels)` up to float rounding; under
    autograd each chunk is checkpointed, so only its inputs are kept and its logits are rebuilt in the backward.
    """
    b, t, d = hidden.shape
    h = hidden[:, :-1].reshape(-1, d)
    targets = labels[:, 1:].reshape(-1)
    step = max(1, chunk_elements // weight.shape[0])
    keep_graph = torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad)
    parts = []
    for start in range(0, len(targets), step):
        args = (h[start : start + step], weight, bias, targets[start : start + step])
        parts.append(checkpoint(_chunk_losses, *args, use_reentrant=False) if keep_graph else _chunk_losses(*args))
    return torch.cat(parts).view(b, t - 1)


def liger_available(device: torch.device) -> bool:
    """Liger's fused kernels are Triton/CUDA only; on CPU the chunked torch path is always used."""
    if device.type != "cuda":
        return False
    try:
        import liger_kernel.transformers.functional  # noqa: F401
    except ImportError:
        return False
    return True


def liger_loss_sum(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, labels: torch.Tensor) -> torch.Tensor:
    """Summed next-token loss through Liger's fused linear cross-entropy (CUDA only)."""
    from liger_kernel.transformers.functional import liger_fused_linear_cross_entropy

    h = hidden[:, :-1].reshape(-1, hidden.shape[-1])
    if torch.is_autocast_enabled("cuda"):  # Triton kernels do not autocast: hand them the compute dtype
        dtype = torch.get_autocast_dtype("cuda")
        h, weight = h.to(dtype), weight.to(dtype)
        bias = None if bias is None else bias.to(dtype)
    out = liger_fused_linear_cross_entropy(h, weight, labels[:, 1:].reshape(-1), bias, ignore_index=IGNORE_INDEX, reduction="sum")
    return (out[0] if isinstance(out, tuple) else out).float()


@contextlib.contextmanager
def head_returns_losses(head: torch.nn.Module, labels: torch.Tensor, *, chunk_elements: int, fused: bool) -> Iterator[None]:
    """Inside this block, `head(hidden)` returns the per-token losses [B, T-1] (or, `fused`, Liger's summed
    loss as a [1, 1] tensor) instead of logits. An instance attribute shadows the class's forward, so module
    hooks still run; it is removed on exit."""

    def forward(hidden: torch.Tensor) -> torch.Tensor:
        if fused:
            return liger_loss_sum(hidden, head.weight, head.bias, labels).view(1, 1)
        return chunked_token_losses(hidden, head.weight, head.bias, labels, chunk_elements=chunk_elements)

    head.forward = forward
    try:
        yield
    finally:
        del head.forward


def step_loss(
    model: torch.nn.Module, batch: dict[str, torch.Tensor], *, chunk_elements: int | None = LOSS_CHUNK_ELEMENTS, fused: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Summed next-token cross-entropy of a micro-batch and its per-token losses [B, T-1].

    `chunk_elements`: LM-head chunk size in logits (None: the full logits, always). `fused`: use Liger when
    it is available on the batch's device and gradients are being taken; the per-token losses are then None.
    """
    labels = batch["labels"]
    # No attention mask and no cache: transformers then reads the per-document position ids as packed
    # sequences and builds a block-diagonal causal mask, so documents in a row never attend to each other.
    inputs = {"input_ids": batch["input_ids"], "position_ids": batch["position_ids"], "use_cache": False}
    head = linear_head(model) if chunk_elements is not None else None
    n_logits = labels[:, 1:].numel() * (head.weight.shape[0] if head is not None else 0)
    use_liger = fused and head is not None and torch.is_grad_enabled() and liger_available(labels.device)
    if head is None or (n_logits <= chunk_elements and not use_liger):
        per_token = naive_token_losses(model(**inputs).logits, labels)
        return per_token.sum(), per_token
    with head_returns_losses(head, labels, chunk_elements=chunk_elements, fused=use_liger):
        out = model(**inputs).logits
    if use_liger:
        return out.reshape(()), None
    return out.sum(), out
