"""The chunked training loss: same losses and gradients as the full-logits loss, never the full logits."""

from __future__ import annotations

import pytest
import torch
from helpers import ForwardWrapper

from entrodrop_bench.prepare.data import IGNORE_INDEX, MixedRows, TokenizedCorpus, collate, make_plan
from entrodrop_bench.train.loss import (
    LOSS_CHUNK_ELEMENTS,
    chunked_token_losses,
    forward_losses,
    liger_available,
    linear_head,
    naive_token_losses,
    step_loss,
)
from entrodrop_bench.train.trainer import enable_gradient_checkpointing, transformed_embeddings


def _model(vocab: int = 97, hidden: int = 32, layers: int = 2, **extra):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    return Qwen3ForCausalLM(Qwen3Config(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                                        num_attention_heads=4, num_key_value_heads=2, head_dim=hidden // 4, max_position_embeddings=256,
                                        tie_word_embeddings=True, pad_token_id=0, eos_token_id=1, **extra))


def _packed_batch(vocab: int = 97, seq_len: int = 48, rows: int = 6) -> dict[str, torch.Tensor]:
    """Training rows as the trainer builds them: documents packed across rows, labels ignored at each
    document's first token and on padding."""
    g = torch.Generator().manual_seed(1)
    docs = [torch.randint(2, vocab, (int(torch.randint(5, 40, (1,), generator=g)),), generator=g).tolist() + [1] for _ in range(40)]
    target, general = TokenizedCorpus.from_docs(docs), TokenizedCorpus.from_docs(docs[::-1])
    plan = make_plan(seq_len * rows * 4, seq_len, seq_len * rows, 0.6, target.n_tokens)
    batch = collate(MixedRows(plan, target, general, 0, special_ids={0, 1}, pad_id=0).step_rows(0))
    assert (batch["labels"] == IGNORE_INDEX).any() and (batch["labels"] != IGNORE_INDEX).any()
    return batch


def head_case():
    """An LM head's inputs for the chunked-loss tests: hidden states, weight and bias (all requiring grad), labels
    with ignored positions, and per-token weights for the backward (every token's gradient, not only the sum's)."""
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(3, 50, 16, generator=g, requires_grad=True)
    weight = (torch.randn(97, 16, generator=g) * 0.3).requires_grad_()
    bias = torch.randn(97, generator=g).requires_grad_()
    labels = torch.randint(0, 97, (3, 50), generator=g)
    labels[:, ::7] = IGNORE_INDEX
    grads_out = torch.rand(3, 49, generator=g)
    return hidden, weight, bias, labels, grads_out


@pytest.mark.parametrize("chunk_elements", [97 * 7, 97 * 64, 1000])
def test_chunked_losses_and_gradients_match_the_full_logits(chunk_elements):
    hidden, weight, bias, labels, grads_out = head_case()

    ref = naive_token_losses(torch.nn.functional.linear(hidden, weight, bias), labels)
    (ref * grads_out).sum().backward()
    ref_grads = [t.grad.clone() for t in (hidden, weight, bias)]
    for t in (hidden, weight, bias):
        t.grad = None
    out = chunked_token_losses(hidden, weight, bias, labels, chunk_elements=chunk_elements)
    (out * grads_out).sum().backward()
    torch.testing.assert_close(out, ref)
    assert (out[labels[:, 1:] == IGNORE_INDEX] == 0).all()
    for got, want in zip((hidden.grad, weight.grad, bias.grad), ref_grads):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16-autocast"])
def test_step_loss_chunked_matches_full_on_packed_rows_through_a_wrapper(autocast):
    """Through a wrapper's forward and the method's embedding hook, on packed rows with ignored labels: same
    summed loss, per-token losses and parameter gradients whether the LM head runs whole or in chunks."""
    batch = _packed_batch()
    results = []
    for chunk in (None, 97 * 40):
        model = _model()
        with transformed_embeddings(model, lambda e: e * 0.9), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            total, per_token = step_loss(ForwardWrapper(model), batch, chunk_elements=chunk)
        total.backward()
        assert "forward" not in vars(model.get_output_embeddings()), "the head's own forward is back"
        results.append((total, per_token, {n: p.grad for n, p in model.named_parameters()}))
    (t0, p0, g0), (t1, p1, g1) = results
    tol = {"rtol": 2e-2, "atol": 2e-2} if autocast else {}
    torch.testing.assert_close(t1, t0, **tol)
    torch.testing.assert_close(p1, p0, **tol)
    assert p1.shape == (batch["labels"].shape[0], batch["labels"].shape[1] - 1)
    for name in g0:
        if autocast:  # bf16 products differ elementwise by bf16 rounding: compare each gradient as a whole
            assert float((g1[name] - g0[name]).norm() / g0[name].norm()) < 2e-2, name
        else:
            # Chunk by chunk, fp32 sums run in another order: elements near zero differ by rounding (1.6e-6 seen on
            # one CPU), far below the gradients' scale.
            torch.testing.assert_close(g1[name], g0[name], rtol=1e-4, atol=1e-5)


def test_chunks_compute_in_the_autocast_dtype(monkeypatch):
    """Under bf16-mixed the LM-head matmuls of the chunks run in bf16, like the full-logits path's."""
    import entrodrop_bench.train.loss as loss_module

    seen = []
    real = loss_module._ChunkedCrossEntropy.apply
    monkeypatch.setattr(loss_module._ChunkedCrossEntropy, "apply", lambda *a: seen.append(a[-1]) or real(*a))
    hidden, weight = torch.randn(1, 9, 8, requires_grad=True), torch.randn(97, 8, requires_grad=True)
    labels = torch.randint(0, 97, (1, 9))
    chunked_token_losses(hidden, weight, None, labels, chunk_elements=97 * 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        chunked_token_losses(hidden, weight, None, labels, chunk_elements=97 * 3).sum().backward()
    assert seen == [torch.float32, torch.bfloat16]


def test_a_batch_within_one_chunk_takes_the_full_logits_path_bitwise():
    """The tiny presets' micro-batches fit in one chunk: their loss is computed exactly as before chunking."""
    batch = _packed_batch()
    assert batch["labels"][:, 1:].numel() * 97 <= LOSS_CHUNK_ELEMENTS
    model = _model()
    total, per_token = step_loss(model, batch)
    logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
    ref = torch.nn.functional.cross_entropy(logits[:, :-1].float().transpose(1, 2), batch["labels"][:, 1:], ignore_index=IGNORE_INDEX, reduction="none")
    assert torch.equal(per_token, ref) and torch.equal(total, ref.sum())


def test_heads_that_transform_logits_keep_the_full_logits_loss():
    wrapped = ForwardWrapper(_model())
    assert linear_head(wrapped) is wrapped.module.get_output_embeddings()
    capped = _model()
    capped.config.final_logit_softcapping = 30.0
    assert linear_head(capped) is None


def test_the_head_is_restored_when_the_forward_fails():
    model = _model()
    batch = _packed_batch()
    batch["input_ids"] = batch["input_ids"].clone()
    batch["input_ids"][0, 0] = 10_000  # out of the vocabulary: the embedding lookup raises
    with pytest.raises(IndexError):
        step_loss(model, batch, chunk_elements=97 * 8)
    assert "forward" not in vars(model.get_output_embeddings())


def test_hidden_dropout_gives_the_same_gradients_with_gradient_checkpointing():
    """A checkpointed layer runs its forward again in the backward; hidden dropout must replay the same masks
    there, or the gradients belong to another network than the loss."""
    from baselines.hidden_dropout import HiddenDropout, HiddenDropoutConfig
    from entrodrop_bench.train.trainer import token_meta

    batch = _packed_batch()
    grads = []
    for checkpointing in (False, True):
        model = _model()
        model.train()
        if checkpointing:
            enable_gradient_checkpointing(model)
        reg = HiddenDropout(HiddenDropoutConfig(p=0.3))
        reg.adjust_model(model)
        meta = token_meta(batch, 3, 10, 0, 0)
        with transformed_embeddings(model, lambda e, meta=meta, reg=reg: reg.transform_embeddings(e, meta)):
            total, _ = step_loss(model, batch, chunk_elements=97 * 40)
        total.backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-4, atol=1e-6)


@pytest.mark.skipif(not liger_available(torch.device("cuda")), reason="needs CUDA and liger-kernel (pip install -e .[gpu])")
def test_liger_fused_loss_matches_the_full_logits_loss_on_gpu():
    batch = {k: v.cuda() for k, v in _packed_batch().items()}
    sums, grads = [], []
    for fused in (False, True):
        model = _model().cuda()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            total, per_token = step_loss(model, batch, chunk_elements=None if not fused else 97 * 40, fused=fused)
        total.backward()
        assert (per_token is None) == fused
        sums.append(total.detach())
        grads.append({n: p.grad for n, p in model.named_parameters()})
    torch.testing.assert_close(sums[1], sums[0], rtol=2e-2, atol=2e-2)
    for name in grads[0]:
        assert float((grads[1][name] - grads[0][name]).norm() / grads[0][name].norm()) < 2e-2, name


def _fake_liger(monkeypatch, *, accum_dtype_arg: bool = True) -> list[dict]:
    """A stand-in for `liger_kernel.transformers.functional` (Triton, CUDA only) that computes the loss in torch and
    records the dtypes and `accum_dtype` it was called with."""
    import sys
    import types

    calls: list[dict] = []

    def fused(input, weight, target, bias=None, ignore_index=-100, reduction="mean", accum_dtype=None):
        calls.append({"input": input.dtype, "weight": weight.dtype, "autocast": torch.is_autocast_enabled("cpu"),
                      "accum_dtype": accum_dtype})
        logits = torch.nn.functional.linear(input.float(), weight.float(), None if bias is None else bias.float())
        return torch.nn.functional.cross_entropy(logits, target, ignore_index=ignore_index, reduction=reduction)

    def old_fused(input, weight, target, bias=None, ignore_index=-100, reduction="mean"):
        return fused(input, weight, target, bias, ignore_index, reduction)

    module = types.ModuleType("liger_kernel.transformers.functional")
    module.liger_fused_linear_cross_entropy = fused if accum_dtype_arg else old_fused
    for name in ("liger_kernel", "liger_kernel.transformers"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "liger_kernel.transformers.functional", module)
    return calls


def test_liger_gets_the_compute_dtype_and_accumulates_the_head_gradient_in_fp32(monkeypatch):
    """Liger is handed bf16 hidden states and head weight under autocast (its kernels do not autocast) and told to
    accumulate the head's (tied embedding's) weight gradient in fp32; the gradient reaches the fp32 master weight."""
    from entrodrop_bench.train.loss import head_returns_losses

    calls = _fake_liger(monkeypatch)
    model, batch = _model(), _packed_batch()
    head = linear_head(model)
    with torch.autocast("cpu", dtype=torch.bfloat16), head_returns_losses(head, batch["labels"], chunk_elements=1 << 20, fused=True):
        out = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
    out.sum().backward()
    assert calls == [{"input": torch.bfloat16, "weight": torch.bfloat16, "autocast": False, "accum_dtype": torch.float32}]
    assert head.weight.dtype == torch.float32 and head.weight.grad.dtype == torch.float32
    assert head.weight is model.get_input_embeddings().weight and head.weight.grad.abs().sum() > 0  # tied
    # Without autocast (fp32 training) the weight goes in as it is, with nothing to accumulate differently.
    from entrodrop_bench.train.loss import liger_loss_sum

    hidden = torch.randn(2, 8, 32)
    liger_loss_sum(hidden, head.weight, None, batch["labels"][:2, :8].clamp(min=0))
    assert calls[-1] == {"input": torch.float32, "weight": torch.float32, "autocast": False, "accum_dtype": None}


def test_a_liger_without_fp32_accumulation_is_refused_under_bf16(monkeypatch):
    from entrodrop_bench.errors import UserError
    from entrodrop_bench.train.loss import LIGER_MIN_VERSION, liger_loss_sum

    _fake_liger(monkeypatch, accum_dtype_arg=False)
    hidden, weight, labels = torch.randn(1, 8, 32), torch.randn(97, 32), torch.randint(0, 97, (1, 8))
    with pytest.raises(UserError, match=f"accum_dtype.*liger-kernel>={LIGER_MIN_VERSION}"):
        liger_loss_sum(hidden, weight, None, labels, compute_dtype=torch.bfloat16)


def test_validation_per_token_losses_are_the_same_chunked_under_inference_mode():
    """The validation loss groups read per-token losses under inference_mode: the chunked path gives them too."""
    model, batch = _model().eval(), _packed_batch()
    with torch.inference_mode():
        _, full = step_loss(model, batch, chunk_elements=None)
        total, chunked = step_loss(model, batch, chunk_elements=97 * 30)
    torch.testing.assert_close(chunked, full)
    torch.testing.assert_close(total, full.sum())


@pytest.mark.parametrize("precision", ["fp32", "bf16-mixed"])
def test_the_trainer_trains_the_same_with_the_chunked_loss(mini_config, tmp_path, monkeypatch, precision):
    """Through accelerate's prepared model (and its autocast under bf16-mixed): a run whose micro-batches are
    split into LM-head chunks logs the same losses and ends at the same weights as one on the full logits."""
    import json

    from safetensors.torch import load_file

    import entrodrop_bench.train.loss as loss_module
    import entrodrop_bench.train.trainer as train_module
    from entrodrop_bench.artifacts import ValCurve
    from entrodrop_bench.orchestrate.pipeline import (
        stage_prepare as prepare,  # the whole stage: training only reads its caches
    )
    from entrodrop_bench.paths import Layout

    monkeypatch.setattr(train_module, "LOSS_CHUNK_ELEMENTS", 300 * 40)  # the mini vocab is ~300: several chunks per micro-batch
    calls = []
    real = loss_module.chunked_token_losses
    monkeypatch.setattr(loss_module, "chunked_token_losses", lambda *a, **k: calls.append(1) or real(*a, **k))
    out = {}
    for chunked in (False, True):
        config = mini_config(data={"token_budget": 512 * 4}, train={"precision": precision, "chunked_loss": chunked},
                             output={"runs_dir": str(tmp_path / str(chunked)), "results_dir": str(tmp_path / f"r{chunked}")})
        layout = Layout.from_config(config)
        trainer = train_module.Trainer(prepare(config, layout, echo=lambda s: None), "plain", 0, progress=False)
        assert trainer._chunk_elements == (300 * 40 if chunked else None)
        assert trainer.train() == "complete"
        assert bool(calls) == chunked
        losses = [json.loads(line)["loss"] for line in layout.train_log_file("plain", 0).read_text().splitlines()]
        out[chunked] = (losses, load_file(str(Layout.weights_file(layout.checkpoints("plain", 0)[-1][1]))),
                        ValCurve.read(ValCurve.path(layout, "plain", 0)))
    tol = {"rtol": 1e-2, "atol": 1e-2} if precision == "bf16-mixed" else {"rtol": 1e-5, "atol": 1e-5}
    torch.testing.assert_close(torch.tensor(out[True][0]), torch.tensor(out[False][0]), **tol)
    for name, weight in out[False][1].items():
        torch.testing.assert_close(out[True][1][name], weight, **tol)
    torch.testing.assert_close(torch.tensor(out[True][2].points[-1].overall), torch.tensor(out[False][2].points[-1].overall), **tol)


@pytest.mark.parametrize("chunk", [None, 97 * 30], ids=["full-logits", "chunked"])
def test_forward_losses_give_the_entropy_of_the_same_forward(chunk):
    """Online signals read the predictive entropy from the training forward itself: it equals the entropy of the
    full logits, and computing it changes neither the losses nor the gradients."""
    batch = _packed_batch()
    model = _model()
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits[:, :-1]
    expected = -(torch.log_softmax(logits, -1).exp() * torch.log_softmax(logits, -1)).sum(-1)
    runs = []
    for entropy in (False, True):
        model.zero_grad()
        total, per_token, ent = forward_losses(model, batch, chunk_elements=chunk, entropy=entropy)
        total.backward()
        runs.append((total.detach(), per_token.detach(), ent, [p.grad.clone() for p in model.parameters()]))
    (t0, p0, e0, g0), (t1, p1, e1, g1) = runs
    assert e0 is None and e1.shape == p1.shape and not e1.requires_grad
    torch.testing.assert_close(e1, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(t1, t0)
    torch.testing.assert_close(p1, p0)
    for a, b in zip(g0, g1):  # the full-logits path takes nll_loss of its own log-softmax: same up to rounding
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
