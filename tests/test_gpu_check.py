"""benchmarks/gpu_check.py's measurement path (world, real trainer under bf16-mixed, JSON) at a tiny shape on CPU."""

from __future__ import annotations

import json

from helpers import load_module_from_file


def _gpu_check():
    return load_module_from_file("benchmarks/gpu_check.py", "gpu_check")


def test_gpu_check_runs_the_real_trainer_at_a_tiny_shape(tmp_path):
    result = _gpu_check().main(["--shape", "tiny", "--steps", "3", "--warmup", "1", "--out", str(tmp_path)])
    written = json.loads(next(tmp_path.glob("*_tiny_shape.json")).read_text())
    assert written == json.loads(json.dumps(result))
    assert result["settings"]["precision"] == "bf16-mixed" and result["settings"]["tokens_per_step"] == 2 * 4 * 128
    assert result["train"]["tokens_per_s_per_gpu"] > 0 and result["entrodrop_over_plain"]["ratio"] > 0
    if result["device"] == "cpu":  # no peak table and no CUDA memory statistics on CPU: said, not invented
        assert result["train"]["mfu"] is None and "skipped" in result["loss_memory"]
