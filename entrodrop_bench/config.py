"""Typed experiment configs: one YAML per experiment, validated before any compute.

Each section is a pydantic model whose fields carry their own docstrings (torchtitan style).
`load_config(path, overrides)` reads the YAML, applies `key.path=value` overrides, and returns an
`ExperimentConfig`, or raises `ConfigError` naming the key path, the bad value and what is allowed.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from entrodrop_bench.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class ModelConfig(Section):
    name_or_path: str = "tiny"
    """Hub id (e.g. Qwen/Qwen3-0.6B), a local HF folder, or `tiny` for the embedded tiny base model."""
    revision: str | None = None
    """Hub revision (commit or tag) to pin; recorded in the leaderboard."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Parameter dtype; on GPU, training runs under bf16 autocast through accelerate."""
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
    text_fields: list[str] = Field(default_factory=lambda: ["text"])
    """Fields concatenated (newline-separated) into one document; e.g. [question, answer]."""
    max_unique_tokens: int | None = Field(None, gt=0)
    """Cap on unique tokens kept: whole documents in reading order, reading stops there (the paper's 0.02B
    target corpus; for a large general corpus, the general share of the token budget)."""
    shuffle_seed: int | None = None
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

    @model_validator(mode="after")
    def _ratio_sums_to_one(self) -> DataConfig:
        if any(r < 0 for r in self.mix_ratio) or abs(sum(self.mix_ratio) - 1.0) > 1e-6:
            raise ValueError(f"data.mix_ratio {list(self.mix_ratio)} must be two non-negative numbers summing to 1")
        return self


class TrainConfig(Section):
    lr: float = Field(1e-3, gt=0)
    """Peak learning rate."""
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_fraction: float = Field(0.02, ge=0, lt=1)
    """Linear warmup, as a fraction of total steps."""
    global_batch_tokens: int = Field(4096, gt=0)
    """Tokens per optimizer step (sequences x seq_len), reached with gradient accumulation."""
    micro_batch_size: int = Field(16, gt=0)
    """Sequences per forward pass on one device."""
    grad_clip: float = Field(1.0, gt=0)
    checkpoint_every_epochs: float = Field(1.0, gt=0)
    """Checkpoint interval, in target-domain epochs."""
    keep_checkpoints: int | None = Field(None, gt=0)
    """Keep only the newest N checkpoints (None keeps all: every one is evaluated)."""
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    threads: int | None = Field(None, gt=0)
    """torch CPU threads per run (None: torch default)."""
    parallel_runs: int = Field(1, gt=0)
    """Runs trained side by side on CPU, one process each (two single-thread runs beat one two-thread run)."""


class MethodConfig(Section):
    plugin: str
    """Registered regularizer name (see `entrodrop-bench plugins`)."""
    params: dict[str, Any] = Field(default_factory=dict)
    """Plugin config; validated against the plugin's own Config."""
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    """Sweep: param -> values. Every grid point is its own run; selection reports the best per method."""
    table: str | None = None
    """Which table family the method belongs to (main, targeting, gamma, schedule); None: main."""


class EvalConfig(Section):
    lm_eval_tasks: list[str] = Field(default_factory=list)
    """lm-eval task names (built-in, or YAMLs under tasks/)."""
    evalplus_datasets: list[str] = Field(default_factory=list)
    """evalplus datasets: humaneval, mbpp, tiny_code."""
    domains: dict[str, list[str]] = Field(default_factory=dict)
    """Domain -> benchmarks averaged into it (e.g. math: [gsm8k, svamp])."""
    target_domain: str = "math"
    """Domain whose average selects each method's checkpoint."""
    selection: Literal["target_avg", "val_loss"] = "target_avg"
    """`target_avg`: the paper's rule; `val_loss`: the held-out validation minimum (no test selection)."""
    batch_size: int = Field(16, gt=0)
    limit: int | None = Field(None, gt=0)
    """Evaluate only the first N examples of each benchmark."""
    num_fewshot: int | None = Field(None, ge=0)
    max_gen_toks: int = Field(256, gt=0)
    data_overrides: dict[str, str] = Field(default_factory=dict)
    """Benchmark -> local data file, so that every benchmark can run offline."""
    allow_weak_isolation: bool = False
    """Run model-generated code (evalplus_datasets) even without bubblewrap, under the weaker `unshare` or
    `none` sandbox, which leave the host file system readable and writable to it with the permissions of
    `nobody` (as root) or of this user. Off: code evaluation without bubblewrap is refused before any work.
    The level used is recorded in every result's provenance (`sandbox`) and in the tables' notes."""


class OutputConfig(Section):
    runs_dir: str = "runs/tiny"
    """Checkpoints, results store and caches (gitignored)."""
    results_dir: str = "results/tiny"
    """Tables, figures and the run's leaderboard entries."""


class TinyWorldConfig(Section):
    seed: int = 1234
    """Seed of the whole generated world: corpora, tokenizer, base model, benchmarks."""
    target_domain: Literal["math", "code"] = "math"
    n_target_docs: int = Field(250, gt=0)
    n_general_docs: int = Field(20000, gt=0)
    n_benchmark: int = Field(200, gt=0)
    """Held-out examples per tiny benchmark."""
    vocab_size: int = Field(1024, gt=64)
    hidden_size: int = Field(128, gt=0)
    num_layers: int = Field(3, gt=0)
    num_heads: int = Field(4, gt=0)
    pretrain_tokens: int = Field(900_000, gt=0)
    """General plus domain-format tokens the tiny base model is pre-trained on."""
    pretrain_domain_fraction: float = Field(0.6, ge=0, le=1)
    """Share of base pre-training spent on fresh domain-format text (never the target docs or benchmarks)."""


class ExperimentConfig(Section):
    name: str
    """Experiment name; also the leaderboard's preset key."""
    preset: str = "tiny"
    """Which paper setting this reproduces (e.g. qwen3-0.6b-math) or `tiny`."""
    paper_table: int | None = None
    """Paper table the preset reproduces (1-4), for side-by-side reference columns."""
    model: ModelConfig = Field(default_factory=ModelConfig)
    tiny: TinyWorldConfig | None = None
    """Only for the embedded preset: how to generate its world."""
    data: DataConfig
    train: TrainConfig = Field(default_factory=TrainConfig)
    methods: dict[str, MethodConfig]
    eval: EvalConfig = Field(default_factory=EvalConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)

    def config_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:16]


def _format_loc(prefix: str, loc: tuple) -> str:
    parts = [prefix] if prefix else []
    parts += [str(p) for p in loc if not (isinstance(p, str) and p.startswith("function-after"))]
    return ".".join(parts) or "(root)"


def validate_model(cls: type[M], data: Any, *, key_path: str = "") -> M:
    """Validate `data` into `cls`; translate pydantic's errors into one ConfigError naming each key path."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = _format_loc(key_path, err["loc"])
            value = err.get("input")
            if err["type"] == "extra_forbidden":
                allowed = ", ".join(sorted(cls.model_fields)) if len(err["loc"]) == 1 else "see the section's fields"
                lines.append(f"{where}: unknown key (allowed here: {allowed})")
            elif err["type"] == "missing":
                lines.append(f"{where}: required key is missing")
            else:
                lines.append(f"{where}: {err['msg']} (got {value!r})")
        raise ConfigError("Invalid config:\n  " + "\n  ".join(lines)) from None


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key.path=value, e.g. train.lr=3e-4")
    key, raw = text.split("=", 1)
    return key.strip().split("."), yaml.safe_load(raw) if raw.strip() else None


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    for text in overrides:
        keys, value = _parse_override(text)
        node = data
        for k in keys[:-1]:
            if not isinstance(node.get(k, {}), dict):
                raise ConfigError(f"override {text!r}: {k!r} is not a section")
            node = node.setdefault(k, {})
        node[keys[-1]] = value
    return data


def _deep_merge(base: dict, child: dict) -> dict:
    out = dict(base)
    for key, value in child.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def read_yaml(path: Path, _seen: tuple[Path, ...] = ()) -> dict:
    """Read a config YAML; a top-level `base: other.yaml` (relative to this file) is deep-merged under it."""
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist (expected a YAML file, e.g. configs/tiny.yaml)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping of sections at the top level, got {type(data).__name__}")
    base = data.pop("base", None)
    if base is None:
        return data
    base_path = (path.parent / str(base)).resolve()
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
    """Read, override and validate an experiment config; every check happens before any compute."""
    data = apply_overrides(read_yaml(Path(path)), overrides or [])
    config = validate_model(ExperimentConfig, data)
    check_references(config)
    return config


def check_references(config: ExperimentConfig) -> None:
    """Checks that need more than types: registered plugins, plugin params, local files."""
    from entrodrop_bench.regularizer import build_regularizer

    for name, method in config.methods.items():
        for params in expand_grid(method):
            build_regularizer(method.plugin, params, key_path=f"methods.{name}")
    for key, corpus in (("data.target", config.data.target), ("data.general", config.data.general)):
        if corpus.path is not None and not Path(corpus.path).exists():
            raise ConfigError(f"{key}.path: file {corpus.path} does not exist (expected a local jsonl/json/parquet corpus)")
    for bench, file in config.eval.data_overrides.items():
        if not Path(file).exists():
            raise ConfigError(f"eval.data_overrides.{bench}: file {file} does not exist")
    unknown = {b for bs in config.eval.domains.values() for b in bs} - set(config.eval.lm_eval_tasks) - set(
        config.eval.evalplus_datasets
    )
    if unknown:
        raise ConfigError(f"eval.domains: benchmarks {sorted(unknown)} are not in eval.lm_eval_tasks or eval.evalplus_datasets")
    if config.eval.domains and config.eval.target_domain not in config.eval.domains:
        raise ConfigError(
            f"eval.target_domain: {config.eval.target_domain!r} is not one of eval.domains ({', '.join(config.eval.domains)})"
        )
    if config.model.name_or_path == "tiny" and config.tiny is None:
        raise ConfigError("tiny: model.name_or_path is `tiny` but the config has no `tiny:` section to build it from")


def expand_grid(method: MethodConfig) -> list[dict[str, Any]]:
    """Every grid point of a method as a full params dict (one point when there is no grid)."""
    if not method.grid:
        return [dict(method.params)]
    keys = sorted(method.grid)
    return [{**method.params, **dict(zip(keys, values))} for values in itertools.product(*(method.grid[k] for k in keys))]


def run_names(config: ExperimentConfig) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """Run name -> (method name, plugin, params). A grid point's run name appends `key=value` pairs."""
    runs = {}
    for name, method in config.methods.items():
        for params in expand_grid(method):
            suffix = ",".join(f"{k}={params[k]}" for k in sorted(method.grid))
            runs[f"{name}@{suffix}" if suffix else name] = (name, method.plugin, params)
    return runs
