"""The whole experiment config (ExperimentConfig), the checks that need all of it, and what identifies its runs
(`config_hash`, `run_key`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pydantic import Field, PrivateAttr, model_validator

from entrodrop_bench.atomic import json_sha256
from entrodrop_bench.config.base import MAX_RUN_NAME, Section, check_name, name_problem
from entrodrop_bench.config.data import DataConfig
from entrodrop_bench.config.evaluate import EvalConfig
from entrodrop_bench.config.launcher import LauncherConfig
from entrodrop_bench.config.methods import MethodConfig, RunSpec, _method_run_names
from entrodrop_bench.config.model import ModelConfig
from entrodrop_bench.config.output import TRACKING_FIELDS, OutputConfig
from entrodrop_bench.config.tiny import TINY_MAX_POSITIONS, TINY_SOURCES, TinyWorldConfig
from entrodrop_bench.config.train import TrainConfig
from entrodrop_bench.errors import ConfigError, shown
from entrodrop_bench.regularizer import declares_masking_rate, resolve_params
from entrodrop_bench.validation import FieldProblem

logger = logging.getLogger(__name__)


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


def run_names(config: ExperimentConfig) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """Run name -> (method name, plugin, params as written). A grid point's run name appends `key=value` pairs."""
    return {run: (spec.method, spec.plugin, spec.params) for run, spec in config.runs.items()}


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
