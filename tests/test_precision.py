"""train.precision: fp32 master weights under bf16-mixed really train at a real learning rate; bf16-pure does not.

In the style of TRL's "the parameters changed" tests: a small random Qwen3 trained by the real trainer at the
real presets' lr (1e-5) for a few steps; every weight matrix must have moved almost everywhere under bf16-mixed,
and far less under bf16-pure, where AdamW's ~lr-sized updates are below half a bfloat16 ulp of most weights.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from entrodrop_bench.config import ExperimentConfig, load_config
from entrodrop_bench.errors import ConfigError
from entrodrop_bench.paths import Layout
from entrodrop_bench.pipeline import (
    stage_prepare as prepare,  # the whole stage: training only reads its caches
)
from entrodrop_bench.train.trainer import Trainer

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
REAL_LR = {"lr": 1e-5, "schedule": "constant", "warmup_fraction": 0.0}


def _train(mini_config, tmp_path, precision: str) -> tuple[dict, dict]:
    config = mini_config(
        model={"dtype": "bfloat16"},
        data={"token_budget": 512 * 6},
        train={**REAL_LR, "precision": precision},
        output={"runs_dir": str(tmp_path / precision), "results_dir": str(tmp_path / f"results-{precision}")},
    )
    layout = Layout.from_config(config)
    assert Trainer(prepare(config, layout, echo=lambda s: None), "plain", 0, progress=False).train() == "complete"
    base = {k: v.to(torch.bfloat16) for k, v in load_file(str(config.model.name_or_path + "/model.safetensors")).items()}
    final = load_file(str(layout.checkpoints("plain", 0)[-1][1] / "model.safetensors"))
    return base, final


def _moved(base: dict, final: dict) -> dict[str, float]:
    """Share of the elements of each weight matrix that differ from the (bf16-read) base."""
    return {k: float((final[k].float() != base[k].float()).float().mean()) for k in final if final[k].dim() == 2}


def test_bf16_mixed_moves_every_weight_matrix_and_bf16_pure_does_not(mini_config, tmp_path, caplog):
    base, mixed = _train(mini_config, tmp_path, "bf16-mixed")
    assert all(t.dtype == torch.float32 for t in mixed.values()), "bf16-mixed checkpoints keep the fp32 master weights"
    moved = _moved(base, mixed)
    assert moved and all(share >= 0.9 for share in moved.values()), moved
    with caplog.at_level(logging.WARNING, logger="entrodrop_bench.train.trainer"):
        base, pure = _train(mini_config, tmp_path, "bf16-pure")
    assert any("rounds away" in r.getMessage() for r in caplog.records)
    assert all(t.dtype == torch.bfloat16 for t in pure.values())
    moved_pure = _moved(base, pure)
    assert max(moved_pure.values()) < 0.5, moved_pure
    assert sum(moved_pure.values()) < 0.5 * sum(moved.values())


def test_bf16_mixed_resumes_exactly_from_its_fp32_checkpoint(mini_config, tmp_path):
    """The fp32 master weights and AdamW state in a checkpoint are enough to continue bitwise."""
    def config(name: str) -> ExperimentConfig:
        return mini_config(model={"dtype": "bfloat16"},
                           train={**REAL_LR, "lr": 1e-3, "precision": "bf16-mixed", "checkpoint_every_epochs": 1},
                           output={"runs_dir": str(tmp_path / name), "results_dir": str(tmp_path / f"r{name}")})

    whole, split = config("a"), config("b")
    Trainer(prepare(whole, Layout.from_config(whole), echo=lambda s: None), "plain", 0, progress=False).train()
    prepared = prepare(split, Layout.from_config(split), echo=lambda s: None)
    first = prepared.plan.checkpoint_steps(1)[0]
    assert first + 2 < prepared.plan.total_steps
    assert Trainer(prepared, "plain", 0, progress=False, stop_after_step=first + 2).train() == "running"
    assert Trainer(prepared, "plain", 0, progress=False).train() == "complete"
    la, lb = Layout.from_config(whole), Layout.from_config(split)
    logs = [[json.loads(line)["loss"] for line in layout.train_log_file("plain", 0).read_text().splitlines()] for layout in (la, lb)]
    assert logs[0] == logs[1]
    wa = load_file(str(la.checkpoints("plain", 0)[-1][1] / "model.safetensors"))
    wb = load_file(str(lb.checkpoints("plain", 0)[-1][1] / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_bf16_pure_needs_bfloat16_model_dtype(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"base: {CONFIGS / 'tiny.yaml'}\n")
    with pytest.raises(ConfigError, match="train.precision: bf16-pure.*model.dtype is float32.*model.dtype: bfloat16"):
        load_config(cfg, ["train.precision=bf16-pure"])
    with pytest.raises(ConfigError, match="train.precision"):
        load_config(cfg, ["train.precision=bf16"])
    assert load_config(cfg, ["train.precision=bf16-pure", "model.dtype=bfloat16"]).train.precision == "bf16-pure"


@pytest.mark.parametrize("preset", ["qwen3-0.6b-math", "qwen3-1.7b-math", "llama3.1-8b-math", "qwen3-0.6b-code", "qwen3-0.6b-math-ablations"])
def test_real_presets_train_mixed_precision_with_checkpointing(preset):
    train = load_config(CONFIGS / f"{preset}.yaml").train
    assert (train.precision, train.gradient_checkpointing, train.chunked_loss) == ("bf16-mixed", True, True)


@pytest.mark.parametrize("preset", ["tiny", "tiny-code"])
def test_tiny_presets_stay_fp32(preset):
    config = load_config(CONFIGS / f"{preset}.yaml")
    assert (config.train.precision, config.model.dtype, config.train.gradient_checkpointing) == ("fp32", "float32", False)
