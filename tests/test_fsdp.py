"""FSDP for real: configs/accelerate/fsdp.yaml under `accelerate launch --num_processes 2`, two CPU processes joined
over gloo (ACCELERATE_USE_CPU; the trainer runs accelerate's FSDP2 path on them, see `trainer._fsdp_on_cpu`), against
one process training the same runs. tests/fsdp_worker.py is each launched process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from entrodrop_bench.artifacts import TrainLog, ValCurve
from entrodrop_bench.paths import Layout
from entrodrop_bench.prepare.stage import prepare
from entrodrop_bench.train.trainer import Trainer

REPO = Path(__file__).resolve().parent.parent
FSDP_CONFIG = REPO / "configs" / "accelerate" / "fsdp.yaml"
# Measured (docs/multi-gpu.md): after 16 AdamW steps at lr 3e-3, per-step losses agree to 9.5e-7 (2 fp32 ulps of a
# loss near 5), final weights to 1.2e-7, per-document validation losses to 1.0e-6 (identical at step 0). The bounds
# leave room for other CPUs' summation order and stay far below what one step moves (~1e-2 in the loss, ~lr in a weight).
LOSS_ATOL = 5e-6
WEIGHT_ATOL = 2e-6
ENTRODROP = {"plugin": "entrodrop", "params": {"gamma_max": 0.4, "schedule": "static"}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_fsdp(config, tmp_path: Path, jobs: list, *, name: str) -> list[dict]:
    """`accelerate launch --config_file configs/accelerate/fsdp.yaml --num_processes 2 tests/fsdp_worker.py`;
    returns each rank's observations."""
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    out = tmp_path / f"{name}-facts"
    out.mkdir()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "ACCELERATE_USE_CPU": "true", "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(FSDP_CONFIG), "--num_processes", "2",
           "--main_process_ip", "127.0.0.1", "--main_process_port", str(_free_port()),
           str(REPO / "tests" / "fsdp_worker.py"), str(cfg), str(out), json.dumps(jobs)]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


def _log(layout: Layout, run: str) -> list[dict]:
    return [{"loss": r.loss, **r.model_extra} for r in TrainLog.read(TrainLog.path(layout, run, 0)).records]


def _final_weights(layout: Layout, run: str) -> dict[str, torch.Tensor]:
    return load_file(str(Layout.weights_file(layout.checkpoints(run, 0)[-1][1])))


def test_fsdp_two_processes_train_like_one_resume_exactly_and_evaluate(mini_config, tmp_path):
    runs = {"plain": {"plugin": "plain"}, "entrodrop": ENTRODROP}
    config = mini_config(methods=runs, train={"checkpoint_every_epochs": 1})
    one = mini_config(methods=runs, train={"checkpoint_every_epochs": 1},
                      output={"runs_dir": str(tmp_path / "one"), "results_dir": str(tmp_path / "rone")})
    prepared = prepare(one, Layout.from_config(one), echo=lambda s: None)
    for run in runs:
        assert Trainer(prepared, run, 0, progress=False).train() == "complete"
    stop = prepared.plan.checkpoint_steps(1)[0] + 2
    assert stop < prepared.plan.total_steps
    split = str(tmp_path / "split")
    # One launched job: both runs, then `plain` again in another runs_dir, interrupted after `stop` and resumed.
    facts = launch_fsdp(config, tmp_path, [["plain", None, None], ["entrodrop", None, None], ["plain", stop, split],
                                           ["plain", None, split]], name="fsdp")
    assert all(f["states"] == ["complete", "complete", "running", "complete"] for f in facts)
    assert {p["distributed_type"] for f in facts for p in f["prepared"]} == {"DistributedType.FSDP"}
    assert {p["class"] for f in facts for p in f["prepared"]} == {"FSDPQwen3ForCausalLM"}  # fully_shard's class
    ref, fsdp = Layout.from_config(one), Layout.from_config(config)
    resumed = Layout.from_config(mini_config(output={"runs_dir": split, "results_dir": str(tmp_path / "rsplit")}))
    for run in runs:
        a, b = _log(ref, run), _log(fsdp, run)
        assert len(a) == len(b) == prepared.plan.total_steps
        np.testing.assert_allclose([r["loss"] for r in b], [r["loss"] for r in a], rtol=0, atol=LOSS_ATOL)
        wa, wb = _final_weights(ref, run), _final_weights(fsdp, run)
        assert set(wa) == set(wb)
        for k in wa:
            torch.testing.assert_close(wb[k], wa[k], rtol=0, atol=WEIGHT_ATOL, msg=f"{run}: {k}")
        ca, cb = ValCurve.read(ValCurve.path(ref, run, 0)), ValCurve.read(ValCurve.path(fsdp, run, 0))
        # validation, sharded over the two processes and gathered in document order: same documents, same losses
        assert (ca.doc_ids, ca.doc_tokens) == (cb.doc_ids, cb.doc_tokens)
        np.testing.assert_allclose(cb.points[0].doc_losses, ca.points[0].doc_losses, rtol=0, atol=1e-6)  # base model
        for pa, pb in zip(ca.points, cb.points, strict=True):
            np.testing.assert_allclose(pb.doc_losses, pa.doc_losses, rtol=0, atol=LOSS_ATOL)
    # EntroDrop's logged fractions cover the whole step's micro-batches, both processes': the same as one process
    a, b = _log(ref, "entrodrop"), _log(fsdp, "entrodrop")
    assert [r["masked_fraction"] for r in a] == [r["masked_fraction"] for r in b]
    assert [r["gated_fraction"] for r in a] == [r["gated_fraction"] for r in b]
    assert np.mean([r["masked_fraction"] for r in a]) > 0.05
    # Exact resume under FSDP: weights, the gathered AdamW state, schedule, data position and RNG
    assert [r["loss"] for r in _log(resumed, "plain")] == [r["loss"] for r in _log(fsdp, "plain")]
    wa, wb = _final_weights(fsdp, "plain"), _final_weights(resumed, "plain")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # Evaluation reads the FSDP checkpoint as it reads any other: same logits as the one-process checkpoint's
    from entrodrop_bench.evaluate.stage import _Loaded

    ids = torch.tensor([prepared.target_val.docs()[0][:32]])
    logits = []
    for layout in (ref, fsdp):
        model, _ = _Loaded(layout.checkpoints("plain", 0)[-1][1], config).model_and_tokenizer()
        with torch.no_grad():
            logits.append(model(input_ids=ids).logits)
    torch.testing.assert_close(logits[1], logits[0], rtol=0, atol=1e-4)


def test_fsdp_bf16_mixed_reduces_in_fp32_checkpoints_activations_once_and_loads_the_base_model_once(mini_config, tmp_path):
    """The real presets' precision under the FSDP config: the policy the prepared model holds gathers parameters in
    bf16 and reduces gradients in fp32 (accelerate's default for bf16 reduces in bf16); activation checkpointing is
    FSDP's alone (the config turns it on; the trainer's own would recompute each layer a second time); each process
    reads the base model once, in model.dtype, for training and the validation entropies' fingerprint alike."""
    config = mini_config(model={"dtype": "bfloat16"}, train={"precision": "bf16-mixed", "gradient_checkpointing": True})
    steps = 2
    facts = launch_fsdp(config, tmp_path, [["plain", steps, None]], name="bf16")
    for rank in facts:
        assert rank["states"] == ["running"]
        (prepared,) = rank["prepared"]
        assert prepared["distributed_type"] == "DistributedType.FSDP"
        assert prepared["mp_policy"] == {"param_dtype": "torch.bfloat16", "reduce_dtype": "torch.float32"}
        # No process upcasts the whole model to fp32 on the host: accelerate upcasts the main process's copy as it
        # shards it, after moving the others' to the meta device (they receive their shards from the main process).
        assert prepared["dtypes_before_sharding"] == ["torch.bfloat16"]
        assert prepared["checkpoint_wrappers"] == prepared["layers"] and not prepared["hf_gradient_checkpointing"]
        # Each training forward of a layer is recomputed once in the backward: two calls per layer per micro-batch.
        micro = rank["micro_batch_forwards"]
        assert micro == steps * 1 and rank["layer_forwards_training"] == 2 * prepared["layers"] * micro, rank
        loads = rank["loads"]
        assert loads[loads.index("train") + 1:] == [{"devices": ["cpu"], "dtypes": ["torch.bfloat16"]}], loads
        assert rank["pg_timeout_s"] == 120 * 60  # the harness's process-group timeout, not torch's 30 (gloo) or 10 (NCCL) minutes


def test_fsdp_refuses_micro_batches_that_do_not_divide_over_the_processes(mini_config):
    """Each FSDP forward gathers the shards with every process: a process with one micro-batch fewer would leave
    the others waiting forever. Refused before any model is read, naming the settings to change."""
    from types import SimpleNamespace

    from accelerate import DistributedType

    from entrodrop_bench.errors import UserError

    config = mini_config()  # 8 rows per step
    trainer = Trainer(prepare(config, Layout.from_config(config), echo=lambda s: None), "plain", 0, progress=False)
    fsdp = SimpleNamespace(distributed_type=DistributedType.FSDP, num_processes=3)
    with pytest.raises(UserError, match=r"2 micro-batches per step .* 3 FSDP processes.*train.micro_batch_size"):
        trainer._check_micro_batches(fsdp, 4)
    trainer._check_micro_batches(SimpleNamespace(distributed_type=DistributedType.FSDP, num_processes=2), 4)
    trainer._check_micro_batches(SimpleNamespace(distributed_type=DistributedType.MULTI_CPU, num_processes=3), 4)
