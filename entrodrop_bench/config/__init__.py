"""Typed experiment configs: one YAML per experiment, validated before any compute.

Each section is a pydantic model whose fields carry their own docstrings (torchtitan style).
`load_config(path, overrides)` reads the YAML, applies `key.path=value` overrides, and returns an
`ExperimentConfig`, or raises `ConfigError` naming the key path, the bad value and what is allowed.
Validation resolves every method's params and grid point into its plugin's own typed Config once
(`ExperimentConfig.runs`: run name -> RunSpec), which the trainer, the pipeline and the reports use; every
check that needs the whole config is in `check_config`, which `load_config` runs.
"""

from __future__ import annotations

from entrodrop_bench.config.base import (
    GRID_VALUE_RE,
    MAX_RUN_NAME,
    NAME_RE,
    NAME_RULE,
    Section,
    Seed,
    check_name,
    name_problem,
)
from entrodrop_bench.config.data import CorpusConfig, DataConfig
from entrodrop_bench.config.evaluate import FIXED_SHOTS, EvalConfig, fixed_shots
from entrodrop_bench.config.experiment import (
    RUN_KEY_IGNORED_TRAIN_FIELDS,
    ExperimentConfig,
    check_config,
    check_dependencies,
    check_domains,
    check_output_dirs,
    check_rate_dependencies,
    check_seq_len_fits_model,
    run_key,
    run_names,
)
from entrodrop_bench.config.explain import explain_config, type_name
from entrodrop_bench.config.launcher import LAUNCHER_RESERVED_OPTIONS, SBATCH_OPTION_RE, LauncherConfig
from entrodrop_bench.config.load import (
    MAX_CONFIG_BYTES,
    MAX_YAML_NODES,
    apply_overrides,
    load_config,
    parse_yaml,
    read_yaml,
)
from entrodrop_bench.config.methods import MethodConfig, RunSpec, expand_grid
from entrodrop_bench.config.model import ModelConfig
from entrodrop_bench.config.output import TRACKING_FIELDS, OutputConfig
from entrodrop_bench.config.tiny import TINY_MAX_POSITIONS, TINY_SOURCES, TinyWorldConfig
from entrodrop_bench.config.train import TrainConfig

__all__ = [
    "GRID_VALUE_RE", "MAX_RUN_NAME", "NAME_RE", "NAME_RULE", "Section", "Seed", "check_name",
    "name_problem", "ModelConfig", "CorpusConfig", "DataConfig", "TrainConfig", "MethodConfig", "RunSpec",
    "expand_grid", "FIXED_SHOTS", "EvalConfig", "fixed_shots", "TRACKING_FIELDS", "OutputConfig",
    "LAUNCHER_RESERVED_OPTIONS", "SBATCH_OPTION_RE", "LauncherConfig", "TINY_MAX_POSITIONS",
    "TINY_SOURCES", "TinyWorldConfig", "RUN_KEY_IGNORED_TRAIN_FIELDS", "ExperimentConfig", "check_config",
    "check_dependencies", "check_domains", "check_output_dirs", "check_rate_dependencies",
    "check_seq_len_fits_model", "run_key", "run_names", "explain_config", "type_name", "MAX_CONFIG_BYTES",
    "MAX_YAML_NODES", "apply_overrides", "load_config", "parse_yaml", "read_yaml",
]
