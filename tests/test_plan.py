"""`entrodrop-bench plan`: offline, from the trainer's own step and checkpoint arithmetic; flags budgets that
cannot reach what the paper reports; the real presets' header comments carry its numbers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from entrodrop_bench.artifacts import CheckpointManifest, RunStatus
from entrodrop_bench.config import load_config, run_names
from entrodrop_bench.orchestrate.plan import experiment_plan, format_plan, plan_header
from entrodrop_bench.paths import CONFIGS_DIR, PROJECT_ROOT, Layout

REAL = ["qwen3-0.6b-math", "qwen3-1.7b-math", "llama3.1-8b-math", "qwen3-0.6b-code", "qwen3-0.6b-math-ablations"]
SMALL = ["tiny.n_target_docs=60", "tiny.n_general_docs=300", "tiny.n_benchmark=20", "tiny.pretrain_tokens=4000",
         "data.token_budget=20480", "train.checkpoint_every_epochs=1", "methods={plain: {plugin: plain}}",
         "data.target.max_unique_tokens=null"]  # the shrunk world's corpus, whole: its size unknown until prepare


def _cli(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "entrodrop_bench.cli", *args], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def _fresh(tmp_path: Path) -> Layout:
    return Layout(tmp_path / "runs", tmp_path / "results")


def test_plan_of_the_qwen3_preset_prints_offline(tmp_path):
    proc = _cli("plan", "configs/qwen3-0.6b-math.yaml", env_extra={"HF_HOME": str(tmp_path / "empty-hf")})
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "Qwen3-0.6B-Base, 0.596B params (0.44B non-embedding), vocab 151,936" in out
    assert "1,430 steps x 2,097,152 tokens" in out and "90.9 target epochs" in out
    for run in run_names(load_config(CONFIGS_DIR / "qwen3-0.6b-math.yaml")):
        assert f"\n  {run} " in out
    assert "estimate" in out and "GPU-h" in out and "WARNING" not in out
    as_json = experiment_plan(load_config(CONFIGS_DIR / "qwen3-0.6b-math.yaml"), _fresh(tmp_path))
    assert as_json["steps"] == 1430 and len(as_json["runs"]) == 9
    assert all(r["checkpoints"] == 19 and r["evaluations"] == 19 * 10 for r in as_json["runs"])


@pytest.mark.parametrize("name", REAL)
def test_real_preset_headers_carry_the_plan(name, tmp_path):
    path = f"configs/{name}.yaml"
    header = plan_header(experiment_plan(load_config(PROJECT_ROOT / path), _fresh(tmp_path)), path)
    assert header in (PROJECT_ROOT / path).read_text(), f"regenerate with: entrodrop-bench plan --header {path}"


def test_budgets_short_of_the_papers_epochs_are_flagged(tmp_path):
    ablation = load_config(CONFIGS_DIR / "qwen3-0.6b-math-ablations.yaml")
    plan = experiment_plan(ablation, _fresh(tmp_path))
    assert plan["target_epochs"] >= 130 and plan["paper_reach"] == []
    at_3b = experiment_plan(load_config(CONFIGS_DIR / "qwen3-0.6b-math-ablations.yaml", ["data.token_budget=3000000000"]), _fresh(tmp_path))
    assert 90 < at_3b["target_epochs"] < 91
    flags = at_3b["paper_reach"]
    assert len(flags) == 2 and flags[0].startswith("gamma_max 0.2") and "best epoch 100" in flags[0]
    assert flags[1].startswith("gamma_max 0.4") and "best epoch >125" in flags[1] and "130 needed" in flags[1]
    # Table 1's preset trains gamma_max 0.1 (best epoch 50) and plain (25): 91 epochs see both
    assert experiment_plan(load_config(CONFIGS_DIR / "qwen3-0.6b-math.yaml"), _fresh(tmp_path))["paper_reach"] == []


def test_plan_on_the_tiny_preset_equals_what_the_trainer_does(tmp_path):
    from entrodrop_bench.orchestrate.pipeline import stage_train

    outputs = [f"output.runs_dir={tmp_path / 'runs'}", f"output.results_dir={tmp_path / 'results'}"]
    config = load_config(CONFIGS_DIR / "tiny.yaml", SMALL + outputs)
    layout = Layout.from_config(config)
    before = experiment_plan(config, layout)
    assert before["target_epochs"] is None and "unknown until" in before["target_train_tokens_source"]
    assert stage_train(config, layout, progress=False, echo=lambda _: None) == {"plain/seed0": "complete"}
    after = experiment_plan(config, layout)
    assert after["target_train_tokens_source"].startswith("measured by prepare")
    status = RunStatus.read(RunStatus.path(layout, "plain", 0))
    (run,) = after["runs"]
    assert run["steps"] == status.total_steps == before["steps"]
    trained = layout.checkpoints("plain", 0)
    assert len(trained) >= 3, "several checkpoint intervals plus the final step"
    assert run["checkpoint_steps"] == [step for step, _ in trained] and run["checkpoints"] == len(trained)
    last = CheckpointManifest.read(CheckpointManifest.path(trained[-1][1]))
    assert run["target_epochs"] == pytest.approx(last.target_epoch)
    assert run["evaluations"] == len(trained) * 2 and run["eval_items"] == len(trained) * (20 + 20)
    assert "measured" in after["train_tokens_per_s_source"]
    # Once the run exists, its measured cost sits next to the estimate.
    assert before["runs"][0]["measured"] is None and "measured so far" not in format_plan(before)
    m = run["measured"]
    assert m["steps"] == status.total_steps and m["tokens_trained"] == status.total_steps * after["tokens_per_step"]
    assert m["device"] == "cpu" and m["train_device_h"] == pytest.approx(status.cost.train_wall_s / 3600)
    assert m["tokens_per_s"] == pytest.approx(m["tokens_trained"] / status.cost.train_wall_s)
    text = format_plan(after)
    assert "measured so far" in text and "tok/s est*" in text
    row = next(line.split() for line in text.splitlines() if line.split()[:2] == ["plain", "0"] and "cpu" in line)
    assert row[2] == f"{status.total_steps:,}/{status.total_steps:,}" and row[-1] == "-"  # not evaluated yet


def test_plan_estimates_evaluation_under_vllm_with_one_engine_per_worker_by_hand(tmp_path):
    """Generative items decode 256 at a time at 20 ms a step (Qwen3-0.6B), loglikelihood items stay on HF, each
    checkpoint adds its weight load and each evaluation worker one engine start: the same numbers by hand."""
    import math

    from entrodrop_bench.orchestrate import plan as planning

    config = load_config(CONFIGS_DIR / "qwen3-0.6b-math.yaml")
    p = experiment_plan(config, _fresh(tmp_path))
    forward_tok_s = planning.train_throughput(config, planning.backbone(config), recompute=False)[0]
    answers = {"svamp": (300, 200), "gsm8k": (1319, 250), "minerva_math": (5000, 400), "college_math": (2818, 400),
               "olympiadbench": (675, 600), "ifeval": (541, 400), "arc_challenge": (299, 10)}  # items, typical answer tokens
    steps = sum(math.ceil(n / 256) * tokens for n, tokens in answers.values())
    loglikelihood_tokens = 10042 * 4 * 110 + 1838 * 2 * 60 + 14042 * 4 * 130  # hellaswag, piqa, mmlu
    weights_s = planning.BACKBONES["Qwen/Qwen3-0.6B-Base"].params * 4 / 1e9  # fp32 master weights at 1 GB/s
    per_ckpt = steps * 0.02 + loglikelihood_tokens / (3 * forward_tok_s) + weights_s
    assert p["eval_vllm_gpu_s_per_checkpoint"] == pytest.approx(per_ckpt)
    assert p["totals"]["eval_vllm_gpu_h"] == pytest.approx((171 * per_ckpt + 1 * 90) / 3600)
    assert p["totals"]["eval_vllm_gpu_h"] < p["totals"]["eval_gpu_h"] / 5  # generation dominates under HF
    text = format_plan(p)
    assert "with eval.backend vllm [estimate: 256 sequences per decoding step at 20 ms, one engine start" in text
    workers = experiment_plan(load_config(CONFIGS_DIR / "qwen3-0.6b-math.yaml", ["launcher.eval_jobs=4"]), _fresh(tmp_path))
    assert workers["totals"]["eval_vllm_gpu_h"] == pytest.approx((171 * per_ckpt + 4 * 90) / 3600)


def test_training_estimate_counts_the_activation_recompute_once(tmp_path):
    """Checkpointed activations cost one more forward of the decoder layers, whichever applies it (the trainer's
    gradient checkpointing, or FSDP's when the launcher's accelerate config turns it on: then the trainer's is off)."""
    from entrodrop_bench.orchestrate.plan import (
        activation_recompute,
        backbone,
        flops_per_token,
        recompute_flops_per_token,
        train_throughput,
    )

    preset = CONFIGS_DIR / "llama3.1-8b-math.yaml"
    fsdp = str(PROJECT_ROOT / "configs" / "accelerate" / "fsdp.yaml")
    ddp = str(PROJECT_ROOT / "configs" / "accelerate" / "ddp.yaml")
    cases = {
        "train.gradient_checkpointing": load_config(preset),
        "fsdp_activation_checkpointing": load_config(preset, [f"launcher.accelerate_config={fsdp}"]),
        None: load_config(preset, ["train.gradient_checkpointing=false", f"launcher.accelerate_config={ddp}"]),
    }
    rates = {}
    for expected, config in cases.items():
        assert activation_recompute(config) == expected
        rates[expected] = train_throughput(config, backbone(config))[0]
    bb = backbone(cases[None])
    model_flops, extra = flops_per_token(bb, 4096), recompute_flops_per_token(bb, 4096)
    assert 0.25 < extra / model_flops < 0.34  # about a third more: the forward is a third of the training count
    assert rates["train.gradient_checkpointing"] == rates["fsdp_activation_checkpointing"]  # once, either way
    assert rates[None] / rates["train.gradient_checkpointing"] == pytest.approx((model_flops + extra) / model_flops)
    fsdp_without_ac = load_config(preset, ["train.gradient_checkpointing=false", f"launcher.accelerate_config={fsdp}"])
    assert activation_recompute(fsdp_without_ac) == "fsdp_activation_checkpointing"  # the config's own AC counts too
