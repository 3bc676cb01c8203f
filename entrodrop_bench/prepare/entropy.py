"""Per-token signals of the frozen base model (next-token entropy or NLL), with an on-disk cache.

For token t of a document, the signal is computed from the base model's distribution p(. | x_<t):

- ``entropy``: H_t = -sum_v p(v | x_<t) log p(v | x_<t)   (the paper's H(x_t), Section 3.2)
- ``nll``:     -log p(x_t | x_<t)

Position 0 of every document has no context and gets NaN.

Memory stays bounded whatever vocab x seq_len is: the pass runs the decoder body only
(``model.model(...)``, last hidden state), then applies the LM head to chunks of `token_chunk`
hidden rows; with `vocab_chunk` it also streams over slices of the vocabulary with an online
logsumexp, so neither full fp32 logits nor a softmax copy of a whole batch ever exists.

Documents longer than `seq_len` are processed in windows of `seq_len` tokens with a one-token overlap
(window k starts at k * (seq_len - 1)), so every token but the first has a prediction; context restarts
at each window, as it does at the row boundaries of packed training rows.

Batches are right-padded without an attention mask: with causal attention, real positions never
attend to the padding that follows them, so their outputs are exactly those of an unpadded pass.

The cache (`cached_token_signals`) is one safetensors file (no pickle) holding `values` (float32) and
`offsets` (int64); its metadata stores the key parts (weights, tokenizer and corpus fingerprints of
`prepare.fingerprints`,
seq_len, kind, code version). A file that is unreadable, truncated, or whose metadata or lengths do not
match is logged and recomputed; a matching file is reused without any forward pass.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from entrodrop_bench.atomic import json_sha256
from entrodrop_bench.errors import UserError
from entrodrop_bench.prepare.fingerprints import docs_fingerprint, tokenizer_fingerprint, weights_fingerprint

log = logging.getLogger(__name__)

CODE_VERSION = "1"
"""Bump when the computation changes in a way that changes values: old caches then stop matching."""

KINDS = ("entropy", "nll")
CHUNK_ELEMENTS = 1 << 25
"""Logit elements per chunk (32M fp32 = 128 MiB; the entropy needs two such temporaries)."""


# --------------------------------------------------------------------------------------------------
# The forward pass
# --------------------------------------------------------------------------------------------------
def _windows(lengths: np.ndarray, seq_len: int) -> list[tuple[int, int, int]]:
    """(doc, start, stop) of every window; a window predicts tokens start+1 .. stop-1."""
    stride = seq_len - 1
    out = []
    for d, n in enumerate(lengths.tolist()):
        for start in range(0, n - 1, stride):
            out.append((d, start, min(start + seq_len, n)))
    return out


def _lm_head(model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    cfg = getattr(model, "config", None)
    for attr, neutral in (("final_logit_softcapping", None), ("logit_scale", None), ("logits_scaling", 1.0)):
        value = getattr(cfg, attr, None)
        if value is not None and value != neutral:
            raise UserError(
                f"{type(model).__name__}: config.{attr}={value!r} transforms logits after the LM head; the chunked "
                "entropy pass in entrodrop_bench/prepare/entropy.py supports only plain linear heads (Qwen, Llama, ...)."
            )
    head = model.get_output_embeddings()
    if head is None or not hasattr(head, "weight"):
        raise UserError(f"{type(model).__name__} has no linear output embedding (get_output_embeddings()); cannot score tokens")
    return head.weight, getattr(head, "bias", None)


def _decoder(model: torch.nn.Module) -> torch.nn.Module:
    body = getattr(model, getattr(model, "base_model_prefix", "model"), None)
    if body is None or body is model:
        raise UserError(
            f"{type(model).__name__}: expected a causal LM wrapping a decoder body (model.{getattr(model, 'base_model_prefix', 'model')}); "
            "the entropy pass needs the body's last hidden state"
        )
    return body


def _rows_signal(
    h: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, kind: str, vocab_chunk: int | None
) -> torch.Tensor:
    """Signal (float32) for hidden rows h [c, d] predicting `targets` [c]."""
    vocab = weight.shape[0]
    if vocab_chunk is None or vocab_chunk >= vocab:
        z = torch.nn.functional.linear(h, weight, bias).float()
        lse = torch.logsumexp(z, dim=-1)
        if kind == "nll":
            return lse - z.gather(1, targets[:, None]).squeeze(1)
        logp = z.sub_(lse[:, None])
        p = logp.exp()
        return -(p.mul_(logp)).sum(-1)
    # Streaming over vocab slices, relative to the running max m:
    # s = sum exp(z - m), t = sum exp(z - m) * (z - m); lse = m + log s; H = log s - t / s.
    m = s = t = None
    zt = torch.zeros(h.shape[0], dtype=torch.float32, device=h.device)
    for v0 in range(0, vocab, vocab_chunk):
        v1 = min(v0 + vocab_chunk, vocab)
        z = torch.nn.functional.linear(h, weight[v0:v1], None if bias is None else bias[v0:v1]).float()
        if kind == "nll":
            inside = (targets >= v0) & (targets < v1)
            picked = z.gather(1, (targets - v0).clamp(0, v1 - v0 - 1)[:, None]).squeeze(1)
            zt = torch.where(inside, picked, zt)
        m_new = z.max(dim=-1).values if m is None else torch.maximum(m, z.max(dim=-1).values)
        u = z.sub_(m_new[:, None])
        e = u.exp()
        s_chunk, t_chunk = e.sum(-1), (e.mul_(u)).sum(-1)
        if m is None:
            s, t = s_chunk, t_chunk
        else:
            shift = m - m_new  # <= 0
            scale = shift.exp()
            s, t = s * scale + s_chunk, scale * (t + shift * s) + t_chunk
        m = m_new
    if kind == "nll":
        return m + s.log() - zt
    return s.log() - t / s


def _model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def token_signals(
    model: torch.nn.Module,
    docs: Sequence[Sequence[int]],
    *,
    kind: str = "entropy",
    seq_len: int,
    batch_size: int = 16,
    vocab_chunk: int | None = None,
    token_chunk: int | None = None,
    device: torch.device | str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-token signals of `docs` under `model`: flat float32 values (NaN at each document's position 0)
    and int64 offsets (len(docs) + 1).

    `device` None: CUDA when available, else the model's device. The model is moved there for the pass
    and moved back afterwards; it runs in eval mode (restored afterwards) under inference_mode.
    `token_chunk` (hidden rows per LM-head call) defaults to a budget of CHUNK_ELEMENTS logits.
    """
    if kind not in KINDS:
        raise UserError(f"signal kind {kind!r} is not one of {', '.join(KINDS)}")
    if seq_len < 2:
        raise UserError(f"seq_len {seq_len}: the entropy pass needs windows of at least 2 tokens")
    lengths = np.array([len(d) for d in docs], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    values = np.full(int(offsets[-1]), np.nan, dtype=np.float32)
    windows = _windows(lengths, seq_len)
    if not windows:
        return values, offsets

    home = _model_device(model)
    target = torch.device(device) if device is not None else (torch.device("cuda") if torch.cuda.is_available() else home)
    was_training = model.training
    model.to(target)
    model.eval()
    try:
        _run_pass(model, docs, windows, offsets, values, kind, batch_size, vocab_chunk, token_chunk, target)
    finally:
        model.train(was_training)
        model.to(home)
    return values, offsets


@torch.inference_mode()
def _run_pass(model, docs, windows, offsets, values, kind, batch_size, vocab_chunk, token_chunk, device) -> None:
    body = _decoder(model)
    weight, bias = _lm_head(model)
    per_row = min(vocab_chunk or weight.shape[0], weight.shape[0])
    chunk = token_chunk or max(1, CHUNK_ELEMENTS // per_row)
    # Longest first: similar lengths share a batch, and an out-of-memory error shows up at once.
    order = sorted(range(len(windows)), key=lambda i: windows[i][2] - windows[i][1], reverse=True)
    n_batches = math.ceil(len(order) / batch_size)
    for b, b0 in enumerate(range(0, len(order), batch_size)):
        if n_batches >= 20 and b % (n_batches // 10) == 0:
            log.info("%s pass: batch %d of %d", kind, b, n_batches)
        batch = [windows[i] for i in order[b0 : b0 + batch_size]]
        width = max(stop - start for _, start, stop in batch)
        ids = torch.zeros((len(batch), width), dtype=torch.long)
        dest = []
        for r, (d, start, stop) in enumerate(batch):
            ids[r, : stop - start] = torch.as_tensor(docs[d][start:stop], dtype=torch.long)
            dest.append(offsets[d] + np.arange(start + 1, stop))
        ids = ids.to(device)
        n_valid = torch.tensor([stop - start - 1 for _, start, stop in batch], device=device)
        valid = torch.arange(width - 1, device=device)[None, :] < n_valid[:, None]
        hidden = body(input_ids=ids, use_cache=False)[0]
        h = hidden[:, :-1][valid]
        targets = ids[:, 1:][valid]
        out = torch.cat(
            [_rows_signal(h[c : c + chunk], targets[c : c + chunk], weight, bias, kind, vocab_chunk) for c in range(0, h.shape[0], chunk)]
        )
        values[np.concatenate(dest)] = out.float().cpu().numpy()


# --------------------------------------------------------------------------------------------------
# Fingerprints and the cache key
# --------------------------------------------------------------------------------------------------
def signals_key_parts(
    model: torch.nn.Module, tokenizer: Any, docs: Sequence[Sequence[int]], *, seq_len: int, kind: str
) -> dict[str, str]:
    """Everything the cached values depend on, as strings (stored in the cache file's metadata)."""
    return {
        "weights": weights_fingerprint(model),
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "corpus": docs_fingerprint(docs),
        "seq_len": str(int(seq_len)),
        "kind": kind,
        "code_version": CODE_VERSION,
    }


def key_from_parts(parts: dict[str, str]) -> str:
    """Short, file-name-safe cache key: `<kind>-<sha256 prefix of the parts>`."""
    digest = json_sha256(parts, length=24)
    return f"{parts.get('kind', 'signal')}-{digest}"


def signals_cache_key(model: torch.nn.Module, tokenizer: Any, docs: Sequence[Sequence[int]], seq_len: int, kind: str) -> str:
    """The cache key of (base weights, tokenizer, corpus, seq_len, kind, code version); use it as the file stem."""
    return key_from_parts(signals_key_parts(model, tokenizer, docs, seq_len=seq_len, kind=kind))


# --------------------------------------------------------------------------------------------------
# The cache file
# --------------------------------------------------------------------------------------------------
def load_signals(cache_file: Path, expected: dict[str, str], offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Values and offsets from `cache_file` if it matches `expected` metadata and `offsets`; None (logged) otherwise."""
    from safetensors import safe_open

    if not cache_file.is_file():
        return None
    try:
        with safe_open(str(cache_file), framework="np") as f:
            meta = f.metadata() or {}
            values, stored_offsets = f.get_tensor("values"), f.get_tensor("offsets")
    except Exception as exc:  # truncated, garbage, missing tensors: all mean "recompute"
        log.warning("signal cache %s is unreadable (%s: %s); recomputing", cache_file, type(exc).__name__, exc)
        return None
    stale = {k: (meta.get(k), v) for k, v in expected.items() if meta.get(k) != v}
    if stale:
        log.warning("signal cache %s is stale (%s); recomputing", cache_file, ", ".join(f"{k}: {a!r} != {b!r}" for k, (a, b) in stale.items()))
        return None
    if values.dtype != np.float32 or not np.array_equal(stored_offsets, offsets) or len(values) != int(offsets[-1]):
        log.warning("signal cache %s has wrong lengths for this corpus; recomputing", cache_file)
        return None
    return values, stored_offsets.astype(np.int64)


def save_signals(cache_file: Path, values: np.ndarray, offsets: np.ndarray, metadata: dict[str, str]) -> None:
    """Write the cache atomically (temp file + rename)."""
    from safetensors.numpy import save_file

    from entrodrop_bench.atomic import atomic_path
    from entrodrop_bench.distributed import process_rank

    meta = {**metadata, "key": cache_file.stem, "writer_rank": str(process_rank()), "n_docs": str(len(offsets) - 1), "n_tokens": str(len(values)),
            "created": datetime.now(timezone.utc).isoformat()}
    with atomic_path(cache_file) as tmp:
        save_file({"values": np.ascontiguousarray(values, dtype=np.float32), "offsets": np.ascontiguousarray(offsets, dtype=np.int64)},
                  str(tmp), metadata=meta)


def cached_token_signals(
    model: torch.nn.Module,
    docs: Sequence[Sequence[int]],
    *,
    cache_file: Path,
    kind: str = "entropy",
    seq_len: int,
    key_parts: dict[str, str] | None = None,
    tokenizer: Any = None,
    compute: bool = True,
    **pass_kwargs: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """`token_signals`, reused from `cache_file` when it matches, else computed and saved there.

    The file is checked against the weights, corpus, seq_len, kind and code version computed now (plus
    `key_parts`, e.g. the tokenizer fingerprint, when given, or the tokenizer's when `tokenizer` is given).
    A file lock serializes processes that share the cache, so each signal set is computed once.
    `compute` False (a process that only reads what the main process prepared): a missing cache is an error.
    """
    from filelock import FileLock

    cache_file = Path(cache_file)
    expected = {
        "weights": weights_fingerprint(model),
        "corpus": docs_fingerprint(docs),
        "seq_len": str(int(seq_len)),
        "kind": kind,
        "code_version": CODE_VERSION,
    }
    if tokenizer is not None:
        expected["tokenizer"] = tokenizer_fingerprint(tokenizer)
    expected.update(key_parts or {})
    lengths = np.array([len(d) for d in docs], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    if not compute:  # a reader: the writer's file is complete or absent (atomic writes), so no lock to take
        hit = load_signals(cache_file, expected, offsets)
        if hit is None:
            raise UserError(f"signal cache {cache_file} is missing or stale for a process that only reads what the prepare "
                            "stage wrote: run `entrodrop-bench prepare CONFIG` (every process must see the same "
                            "output.runs_dir, a shared filesystem)")
        return hit
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache_file) + ".lock"):
        hit = load_signals(cache_file, expected, offsets)
        if hit is not None:
            log.info("signal cache hit: %s", cache_file)
            return hit
        log.info("computing %s signals of %d documents (%d tokens) -> %s", kind, len(docs), int(offsets[-1]), cache_file)
        values, offsets = token_signals(model, docs, kind=kind, seq_len=seq_len, **pass_kwargs)
        save_signals(cache_file, values, offsets, expected)
    return values, offsets
