"""benchmarks/gpu_eval.py: vLLM vs HF generation time per checkpoint. Here its CPU side (workload, HF engine,
JSON) runs as `--dry-run`; the real measurement needs CUDA and the vllm extra and skips without them."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import load_module_from_file


def _gpu_eval():
    return load_module_from_file("benchmarks/gpu_eval.py", "gpu_eval")


def test_agreement_and_summary_arithmetic():
    mod = _gpu_eval()
    assert mod.agreement([[1, 2, 3, 4], [5, 6, 7, 8]], [[1, 2, 3, 4], [5, 9, 7, 8]]) == \
        {"identical_prompts": 0.5, "mean_prefix_share": (1.0 + 0.25) / 2}
    s = mod.summarize({"load_s": 1.0, "generate_s": 2.0}, n_prompts=4, new_tokens=50)
    assert s["generated_tokens"] == 200 and s["tokens_per_s"] == 100.0
    assert s["paper_checkpoint_generation_h_upper_bound"] == pytest.approx(10_600 * 1_024 / 100 / 3600)


def test_dry_run_measures_hf_on_both_models_and_says_vllm_was_not_run(tmp_path):
    result = _gpu_eval().main(["--dry-run", "--out", str(tmp_path)])
    (path,) = tmp_path.glob("*_eval_backends_dry_run.json")
    written = json.loads(path.read_text())
    assert written == json.loads(json.dumps(result)) and result["dry_run"] is True
    assert set(result["models"]) == {"tiny_preset", "qwen3_0.6b_shape"}
    for entry in result["models"].values():
        assert entry["prompts"] == 4 and entry["new_tokens"] == 8 and 0 < entry["mean_prompt_tokens"] <= 16
        assert entry["hf"]["generated_tokens"] == 32 and entry["hf"]["tokens_per_s"] > 0
        assert entry["vllm"] == {"skipped": "dry run"} and "agreement" not in entry


@pytest.mark.vllm
@pytest.mark.slow
def test_small_run_measures_vllm_and_hf_and_they_agree(tmp_path):
    """The benchmark's vLLM side, as it builds its engine (on vLLM's CPU build here: `make test-vllm`)."""
    from entrodrop_bench.evaluate.vllm_backend import backend_problem

    if (problem := backend_problem()) is not None:
        pytest.skip(f"real vLLM cannot run here: {problem}")
    result = _gpu_eval().main(["--small", "--out", str(tmp_path)])
    assert result["vllm"] and not result["dry_run"] and list(tmp_path.glob("*_eval_backends_small.json"))
    for entry in result["models"].values():
        assert entry["vllm"]["tokens_per_s"] > 0 and entry["hf"]["tokens_per_s"] > 0
        if not torch.cuda.is_available():  # fp32 on CPU: the same greedy tokens
            assert entry["agreement"] == {"identical_prompts": 1.0, "mean_prefix_share": 1.0}


@pytest.mark.vllm
@pytest.mark.slow
def test_vllm_and_hf_are_both_measured_on_a_gpu(tmp_path):
    pytest.importorskip("vllm", reason="needs the vllm extra (pip install -e '.[vllm]')")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device: a GPU timing benchmark (the Qwen3-0.6B shape's vLLM engine alone takes ~4 min "
                    "to start on CPU; the small run above covers its vLLM path there)")
    result = _gpu_eval().main(["--prompts", "32", "--new-tokens", "16", "--out", str(tmp_path)])
    for entry in result["models"].values():
        assert entry["vllm"]["tokens_per_s"] > 0 and entry["hf"]["tokens_per_s"] > 0
        assert 0.0 <= entry["agreement"]["identical_prompts"] <= 1.0
