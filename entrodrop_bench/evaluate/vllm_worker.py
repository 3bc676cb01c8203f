"""Runs inside vLLM's worker processes (`worker_extension_cls`): a checkpoint's weights loaded into the running model.

vLLM's own in-place reload (`Worker.reload_weights`, layer by layer, processed values copied into the tensors the
compiled graphs hold) skips what the checkpoint does not store. A tied LM head (tied word embeddings: the tiny
preset, Qwen3-0.6B/1.7B) stores nothing, so vLLM puts the head's old tensors back; on CPU the head multiplies
through a packed copy of its weight made when it was processed (`dispatch_cpu_unquantized_gemm`), which then keeps
the previous checkpoint's embeddings: the logits would come from the old head (seen here: a reused engine's
greedy text differed from a fresh engine's). So after the reload, each head whose weight is another layer's is
processed again from that (reloaded) weight, and every head is checked to compute what its weight says.

Imported by vLLM in each worker; it imports vllm and torch, never this project's heavier modules.
"""

from __future__ import annotations

from typing import Any

PROBE_ATOL = 1e-4
"""Largest |difference| between a head's logits through its kernel and `probe @ weight.T` (fp32 noise is ~1e-6)."""


class CheckpointWeights:
    """Mixed into vLLM's worker class; called as `llm.collective_rpc("load_checkpoint_weights", kwargs=...)`."""

    def load_checkpoint_weights(self, path: str) -> dict[str, Any]:
        """Load the weights of the HF folder `path` in place; returns what was re-processed, for the caller's log."""
        self.reload_weights(weights_path=path)  # type: ignore[attr-defined]  # the vLLM worker's method
        model = self.model_runner.get_model()  # type: ignore[attr-defined]
        heads = _tied_heads(model)
        for head in heads:
            head.quant_method.process_weights_after_loading(head)
        _check_heads(model)
        return {"path": path, "reprocessed_tied_heads": len(heads)}


def _heads(model: Any) -> list[Any]:
    from vllm.model_executor.layers.vocab_parallel_embedding import ParallelLMHead

    return [m for m in model.modules() if isinstance(m, ParallelLMHead)]


def _tied_heads(model: Any) -> list[Any]:
    """LM heads whose weight tensor is also another module's (tied word embeddings)."""
    owners: dict[int, int] = {}
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if weight is not None and hasattr(weight, "data_ptr") and weight.numel():
            owners[weight.data_ptr()] = owners.get(weight.data_ptr(), 0) + 1
    return [h for h in _heads(model) if h.weight.numel() and owners.get(h.weight.data_ptr(), 0) > 1]


def _check_heads(model: Any) -> None:
    """Each head's kernel (a packed copy on CPU) computes what its weight holds; raises otherwise."""
    import torch

    for head in _heads(model):
        weight = head.weight
        if not weight.numel() or weight.is_meta:
            continue
        generator = torch.Generator(device="cpu").manual_seed(0)
        probe = torch.randn(2, weight.shape[1], generator=generator).to(device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            got = head.quant_method.apply(head, probe)
            want = torch.nn.functional.linear(probe, weight)
        tol = PROBE_ATOL if weight.dtype == torch.float32 else 5e-2 * float(want.abs().max())
        if got.shape != want.shape or float((got.float() - want.float()).abs().max()) > tol:
            raise RuntimeError("after loading new weights the LM head's kernel computes other logits than its weight "
                               "(a stale packed copy): the engine would generate with the previous checkpoint's head")
