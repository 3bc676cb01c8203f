"""Label smoothing, the built-in loss-side plugin (baselines/label_smoothing.py), written against the public plugin
interface alone (`Regularizer.token_loss`): its loss equals the smoothed cross-entropy computed here by hand, on the
full logits and chunk by chunk (gradients included); one training step changes every trainable parameter; it trains
in the tiny preset's Table 1 and keeps the held-out validation loss the plain cross-entropy."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from test_loss import _model, _packed_batch, head_case

from entrodrop_bench.artifacts import RunStatus, TrainLog, ValCurve
from entrodrop_bench.config import load_config
from entrodrop_bench.paths import CONFIGS_DIR, PROJECT_ROOT, Layout
from entrodrop_bench.prepare.data import IGNORE_INDEX
from entrodrop_bench.regularizer import build_regularizer, defines_token_loss
from entrodrop_bench.train.loss import chunked_token_losses, forward_losses

EPS = 0.1


def smoothed_ce(logits: torch.Tensor, targets: torch.Tensor, eps: float) -> torch.Tensor:
    """(1 - eps) * -log p(target) + eps * mean over the vocabulary of -log p, 0 where the target is ignored; written
    out from the definition, not through torch's `label_smoothing`."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    valid = targets != IGNORE_INDEX
    nll = -logp.gather(-1, targets.clamp(min=0)[:, None])[:, 0]
    uniform = -logp.mean(dim=-1)
    return torch.where(valid, (1 - eps) * nll + eps * uniform, torch.zeros_like(nll))


def test_the_plugin_uses_only_the_public_interface():
    tree = ast.parse((PROJECT_ROOT / "baselines" / "label_smoothing.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert imported <= {"__future__", "pydantic", "entrodrop_bench.regularizer", "entrodrop_bench.registry"}, imported
    reg = build_regularizer("label_smoothing", {"epsilon": EPS})
    assert defines_token_loss(type(reg)) and not defines_token_loss(type(build_regularizer("plain", {})))


def test_token_loss_is_the_smoothed_cross_entropy():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 97, generator=g) * 3
    targets = torch.randint(0, 97, (64,), generator=g)
    targets[::5] = IGNORE_INDEX
    reg = build_regularizer("label_smoothing", {"epsilon": EPS})
    torch.testing.assert_close(reg.token_loss(logits, targets), smoothed_ce(logits, targets, EPS))
    plain = torch.nn.functional.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX, reduction="none")
    torch.testing.assert_close(build_regularizer("label_smoothing", {"epsilon": 0.0}).token_loss(logits, targets), plain)
    assert (reg.token_loss(logits, targets)[targets != IGNORE_INDEX] != plain[targets != IGNORE_INDEX]).all()


@pytest.mark.parametrize("chunk_elements", [97 * 7, 97 * 1000])
def test_chunked_losses_and_gradients_match_the_hand_computed_smoothed_loss(chunk_elements):
    hidden, weight, bias, labels, grads_out = head_case()
    logits = torch.nn.functional.linear(hidden, weight, bias)[:, :-1].reshape(-1, 97)
    ref = smoothed_ce(logits, labels[:, 1:].reshape(-1), EPS).view(3, 49)
    (ref * grads_out).sum().backward()
    ref_grads = [t.grad.clone() for t in (hidden, weight, bias)]
    for t in (hidden, weight, bias):
        t.grad = None
    reg = build_regularizer("label_smoothing", {"epsilon": EPS})
    out = chunked_token_losses(hidden, weight, bias, labels, chunk_elements=chunk_elements, token_loss=reg.token_loss)
    (out * grads_out).sum().backward()
    torch.testing.assert_close(out, ref)
    for got, want in zip((hidden.grad, weight.grad, bias.grad), ref_grads):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("chunk_elements", [None, 97 * 16])
def test_a_training_step_takes_the_smoothed_loss_and_changes_every_parameter(chunk_elements):
    model, batch = _model(), _packed_batch()
    reg = build_regularizer("label_smoothing", {"epsilon": EPS})
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
    want = smoothed_ce(logits[:, :-1].reshape(-1, logits.shape[-1]), batch["labels"][:, 1:].reshape(-1), EPS).sum()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.AdamW(reg.param_groups(model), lr=1e-2)
    loss_sum, per_token, _ = forward_losses(model, batch, chunk_elements=chunk_elements, token_loss=reg.token_loss)
    torch.testing.assert_close(loss_sum, want, rtol=1e-5, atol=1e-4)
    plain, _, _ = forward_losses(model, batch, chunk_elements=chunk_elements)
    assert loss_sum > plain  # smoothing adds the uniform term, larger than the target's loss on a fitted token
    loss_sum.backward()
    optimizer.step()
    unchanged = [n for n, p in model.named_parameters() if torch.equal(p, before[n])]
    assert not unchanged, f"parameters not updated: {unchanged}"


def test_label_smoothing_is_a_table1_row_of_the_tiny_preset():
    config = load_config(CONFIGS_DIR / "tiny.yaml")
    spec = config.runs["label_smoothing"]
    assert spec.plugin == "label_smoothing" and config.methods["label_smoothing"].table is None  # main: Table 1
    assert spec.role.label == "+Label Smoothing" and spec.role.kind == "comparison"


def test_it_trains_with_its_loss_and_validates_with_the_plain_one(mini_config):
    from entrodrop_bench.orchestrate.pipeline import stage_prepare
    from entrodrop_bench.train.trainer import Trainer

    config = mini_config(methods={"plain": {"plugin": "plain"}, "smooth": {"plugin": "label_smoothing", "params": {"epsilon": 0.3}}})
    layout = Layout.from_config(config)
    prepared = stage_prepare(config, layout, echo=lambda _: None)
    for run in ("plain", "smooth"):
        assert Trainer(prepared, run, 0, progress=False).train() == "complete"
    status = RunStatus.read(RunStatus.path(layout, "smooth", 0))
    assert status.state == "complete" and status.plugin == "label_smoothing"
    smooth = TrainLog.read(TrainLog.path(layout, "smooth", 0)).records
    plain = TrainLog.read(TrainLog.path(layout, "plain", 0)).records
    # same data, seed and initial weights: the first step's logged loss differs only by the smoothing term
    assert smooth[0].loss > plain[0].loss
    # the validation curve is the plain cross-entropy: at step 0 (the base model) both runs measure the same
    v_smooth, v_plain = (ValCurve.read(ValCurve.path(layout, r, 0)).points[0] for r in ("smooth", "plain"))
    assert v_smooth.step == 0 and v_smooth.overall == pytest.approx(v_plain.overall, rel=1e-6)


def test_the_docs_show_the_whole_plugin():
    text = (PROJECT_ROOT / "docs" / "plugins.md").read_text()
    body = Path(PROJECT_ROOT / "baselines" / "label_smoothing.py").read_text()
    cls = body[body.index("class LabelSmoothingConfig"):].rstrip()
    assert cls in text, "docs/plugins.md shows the plugin as it is"
