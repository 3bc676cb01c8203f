"""The chunked entropy / NLL pass against a full-softmax reference, and its on-disk cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from entrodrop_bench.prepare import entropy
from entrodrop_bench.prepare.entropy import cached_token_signals, signals_cache_key, token_signals
from entrodrop_bench.prepare.fingerprints import docs_fingerprint

VOCAB = 203


@pytest.fixture(scope="module")
def model():
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen3Config(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, max_position_embeddings=256, tie_word_embeddings=False,
    )
    m = Qwen3ForCausalLM(cfg).eval()
    with torch.no_grad():
        m.lm_head.weight.mul_(25)  # spread entropies over a wide range, from near 0 to near log(V)
    return m


def _docs(seed: int, lengths) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, VOCAB, (n,), generator=g).tolist() for n in lengths]


def _reference(model, docs, kind: str, seq_len: int) -> np.ndarray:
    """Full fp64 softmax per window of seq_len tokens (stride seq_len - 1), straight from model(...).logits."""
    out = []
    for d in docs:
        vals = np.full(len(d), np.nan)
        for start in range(0, len(d) - 1, seq_len - 1):
            stop = min(start + seq_len, len(d))
            with torch.no_grad():
                logp = model(torch.tensor([d[start:stop]])).logits[0, :-1].double().log_softmax(-1)
            nxt = torch.tensor(d[start + 1 : stop])
            v = -(logp.exp() * logp).sum(-1) if kind == "entropy" else -logp.gather(1, nxt[:, None]).squeeze(1)
            vals[start + 1 : stop] = v.numpy()
        out.append(vals)
    return np.concatenate(out)


CHUNKINGS = [
    {},
    {"vocab_chunk": 7},
    {"vocab_chunk": 64, "token_chunk": 5},
    {"token_chunk": 1, "batch_size": 3},
]


@pytest.mark.parametrize("kind", ["entropy", "nll"])
@pytest.mark.parametrize("chunking", CHUNKINGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "default")
def test_signals_match_full_softmax(model, kind, chunking):
    docs = _docs(1, [1, 2, 5, 17, 40, 33, 64])
    values, offsets = token_signals(model, docs, kind=kind, seq_len=64, device="cpu", **chunking)
    ref = _reference(model, docs, kind, 64)
    assert values.dtype == np.float32 and offsets.dtype == np.int64
    assert offsets.tolist() == [0, *np.cumsum([len(d) for d in docs]).tolist()]
    assert np.array_equal(np.isnan(values), np.isnan(ref))
    assert np.isnan(values[offsets[:-1]]).all()  # position 0 of every document: no context
    np.testing.assert_allclose(values, ref, atol=1e-4, rtol=0)
    if kind == "entropy":
        finite = values[np.isfinite(values)]
        assert finite.min() >= -1e-5 and finite.max() <= np.log(VOCAB) + 1e-4
        assert finite.max() - finite.min() > 1.0  # a real spread, so the comparison means something


@pytest.mark.parametrize("kind", ["entropy", "nll"])
def test_long_documents_use_overlapping_windows(model, kind):
    docs = _docs(2, [30, 8, 9, 3])
    values, offsets = token_signals(model, docs, kind=kind, seq_len=8, vocab_chunk=50, device="cpu")
    np.testing.assert_allclose(values, _reference(model, docs, kind, 8), atol=1e-4, rtol=0)
    # Only first-of-document positions lack a value: the one-token overlap covers window starts.
    assert np.flatnonzero(np.isnan(values)).tolist() == offsets[:-1].tolist()


def test_head_is_applied_in_bounded_chunks(model, monkeypatch):
    """The LM head never sees more than token_chunk rows nor produces more than vocab_chunk columns."""
    shapes = []
    real_linear = torch.nn.functional.linear

    def spy(x, w, b=None):
        out = real_linear(x, w, b)
        if x.dim() == 2:  # decoder layers see [batch, seq, d]; only the chunked head sees 2-D rows
            shapes.append(tuple(out.shape))
        return out

    monkeypatch.setattr(torch.nn.functional, "linear", spy)
    token_signals(model, _docs(3, [50, 50]), kind="entropy", seq_len=64, vocab_chunk=16, token_chunk=9, device="cpu")
    assert shapes and max(r for r, _ in shapes) <= 9 and max(c for _, c in shapes) <= 16
    # Every predicted token (2 x 49) went through every vocab slice (ceil(203 / 16) = 13).
    assert sum(r for r, _ in shapes) == 98 * 13 and sum(c for _, c in shapes[:13]) == VOCAB


def test_empty_and_single_token_documents(model):
    values, offsets = token_signals(model, [[], [5], [5, 6]], seq_len=16, device="cpu")
    assert offsets.tolist() == [0, 0, 1, 3]
    assert np.isnan(values[:2]).all() and np.isfinite(values[2])


def test_unknown_kind_is_an_error(model):
    from entrodrop_bench.errors import UserError

    with pytest.raises(UserError, match="entropy, nll"):
        token_signals(model, [[1, 2]], kind="surprise", seq_len=8)


def test_model_mode_and_device_restored(model):
    model.train()
    token_signals(model, [[1, 2, 3]], seq_len=8)
    assert model.training and next(model.parameters()).device.type == "cpu"
    model.eval()


# --------------------------------------------------------------------------------------------------
# Cache
# --------------------------------------------------------------------------------------------------
@pytest.fixture
def counting(model):
    """Number of decoder-body forward calls."""
    calls = {"n": 0}

    def hook(module, args, kwargs):
        calls["n"] += 1

    handle = model.model.register_forward_pre_hook(hook, with_kwargs=True)
    yield calls
    handle.remove()


class _Tok:
    """A minimal tokenizer: fingerprinted through its vocab and special ids."""

    def __init__(self, extra: str = "") -> None:
        self.extra = extra
        self.all_special_ids = [0, 1]

    def get_vocab(self) -> dict[str, int]:
        return {f"t{i}{self.extra}": i for i in range(VOCAB)}


def _cache(model, docs, tmp_path, kind="entropy", seq_len=32, tok=None):
    key = signals_cache_key(model, tok or _Tok(), docs, seq_len=seq_len, kind=kind)
    path = tmp_path / f"{key}.safetensors"
    return path, cached_token_signals(model, docs, cache_file=path, kind=kind, seq_len=seq_len, device="cpu")


def test_cache_is_reused_without_a_forward_pass(model, tmp_path, counting):
    docs = _docs(4, [20, 31, 7])
    path, (v1, o1) = _cache(model, docs, tmp_path)
    first = counting["n"]
    assert first > 0 and path.is_file()
    path2, (v2, o2) = _cache(model, docs, tmp_path)
    assert path2 == path and counting["n"] == first  # no forward at all
    assert np.array_equal(v1, v2, equal_nan=True) and np.array_equal(o1, o2)
    direct, _ = token_signals(model, docs, seq_len=32, device="cpu")
    assert np.array_equal(v1, direct, equal_nan=True)
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:
        meta = f.metadata()
    assert meta["key"] == path.stem and meta["kind"] == "entropy" and meta["seq_len"] == "32"
    assert meta["weights"] == entropy.weights_fingerprint(model) and meta["corpus"] == docs_fingerprint(docs)


def test_cache_invalidated_when_the_corpus_changes(model, tmp_path, counting):
    docs = _docs(5, [20, 31, 7])
    path, _ = _cache(model, docs, tmp_path)
    n = counting["n"]
    changed = [list(d) for d in docs]
    changed[1][3] = (changed[1][3] + 1) % VOCAB
    path2, (values, _) = _cache(model, changed, tmp_path)
    assert path2 != path and counting["n"] > n  # new key, new pass
    # The same file name given a different corpus (e.g. an edited corpus under an old key) is stale too.
    n = counting["n"]
    v, _ = cached_token_signals(model, changed, cache_file=path, kind="entropy", seq_len=32, device="cpu")
    assert counting["n"] > n and np.array_equal(v, values, equal_nan=True)


def test_key_depends_on_every_input(model):
    docs = _docs(6, [10, 12])
    base = signals_cache_key(model, _Tok(), docs, seq_len=32, kind="entropy")
    assert base == signals_cache_key(model, _Tok(), [list(d) for d in docs], seq_len=32, kind="entropy")
    others = {
        signals_cache_key(model, _Tok(), docs, seq_len=64, kind="entropy"),
        signals_cache_key(model, _Tok(), docs, seq_len=32, kind="nll"),
        signals_cache_key(model, _Tok("x"), docs, seq_len=32, kind="entropy"),
        signals_cache_key(model, _Tok(), [docs[0], docs[1][:-1]], seq_len=32, kind="entropy"),
    }
    assert base not in others and len(others) == 4
    # In-place weight changes of the same model object bump tensor versions: the fingerprint memo must not hide them.
    weight = model.model.norm.weight
    saved = weight.detach().clone()
    with torch.no_grad():
        weight.add_(1e-3)
    assert signals_cache_key(model, _Tok(), docs, seq_len=32, kind="entropy") != base
    with torch.no_grad():
        weight.copy_(saved)
    assert signals_cache_key(model, _Tok(), docs, seq_len=32, kind="entropy") == base


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "stale_version"])
def test_damaged_cache_is_recomputed(model, tmp_path, counting, damage, monkeypatch, caplog):
    docs = _docs(7, [25, 9])
    path, (good, _) = _cache(model, docs, tmp_path)
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00\x01not a safetensors file" * 10)
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        monkeypatch.setattr(entropy, "CODE_VERSION", "999")
    n = counting["n"]
    with caplog.at_level("WARNING", logger="entrodrop_bench.prepare.entropy"):
        v, _ = cached_token_signals(model, docs, cache_file=path, kind="entropy", seq_len=32, device="cpu")
    assert counting["n"] > n, "a damaged cache must trigger a new pass"
    assert any(("unreadable" in r.message or "stale" in r.message) for r in caplog.records)
    assert np.array_equal(v, good, equal_nan=True)
    n = counting["n"]
    cached_token_signals(model, docs, cache_file=path, kind="entropy", seq_len=32, device="cpu")
    assert counting["n"] == n  # the rewritten file is good again
