"""One fingerprint per kind of input a cache depends on: the tokenizer, a tokenized corpus, the base model's weights.

Every cache key of the prepare stage is made of these (the tokenized corpora, the base-model signal caches, the
gate shares) and `prepared.json` records them, so a cache can only be reused for the very inputs it was built from:
new weights at the same path re-key every cache that depends on them.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from entrodrop_bench.atomic import bytes_sha256

_WEIGHTS_MEMO: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> (signature, digest)
_VOLATILE_CONFIG_KEYS = {"transformers_version", "use_cache", "torch_dtype", "dtype", "architectures"}


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """sha256 (16 hex) of the tokenizer's full definition: the fast tokenizer's JSON (vocabulary, merges, added and
    special tokens, normalizer, pre-tokenizer), or the vocabulary of a slow one."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab(), sort_keys=True)
    return bytes_sha256(text.encode())[:16]


def corpus_fingerprint(tokens: np.ndarray, offsets: np.ndarray) -> str:
    """sha256 (16 hex) of a tokenized corpus: its token ids (int32) and document offsets (int64)."""
    h = hashlib.sha256(np.ascontiguousarray(tokens, dtype=np.int32).tobytes())
    h.update(np.ascontiguousarray(offsets, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


def docs_fingerprint(docs: Sequence[Sequence[int]]) -> str:
    """`corpus_fingerprint` of documents given as lists of token ids."""
    lengths = np.array([len(d) for d in docs], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    tokens = np.concatenate([np.asarray(d, dtype=np.int32) for d in docs]) if len(docs) else np.zeros(0, np.int32)
    return corpus_fingerprint(tokens, offsets)


def weights_fingerprint(model: torch.nn.Module) -> str:
    """sha256 of the state dict (names, dtypes, shapes, bytes) and the architecture-relevant config: what the model
    computes, wherever it was loaded from (new weights at the same path give another fingerprint).

    Memoized per model object while no tensor changes (tensor version counters), so asking twice costs nothing.
    """
    state = model.state_dict()
    signature = tuple((k, v.data_ptr(), v._version, str(v.device)) for k, v in state.items())
    memo = _WEIGHTS_MEMO.get(model)
    if memo is not None and memo[0] == signature:
        return memo[1]
    h = hashlib.sha256()
    cfg = getattr(model, "config", None)
    if cfg is not None and hasattr(cfg, "to_dict"):
        relevant = {k: v for k, v in cfg.to_dict().items() if not k.startswith("_") and k not in _VOLATILE_CONFIG_KEYS}
        h.update(json.dumps(relevant, sort_keys=True, default=str).encode())
    for name, tensor in state.items():
        t = tensor.detach()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.contiguous().reshape(-1).view(torch.uint8).cpu().numpy().tobytes())
    digest = h.hexdigest()
    _WEIGHTS_MEMO[model] = (signature, digest)
    return digest
