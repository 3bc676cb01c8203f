"""The training loop on a tiny real model: budgets, checkpoints, exact resume, divergence handling."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import ForwardWrapper
from safetensors.torch import load_file

from entrodrop_bench.artifacts import CheckpointManifest, RunStatus, ValCurve
from entrodrop_bench.errors import TrainingDiverged
from entrodrop_bench.paths import Layout
from entrodrop_bench.pipeline import (
    stage_prepare as prepare,  # the whole stage: training only reads its caches
)
from entrodrop_bench.pipeline import stage_train
from entrodrop_bench.regularizer import Regularizer, register_regularizer
from entrodrop_bench.train.trainer import Trainer, step_loss, transformed_embeddings


@register_regularizer("test_nan_at_step_3")
class NanAtStep3(Regularizer):
    """Injects a non-finite input at step 3, to test divergence handling."""

    def transform_embeddings(self, embeds, meta):
        return embeds * float("nan") if meta.step == 2 else embeds


def _losses(layout: Layout, run: str) -> list[float]:
    return [json.loads(line)["loss"] for line in layout.train_log_file(run, 0).read_text().splitlines()]


def test_every_method_sees_the_same_tokens_and_parameters_change(mini_config):
    methods = {
        "plain": {"plugin": "plain"},
        "neftune": {"plugin": "neftune"},
        "entrodrop": {"plugin": "entrodrop", "params": {"gamma_max": 0.3, "j0": "auto"}},
        "hidden_dropout": {"plugin": "hidden_dropout", "params": {"p": 0.1}},
    }
    config = mini_config(methods=methods)
    layout = Layout.from_config(config)
    states = stage_train(config, layout, progress=False, echo=lambda s: None)
    assert set(states.values()) == {"complete"}
    budgets = {}
    for run in methods:
        manifests = [CheckpointManifest.read(CheckpointManifest.path(p)) for _, p in layout.checkpoints(run, 0)]
        assert manifests, run
        budgets[run] = [(m.step, m.tokens_seen["target"], m.tokens_seen["general"]) for m in manifests]
        assert manifests[-1].step == manifests[-1].total_steps
        curve = ValCurve.read(ValCurve.path(layout, run, 0)).points
        assert curve[0].step == 0 and all(p.high_entropy > p.low_entropy for p in curve)
    assert len({tuple(b) for b in budgets.values()}) == 1, budgets
    base = load_file(str(config.model.name_or_path + "/model.safetensors"))
    final = load_file(str(Layout.weights_file(layout.checkpoints("entrodrop", 0)[-1][1])))
    assert any(not torch.equal(base[k], final[k]) for k in base)


@pytest.mark.parametrize(
    "method",
    [{"plugin": "entrodrop", "params": {"gamma_max": 0.4, "schedule": "static"}}, {"plugin": "hidden_dropout", "params": {"p": 0.2}}],
    ids=["entrodrop", "hidden_dropout"],
)
def test_resume_is_bitwise_identical(mini_config, tmp_path, method):
    train = {"checkpoint_every_epochs": 1}
    whole = mini_config(methods={"m": method}, train=train, output={"runs_dir": str(tmp_path / "a"), "results_dir": str(tmp_path / "ra")})
    split = mini_config(methods={"m": method}, train=train, output={"runs_dir": str(tmp_path / "b"), "results_dir": str(tmp_path / "rb")})
    Trainer(prepare(whole, Layout.from_config(whole), echo=lambda s: None), "m", 0, progress=False).train()
    prepared = prepare(split, Layout.from_config(split), echo=lambda s: None)
    first_ckpt = prepared.plan.checkpoint_steps(split.train.checkpoint_every_epochs)[0]
    assert first_ckpt + 2 < prepared.plan.total_steps
    assert Trainer(prepared, "m", 0, progress=False, stop_after_step=first_ckpt + 2).train() == "running"
    assert Trainer(prepared, "m", 0, progress=False).train() == "complete"
    la, lb = Layout.from_config(whole), Layout.from_config(split)
    assert _losses(la, "m") == _losses(lb, "m")
    wa = load_file(str(la.checkpoints("m", 0)[-1][1] / "model.safetensors"))
    wb = load_file(str(lb.checkpoints("m", 0)[-1][1] / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_non_finite_loss_stops_and_saves_nothing(mini_config):
    config = mini_config(methods={"bad": {"plugin": "test_nan_at_step_3"}}, train={"checkpoint_every_epochs": 0.01})
    layout = Layout.from_config(config)
    prepared = prepare(config, layout, echo=lambda s: None)
    with pytest.raises(TrainingDiverged, match="step 3 of method bad"):
        Trainer(prepared, "bad", 0, progress=False).train()
    status = RunStatus.read(RunStatus.path(layout, "bad", 0))
    assert status.state == "diverged" and "step 3" in status.reason
    assert [s for s, _ in layout.checkpoints("bad", 0)] == [1, 2]
    for _, path in layout.checkpoints("bad", 0):
        assert all(torch.isfinite(t).all() for t in load_file(str(path / "model.safetensors")).values())


def test_completed_run_is_skipped(mini_config):
    config = mini_config()
    layout = Layout.from_config(config)
    stage_train(config, layout, progress=False, echo=lambda s: None)
    log_file = layout.train_log_file("plain", 0)
    before = log_file.stat().st_mtime_ns
    messages = []
    stage_train(config, layout, progress=False, echo=messages.append)
    assert log_file.stat().st_mtime_ns == before
    assert any("already complete" in m for m in messages)


def test_embedding_transform_reaches_a_wrapped_model_and_its_gradients(mini_assets):
    """The method's transform is applied inside the wrapped forward, exactly as `inputs_embeds=` would be,
    gradients reach the embedding through it, and the hook is gone after the block."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(mini_assets["model"])
    ids = torch.randint(3, model.config.vocab_size, (2, 16))
    batch = {"input_ids": ids, "position_ids": torch.arange(16).expand(2, 16), "labels": ids}
    shift = torch.linspace(-1, 1, model.config.hidden_size)
    expected = model(inputs_embeds=model.get_input_embeddings()(ids) * 0.5 + shift, position_ids=batch["position_ids"]).logits
    with transformed_embeddings(model, lambda e: e * 0.5 + shift):
        logits = ForwardWrapper(model)(input_ids=ids, position_ids=batch["position_ids"]).logits
        loss, _ = step_loss(ForwardWrapper(model), batch)
    torch.testing.assert_close(logits, expected)
    loss.backward()
    assert model.get_input_embeddings().weight.grad.abs().sum() > 0
    assert not model.get_input_embeddings()._forward_hooks
    torch.testing.assert_close(model(input_ids=ids, position_ids=batch["position_ids"]).logits,
                               model(inputs_embeds=model.get_input_embeddings()(ids), position_ids=batch["position_ids"]).logits)


def test_resume_from_a_checkpoint_without_optimizer_state(mini_config, caplog):
    """An FSDP checkpoint holds no (sharded) optimizer state: resuming restores the rest, warns, and completes."""
    config = mini_config(methods={"m": {"plugin": "plain"}}, train={"checkpoint_every_epochs": 1})
    prepared = prepare(config, Layout.from_config(config), echo=lambda s: None)
    first_ckpt = prepared.plan.checkpoint_steps(1)[0]
    trainer = Trainer(prepared, "m", 0, progress=False, stop_after_step=first_ckpt)
    trainer.save_optimizer = False
    assert trainer.train() == "running"
    state_file = Layout.trainer_state_file(prepared.layout.checkpoints("m", 0)[-1][1])
    assert torch.load(state_file, weights_only=True)["optimizer"] is None
    with caplog.at_level("WARNING", logger="entrodrop_bench.train.trainer"):
        assert Trainer(prepared, "m", 0, progress=False).train() == "complete"
    assert "AdamW moments restart" in caplog.text
    assert len(_losses(prepared.layout, "m")) == prepared.plan.total_steps


def test_run_summary_averages_every_logged_step_across_a_resume(mini_config):
    """The completed run's stats average the method's per-step values over the whole log, resumed part included."""
    import numpy as np

    config = mini_config(methods={"m": {"plugin": "entrodrop", "params": {"gamma_max": 0.4, "schedule": "static"}}},
                         train={"checkpoint_every_epochs": 1})
    prepared = prepare(config, Layout.from_config(config), echo=lambda s: None)
    first_ckpt = prepared.plan.checkpoint_steps(1)[0]
    assert Trainer(prepared, "m", 0, progress=False, stop_after_step=first_ckpt).train() == "running"
    trainer = Trainer(prepared, "m", 0, progress=False)
    assert trainer.train() == "complete"
    log = [json.loads(line) for line in prepared.layout.train_log_file("m", 0).read_text().splitlines()]
    assert len(log) == prepared.plan.total_steps
    stats = trainer.status().stats
    assert stats["masked_fraction"] == pytest.approx(np.mean([r["masked_fraction"] for r in log]))
    assert 0 < stats["masked_fraction"] < 0.4 * stats["gated_fraction"] + 0.05


def test_packed_documents_do_not_attend_across_boundaries(mini_assets):
    """Per-document position ids, no 2D mask and no cache (as `step_loss` calls the model): transformers builds a
    block-diagonal causal mask, so each document in a packed row gets the same per-token losses as alone.
    Passing an all-ones attention mask, or leaving the cache on, would silently let documents attend across."""
    from transformers import AutoModelForCausalLM

    from entrodrop_bench.prepare.data import IGNORE_INDEX

    model = AutoModelForCausalLM.from_pretrained(mini_assets["model"], attn_implementation="sdpa").eval()
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randint(3, model.config.vocab_size, (12,), generator=gen), torch.randint(3, model.config.vocab_size, (20,), generator=gen)

    def batch(*docs):
        ids = torch.cat(docs)
        labels = ids.clone()
        positions = torch.cat([torch.arange(len(d)) for d in docs])
        labels[positions == 0] = IGNORE_INDEX
        return {"input_ids": ids[None], "position_ids": positions[None], "labels": labels[None]}

    with torch.no_grad():
        packed = step_loss(model, batch(a, b))[1][0]
        alone_b = step_loss(model, batch(b))[1][0]
    torch.testing.assert_close(packed[len(a):], alone_b, rtol=1e-4, atol=1e-5)


def test_processes_that_accelerate_did_not_join_are_refused_before_writing(mini_config, monkeypatch):
    """`accelerate launch --use_fsdp` without GPUs starts N independent processes: refuse, write nothing."""
    from entrodrop_bench.errors import UserError

    config = mini_config(methods={"m": {"plugin": "plain"}})
    prepared = prepare(config, Layout.from_config(config), echo=lambda s: None)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(UserError, match="WORLD_SIZE=2"):
        Trainer(prepared, "m", 0, progress=False).train()
    assert not prepared.layout.run_dir("m", 0).exists()


def test_a_run_status_of_another_format_stops_training_with_what_to_do(tmp_path):
    from helpers import write_status

    from entrodrop_bench.artifacts import ArtifactError
    from entrodrop_bench.train.trainer import run_is_complete

    layout = Layout(tmp_path / "runs", tmp_path / "results")
    write_status(layout, "plain", 0, total_steps=4)
    path = RunStatus.path(layout, "plain", 0)
    path.write_text(json.dumps({**json.loads(path.read_text()), "format_version": 5}))
    with pytest.raises(ArtifactError, match=r"status\.json was written in RunStatus format 5.*delete the run's folder"):
        run_is_complete(layout, "plain", 0)


def test_a_finished_bf16_mixed_run_frees_its_model_before_the_next_run(mini_config, monkeypatch):
    """accelerate keeps references to what it prepared, and the wrappers and hooks leave reference cycles: without
    an explicit release the model (and its optimizer state) lives on into the next run of the same process until
    some garbage collection happens to run. With the collector off, it must be gone when `train` returns."""
    import gc
    import weakref

    from entrodrop_bench.prepare.stage import Prepared

    config = mini_config(model={"dtype": "bfloat16"}, train={"precision": "bf16-mixed", "lr": 1e-4})
    prepared = prepare(config, Layout.from_config(config), echo=lambda s: None)
    models = []
    load = Prepared.load_base_model

    def tracked(self):
        model = load(self)
        models.append(weakref.ref(model))
        return model

    monkeypatch.setattr(Prepared, "load_base_model", tracked)
    gc.collect()
    gc.disable()
    try:
        assert Trainer(prepared, "plain", 0, progress=False).train() == "complete"
        assert len(models) == 1 and models[0]() is None, "the finished run's model is still alive"
    finally:
        gc.enable()
