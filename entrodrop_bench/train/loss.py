"""Next-token cross-entropy that never holds a whole micro-batch's logits.

The naive loss applies the LM head to every position at once: for Qwen3 (151,936-token vocabulary) a
4 x 4096 micro-batch makes 2.5G logits, 10 GB in fp32 before the log-softmax and its gradient. Here the
LM head is applied to chunks of at most `chunk_elements` logits; each chunk's logits are freed after its
per-token losses are taken and recomputed in the backward (a custom autograd Function that writes each
chunk's gradients into a single buffer), so besides the gradients peak memory is a few chunks whatever
the batch, at the price of one extra LM-head matmul.

The chunked loss runs *inside* the model's own forward: the LM head's forward is swapped, for that call
only, for one that returns per-token losses instead of logits. The model is still called through
whatever wrapper holds it (accelerate, DDP, FSDP), whose hooks (gradient sync, parameter gathering,
autocast) therefore see an ordinary forward; the caller reads the losses from the output's `logits`.

On CUDA with `liger-kernel` installed (extra `gpu`), training uses Liger's fused linear cross-entropy
instead (fused Triton kernels, gradients computed in the forward); it returns only the summed loss.

A method that defines its own per-token loss (`Regularizer.token_loss`, e.g. label smoothing) takes the same
paths with its loss in place of the cross-entropy: on the full logits, or chunk by chunk, where the backward
recomputes each chunk's logits and differentiates the method's loss of them with autograd (memory stays a few
chunks). Liger's kernel computes the cross-entropy only, so such a method never takes it.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator

import torch

from entrodrop_bench.errors import UserError
from entrodrop_bench.prepare.data import IGNORE_INDEX

TokenLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""A method's per-token training loss: fp32 logits [N, V] and targets [N] (IGNORE_INDEX where nothing is predicted)
-> losses [N], 0 on ignored rows (`Regularizer.token_loss`)."""

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


def losses_and_entropy(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row next-token loss and predictive entropy of fp32 logits [N, V] against targets [N], from one
    log-softmax (cross-entropy is nll_loss of it); the entropy carries no gradient."""
    logp = torch.log_softmax(logits, dim=-1)
    losses = torch.nn.functional.nll_loss(logp, targets, ignore_index=IGNORE_INDEX, reduction="none")
    with torch.no_grad():
        return losses, -(logp.exp() * logp).sum(dim=-1)


class _ChunkedCrossEntropy(torch.autograd.Function):
    """Per-token next-token losses of hidden rows h [N, H] under the head (weight [V, H], bias), chunk by chunk.

    The forward keeps only its inputs; the backward rebuilds each chunk's logits and writes that chunk's
    gradients straight into one grad_h and one grad_weight buffer, so besides the gradients themselves only a
    chunk's logits (and their softmax) exist at any time. Matmuls run in `compute_dtype` (bf16 under
    autocast), softmax and loss in fp32, gradients accumulate in the parameters' dtype.
    """

    @staticmethod
    def forward(ctx, h, weight, bias, targets, rows_per_chunk: int, entropy_out: torch.Tensor | None,
                token_loss: TokenLoss | None, compute_dtype: torch.dtype):
        w, b = weight.to(compute_dtype), None if bias is None else bias.to(compute_dtype)
        losses = torch.empty(len(targets), dtype=torch.float32, device=h.device)
        for s in range(0, len(targets), rows_per_chunk):
            z = torch.nn.functional.linear(h[s : s + rows_per_chunk].to(compute_dtype), w, b).float()
            t = targets[s : s + rows_per_chunk]
            if token_loss is not None:  # the method's own loss; the entropy, when asked, from the same logits
                losses[s : s + rows_per_chunk] = token_loss(z, t)
                if entropy_out is not None:
                    logp = torch.log_softmax(z, dim=-1)
                    entropy_out[s : s + rows_per_chunk] = -(logp.exp() * logp).sum(dim=-1)
                continue
            if entropy_out is None:
                losses[s : s + rows_per_chunk] = torch.nn.functional.cross_entropy(z, t, ignore_index=IGNORE_INDEX, reduction="none")
                continue
            # The predictive entropy from the same chunk's logits: no second LM-head pass, one more pass over them.
            losses[s : s + rows_per_chunk], entropy_out[s : s + rows_per_chunk] = losses_and_entropy(z, t)
        ctx.save_for_backward(h, weight, bias, targets)
        ctx.rows_per_chunk, ctx.compute_dtype, ctx.token_loss = rows_per_chunk, compute_dtype, token_loss
        return losses

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_losses):
        h, weight, bias, targets = ctx.saved_tensors
        step, dtype = ctx.rows_per_chunk, ctx.compute_dtype
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        w, b = weight.to(dtype), None if bias is None else bias.to(dtype)
        grad_h = torch.empty_like(h) if need_h else None
        grad_w = torch.zeros_like(weight) if need_w else None
        grad_b = torch.zeros_like(bias) if need_b else None
        for s in range(0, len(targets), step):
            hc, t = h[s : s + step].to(dtype), targets[s : s + step]
            if ctx.token_loss is not None:
                dz = _loss_logit_grad(ctx.token_loss, torch.nn.functional.linear(hc, w, b).float(), t, grad_losses[s : s + step])
            else:
                valid = t != IGNORE_INDEX
                # d(loss_i)/d(z_i) = softmax(z_i) - onehot(t_i), times the incoming gradient; zero on ignored rows.
                dz = torch.softmax(torch.nn.functional.linear(hc, w, b).float(), dim=-1)
                dz.scatter_add_(1, t.clamp(min=0)[:, None], -valid.to(dz.dtype)[:, None])  # no boolean index: no host sync
                dz.mul_((grad_losses[s : s + step] * valid)[:, None])
            dz = dz.to(dtype)
            if need_h:
                grad_h[s : s + step] = dz @ w
            if need_w:
                grad_w.add_(dz.t() @ hc) if dtype != grad_w.dtype else grad_w.addmm_(dz.t(), hc)
            if need_b:
                grad_b.add_(dz.sum(0))
        return grad_h, grad_w, grad_b, None, None, None, None, None


def _loss_logit_grad(token_loss: TokenLoss, z: torch.Tensor, targets: torch.Tensor, grad_losses: torch.Tensor) -> torch.Tensor:
    """d(sum_i grad_losses_i * token_loss(z, targets)_i) / dz for one chunk's fp32 logits, by autograd."""
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        (dz,) = torch.autograd.grad(token_loss(z, targets), z, grad_losses)
    return dz


def _compute_dtype(device: torch.device, weight: torch.Tensor) -> torch.dtype:
    """The dtype autocast would run the LM head in here, else the weight's own."""
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return weight.dtype


def chunked_token_losses(
    hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, labels: torch.Tensor, *,
    chunk_elements: int = LOSS_CHUNK_ELEMENTS, entropy_out: torch.Tensor | None = None, token_loss: TokenLoss | None = None,
) -> torch.Tensor:
    """Per-token losses [B, T-1] of hidden states [B, T, H] under the head (weight, bias), labels [B, T].

    Same values and gradients as `naive_token_losses(linear(hidden, weight, bias), labels)` up to float
    rounding, holding at most `chunk_elements` logits at a time (their recompute in the backward included).
    `entropy_out` (float32, B * (T-1) elements): filled with each position's predictive entropy, from the same logits.
    `token_loss`: a method's per-token loss in place of the cross-entropy (`TokenLoss`).
    """
    b, t, d = hidden.shape
    h = hidden[:, :-1].reshape(-1, d)
    targets = labels[:, 1:].reshape(-1)
    rows = max(1, chunk_elements // weight.shape[0])
    dtype = _compute_dtype(hidden.device, weight)  # read while the caller's autocast is still on
    with torch.autocast(hidden.device.type, enabled=False):  # the Function casts explicitly, forward and backward
        return _ChunkedCrossEntropy.apply(h, weight, bias, targets, rows, entropy_out, token_loss, dtype).view(b, t - 1)


def liger_available(device: torch.device) -> bool:
    """Liger's fused kernels are Triton/CUDA only; on CPU the chunked torch path is always used."""
    if device.type != "cuda":
        return False
    try:
        import liger_kernel.transformers.functional  # noqa: F401
    except ImportError:
        return False
    return True


LIGER_MIN_VERSION = "0.6.2"
"""The first liger-kernel whose fused linear cross-entropy takes `accum_dtype`."""


def liger_loss_sum(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, labels: torch.Tensor, *,
                   compute_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Summed next-token loss through Liger's fused linear cross-entropy (CUDA only).

    Triton kernels do not autocast: under autocast (or with `compute_dtype`) the hidden states and the head weight
    are handed to Liger in the compute dtype, and Liger is told to accumulate the head's weight (and bias) gradient
    over the micro-batch's tokens in fp32 (`accum_dtype`). Without it that sum runs in bf16, and so does the tied
    input embedding's share of the gradient. Only the finished per-micro-batch gradient is then rounded to the
    compute dtype, as autocast does for every other matmul's weight gradient, and accumulates into the fp32
    master weight's gradient."""
    from liger_kernel.transformers.functional import liger_fused_linear_cross_entropy

    h = hidden[:, :-1].reshape(-1, hidden.shape[-1])
    if compute_dtype is None and torch.is_autocast_enabled(hidden.device.type):
        compute_dtype = torch.get_autocast_dtype(hidden.device.type)
    accum = {}
    if compute_dtype is not None and compute_dtype != weight.dtype:
        h, weight = h.to(compute_dtype), weight.to(compute_dtype)
        bias = None if bias is None else bias.to(compute_dtype)
        accum = {"accum_dtype": torch.float32}
        if "accum_dtype" not in inspect.signature(liger_fused_linear_cross_entropy).parameters:
            raise UserError(f"liger-kernel is too old to accumulate the LM head's gradient in fp32 under {compute_dtype} "
                            f"(no accum_dtype); install liger-kernel>={LIGER_MIN_VERSION} (pip install -e .[gpu])")
    with torch.autocast(hidden.device.type, enabled=False):
        out = liger_fused_linear_cross_entropy(h, weight, labels[:, 1:].reshape(-1), bias, ignore_index=IGNORE_INDEX,
                                               reduction="sum", **accum)
    return (out[0] if isinstance(out, tuple) else out).float()


@contextlib.contextmanager
def head_returns_losses(head: torch.nn.Module, labels: torch.Tensor, *, chunk_elements: int, fused: bool,
                        entropy_out: torch.Tensor | None = None, token_loss: TokenLoss | None = None) -> Iterator[None]:
    """Inside this block, `head(hidden)` returns the per-token losses [B, T-1] (or, `fused`, Liger's summed
    loss as a [1, 1] tensor) instead of logits, and fills `entropy_out` when given (not with `fused`). An instance
    attribute shadows the class's forward, so module hooks still run; it is removed on exit."""

    def forward(hidden: torch.Tensor) -> torch.Tensor:
        if fused:
            return liger_loss_sum(hidden, head.weight, head.bias, labels).view(1, 1)
        return chunked_token_losses(hidden, head.weight, head.bias, labels, chunk_elements=chunk_elements, entropy_out=entropy_out,
                                    token_loss=token_loss)

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
    loss_sum, per_token, _ = forward_losses(model, batch, chunk_elements=chunk_elements, fused=fused)
    return loss_sum, per_token


def forward_losses(
    model: torch.nn.Module, batch: dict[str, torch.Tensor], *, chunk_elements: int | None = LOSS_CHUNK_ELEMENTS,
    fused: bool = False, entropy: bool = False, token_loss: TokenLoss | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """`step_loss`, plus, with `entropy`, each position's predictive entropy [B, T-1] (fp32, no gradient) from the
    same forward's logits (never through Liger, which keeps no logits). `token_loss`: a method's per-token loss in
    place of the cross-entropy (never through Liger either)."""
    labels = batch["labels"]
    # No attention mask and no cache: transformers then reads the per-document position ids as packed
    # sequences and builds a block-diagonal causal mask, so documents in a row never attend to each other.
    inputs = {"input_ids": batch["input_ids"], "position_ids": batch["position_ids"], "use_cache": False}
    head = linear_head(model) if chunk_elements is not None else None
    n_logits = labels[:, 1:].numel() * (head.weight.shape[0] if head is not None else 0)
    use_liger = (fused and not entropy and token_loss is None and head is not None and torch.is_grad_enabled()
                 and liger_available(labels.device))
    if head is None or (n_logits <= chunk_elements and not use_liger):
        logits = model(**inputs).logits
        if token_loss is not None:
            return _full_logits_method_loss(logits, labels, token_loss, entropy)
        if not entropy:
            per_token = naive_token_losses(logits, labels)
            return per_token.sum(), per_token, None
        b, t, vocab = logits.shape
        per_token, token_entropy = losses_and_entropy(logits[:, :-1].float().reshape(-1, vocab), labels[:, 1:].reshape(-1))
        per_token = per_token.view(b, t - 1)
        return per_token.sum(), per_token, token_entropy.view(b, t - 1)
    b, t = labels.shape
    entropy_out = torch.empty(b * (t - 1), dtype=torch.float32, device=labels.device) if entropy else None
    with head_returns_losses(head, labels, chunk_elements=chunk_elements, fused=use_liger, entropy_out=entropy_out,
                             token_loss=token_loss):
        out = model(**inputs).logits
    if use_liger:
        return out.reshape(()), None, None
    return out.sum(), out, None if entropy_out is None else entropy_out.view(b, t - 1)


def _full_logits_method_loss(logits: torch.Tensor, labels: torch.Tensor, token_loss: TokenLoss,
                             entropy: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """`forward_losses` on full logits [B, T, V] with a method's own per-token loss (and the entropy when asked)."""
    b, t, vocab = logits.shape
    z = logits[:, :-1].float().reshape(-1, vocab)
    per_token = token_loss(z, labels[:, 1:].reshape(-1)).view(b, t - 1)
    token_entropy = None
    if entropy:
        with torch.no_grad():
            logp = torch.log_softmax(z, dim=-1)
            token_entropy = (-(logp.exp() * logp).sum(dim=-1)).view(b, t - 1)
    return per_token.sum(), per_token, token_entropy
