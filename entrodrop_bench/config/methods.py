"""`methods:`: each method's plugin, params and grid, and the runs they expand into (RunSpec)."""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Any

from pydantic import Field, model_validator

from entrodrop_bench.config.base import GRID_VALUE_RE, Section, check_name
from entrodrop_bench.errors import shown
from entrodrop_bench.regularizer import MethodTable, Regularizer, RegularizerConfig, ReportFields, TableRole
from entrodrop_bench.validation import FieldProblem


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
