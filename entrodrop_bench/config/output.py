"""`output:`: where runs, caches and results are written, and where training metrics are sent."""

from __future__ import annotations

import importlib.util
from typing import Literal

from pydantic import Field, model_validator

from entrodrop_bench.config.base import Section
from entrodrop_bench.errors import shown
from entrodrop_bench.validation import FieldProblem

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
