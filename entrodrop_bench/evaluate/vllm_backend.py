"""`eval.backend: vllm`: generation through vLLM, one engine per checkpoint.

- lm-eval tasks: lm-eval's own vLLM model (registered as "vllm", `lm_eval/models/vllm_causallms.py`) answers
  `generate_until` requests; `loglikelihood*` requests go to the HF model (`HFLM`) as under `hf`. `RoutedLM`
  is the one lm-eval model a benchmark sees, and it records which engines answered (the result's provenance).
- Code benchmarks (evalplus, LiveCodeBench): the same engine's `LLM.generate`, greedy, with the HF path's
  prompt tokens (same tokenizer call, same left truncation), its stop strings and its `max_gen_toks`; the
  completion is cut at the first stop exactly as under HF (`evalplus_runner._truncate`).
- Nothing differs from the HF path in what is asked: greedy decoding, no chat template, the task's own stop
  sequences and generation cap. What can differ is numerics (other attention kernels, batch-dependent
  reductions), which is why the backend is part of a generated result's identity (`benchmarks.task_config_hash`).
- vllm is an optional extra (`pip install -e '.[vllm]'`) and needs CUDA; `check_backend` refuses `vllm` before
  any work where either is missing. This module imports vllm only inside functions, so it loads without it.
"""

from __future__ import annotations

import gc
import importlib.util
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lm_eval.api.model import LM

from entrodrop_bench.config import EvalConfig, ExperimentConfig
from entrodrop_bench.errors import ConfigError

log = logging.getLogger(__name__)

LM_EVAL_MODEL = "vllm"
"""lm-eval's registry name of its vLLM model class."""
VLLM_SEED = 1234
"""Engine seed (lm-eval's own default). Greedy decoding does not read it; it is fixed so nothing else varies."""


def backend_problem(*, need_device: bool = True) -> str | None:
    """Why vLLM cannot generate here (None: it can): not installed, or (with `need_device`) no CUDA device."""
    if importlib.util.find_spec("vllm") is None:
        return "the vllm package is not installed (it is the optional extra `vllm`: pip install -e '.[vllm]')"
    if need_device:
        import torch

        if not torch.cuda.is_available():
            return "no CUDA device is visible to torch (vLLM generates on GPUs only)"
    return None


def check_backend(ev: EvalConfig, *, need_device: bool = True) -> None:
    """Refuse `eval.backend: vllm` where it cannot run, naming the field; `hf` always passes."""
    if ev.backend == "hf":
        return
    if (problem := backend_problem(need_device=need_device)) is not None:
        raise ConfigError(f"eval.backend: {ev.backend!r} cannot run here: {problem}. Use eval.backend: hf "
                          "(transformers generate, any device), or evaluate on a machine with vllm and a GPU")


def lm_eval_vllm_class() -> type:
    """lm-eval's vLLM model class, through lm-eval's model registry (importing it imports vllm)."""
    from lm_eval.api.registry import get_model

    return get_model(LM_EVAL_MODEL)


def lm_eval_vllm_args(config: ExperimentConfig, checkpoint_dir: Path) -> dict[str, Any]:
    """Constructor arguments of lm-eval's vLLM model for one checkpoint (an HF folder vLLM loads itself).

    `batch_size: auto` hands every request of a task to vLLM's scheduler at once; batching does not change
    greedy outputs beyond numerical noise. `max_gen_toks` is only the default: each task passes its own."""
    ev = config.eval
    args: dict[str, Any] = {"pretrained": str(checkpoint_dir), "dtype": config.model.dtype, "batch_size": "auto",
                            "max_gen_toks": ev.max_gen_toks, "seed": VLLM_SEED,
                            "gpu_memory_utilization": ev.vllm_gpu_memory_utilization}
    if ev.vllm_max_model_len is not None:
        args["max_model_len"] = ev.vllm_max_model_len
    return args


class RoutedLM(LM):
    """One lm-eval model over two engines: generation to vLLM, loglikelihoods to HF. Each engine is built on
    first use (`vllm()` / `hf()` are the checkpoint's lazy loaders), so a benchmark loads only what it asks for."""

    def __init__(self, hf: Callable[[], LM], vllm: Callable[[], LM]):
        super().__init__()
        self._hf, self._vllm = hf, vllm
        self.served: set[str] = set()
        """Engines that answered since the last `reset_served` (the result's `backend`)."""

    def reset_served(self) -> None:
        self.served = set()

    def generate_until(self, requests: list, *args: Any, **kwargs: Any) -> list[str]:
        self.served.add("vllm")
        return self._vllm().generate_until(requests, *args, **kwargs)

    def loglikelihood(self, requests: list, *args: Any, **kwargs: Any) -> list:
        self.served.add("hf")
        return self._hf().loglikelihood(requests, *args, **kwargs)

    def loglikelihood_rolling(self, requests: list, *args: Any, **kwargs: Any) -> list:
        self.served.add("hf")
        return self._hf().loglikelihood_rolling(requests, *args, **kwargs)

    def served_backend(self) -> str:
        """`vllm` when vLLM generated any output of the benchmark, else `hf`."""
        return "vllm" if "vllm" in self.served else "hf"


def prompt_token_ids(tokenizer: Any, prompts: list[str], *, max_positions: int, max_new_tokens: int) -> list[list[int]]:
    """The HF code path's prompt tokens (`evalplus_runner.generate`): same tokenizer call, an over-long prompt
    keeping its end (where the function starts), room left for `max_new_tokens`."""
    tokenizer.truncation_side = "left"
    max_prompt = max(8, max_positions - max_new_tokens)
    return [list(ids) for ids in tokenizer(prompts, truncation=True, max_length=max_prompt)["input_ids"]]


def generate(llm: Any, tokenizer: Any, prompts: list[str], *, max_new_tokens: int, stop: tuple[str, ...],
             max_positions: int) -> list[str]:
    """Greedy completions from a vLLM engine, cut at the first `stop` as on the HF path."""
    from vllm import SamplingParams

    from entrodrop_bench.evaluate.evalplus_runner import _truncate

    ids = prompt_token_ids(tokenizer, prompts, max_positions=max_positions, max_new_tokens=max_new_tokens)
    params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens, stop=list(stop), skip_special_tokens=True,
                            seed=VLLM_SEED)
    outputs = llm.generate([{"prompt_token_ids": p} for p in ids], params, use_tqdm=False)
    return [_truncate(out.outputs[0].text, stop) for out in outputs]


def engine_max_positions(lm: Any, fallback: int) -> int:
    """The engine's context length (`eval.vllm_max_model_len`, else the checkpoint's), capped by `fallback`."""
    try:
        return min(int(lm.model.llm_engine.model_config.max_model_len), fallback)
    except (AttributeError, TypeError, ValueError):
        return fallback


def release(lm: Any) -> None:
    """Free a vLLM engine's GPU memory before the next engine (HF, or the next checkpoint's vLLM) loads."""
    engine = getattr(lm, "model", None)
    if engine is not None:
        del lm.model
    del engine
    try:  # vLLM's own teardown of its distributed state; absent or renamed in some versions
        from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

        cleanup_dist_env_and_memory()
    except Exception as exc:  # noqa: BLE001 - best effort: the gc below still frees the weights
        log.debug("vllm cleanup: %s", exc)
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
