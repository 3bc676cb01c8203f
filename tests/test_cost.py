"""Cost accounting on a real tiny training run: tokens, FLOPs by the documented formula, wall time that adds up
across an interruption and a resume, the device; and `status` / `plan` showing it."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from entrodrop_bench.artifacts import CheckpointManifest, RunStatus
from entrodrop_bench.cost import flops_per_token
from entrodrop_bench.paths import Layout
from entrodrop_bench.pipeline import (
    stage_prepare as prepare,  # the whole stage: training only reads its caches
)
from entrodrop_bench.train.trainer import Trainer


def _flops_by_hand(checkpoint, seq_len: int, tokens: int) -> tuple[int, float]:
    """N and the FLOPs of the documented formula, from the saved model's own files: every weight but the input
    embedding table, which the tied LM head counts once; plus the attention term of its shape."""
    shape = json.loads((checkpoint / "config.json").read_text())
    weights = load_file(str(checkpoint / "model.safetensors"))
    assert shape["tie_word_embeddings"] and "lm_head.weight" not in weights  # the mini model: tied, stored once
    n = sum(w.numel() for w in weights.values())  # minus the embedding table, plus the LM head: the same matrix
    per_token = 6 * n + 12 * shape["num_hidden_layers"] * shape["num_attention_heads"] * shape["head_dim"] * seq_len
    return n, per_token * tokens


def test_a_tiny_runs_cost_is_measured_and_its_wall_time_adds_up_across_a_resume(mini_config):
    config = mini_config(methods={"m": {"plugin": "plain"}}, train={"checkpoint_every_epochs": 1})
    layout = Layout.from_config(config)
    prepared = prepare(config, layout, echo=lambda s: None)
    plan = prepared.plan
    assert plan.tokens_per_step == config.train.global_batch_tokens  # 512 = 8 rows of 64
    first = plan.checkpoint_steps(1)[0]
    assert Trainer(prepared, "m", 0, progress=False, stop_after_step=first).train() == "running"
    before = RunStatus.read(RunStatus.path(layout, "m", 0)).cost
    assert before.steps == first and before.tokens_trained == first * config.train.global_batch_tokens
    assert before.train_wall_s > 0 and before.sessions == 1
    manifest = CheckpointManifest.read(CheckpointManifest.path(layout.checkpoints("m", 0)[-1][1]))
    assert manifest.cost.steps == first and 0 < manifest.cost.train_wall_s <= before.train_wall_s

    assert Trainer(prepared, "m", 0, progress=False).train() == "complete"
    cost = RunStatus.read(RunStatus.path(layout, "m", 0)).cost
    assert cost.steps == plan.total_steps
    assert cost.tokens_trained == plan.total_steps * config.train.global_batch_tokens
    n, flops = _flops_by_hand(layout.checkpoints("m", 0)[-1][1], config.data.seq_len, cost.tokens_trained)
    assert cost.flops_params == n and cost.train_flops == pytest.approx(flops, rel=1e-12)
    assert cost.train_flops == pytest.approx(flops_per_token(n, 2, 4, 8, 64) * cost.tokens_trained, rel=1e-12)
    assert cost.sessions == 2 and cost.train_wall_s > before.train_wall_s  # the second session added to the first
    assert (cost.device, cost.device_count) == ("cpu", 1)
    assert cost.device_hours == pytest.approx(cost.train_wall_s / 3600, rel=1e-6)
    # A re-run of the complete run trains nothing and changes nothing.
    assert Trainer(prepared, "m", 0, progress=False).train() == "complete"
    assert RunStatus.read(RunStatus.path(layout, "m", 0)).cost == cost


def test_status_shows_each_runs_cost_and_a_dash_where_none_was_recorded(mini_config, tmp_path):
    from helpers import write_eval_result, write_status

    from entrodrop_bench import launch

    config = mini_config(methods={"plain": {"plugin": "plain"}, "old": {"plugin": "plain"}})
    layout = Layout.from_config(config)
    write_status(layout, "plain", 0, state="running", total_steps=16, cost={
        "steps": 8, "tokens_trained": 4096, "train_flops": 2.5e9, "flops_params": 1000, "train_wall_s": 90.0,
        "device": "cpu", "device_count": 1, "device_hours": 0.025})
    write_status(layout, "old", 0, state="running", total_steps=16)  # written before cost accounting
    write_eval_result(layout, "plain", 0, 8, "tiny_math", 0.5, wall_time_s=30.0)
    report = launch.status(config, layout)
    plain, old = report["runs"]
    assert (plain["tokens"], plain["flops"], plain["train_wall_s"], plain["eval_wall_s"], plain["device"]) == (
        4096, 2.5e9, 90.0, 30.0, "cpu")
    assert plain["device_hours"] == pytest.approx(0.025 + 30 / 3600)
    assert old["tokens"] is None and old["device_hours"] is None
    text = launch.format_status(report).splitlines()
    assert text[0].split()[-6:] == ["tokens", "FLOPs", "train", "eval", "device", "device-h"]
    assert text[1].split()[-6:] == ["4.1k", "2.5G", "1.5m", "30.0s", "cpu", "0.0333"]
    assert text[2].split()[-6:] == ["-"] * 6
