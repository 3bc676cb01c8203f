"""Typed files that pass between stages: one pydantic model per file, one `read` and one `write` each.

Every stage reads the previous stage's files only through these models, and writes its own only through
them (atomically: a reader sees the old file or the new one, never half of one). A file written by an
incompatible version of this code is refused with what wrote it and which stage to re-run, instead of
being half-understood.

    file                                         model              written by
    train/<run>/seed<k>/status.json              RunStatus          train
    (more models are added below as stages move onto them)

Paths come from `paths.Layout`; nothing here forms a file name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from entrodrop_bench.atomic import write_text
from entrodrop_bench.errors import DataError


class ArtifactError(DataError):
    """An inter-stage file is missing, unreadable, or written by an incompatible version."""


class Artifact(BaseModel):
    """Base of every inter-stage file. Subclasses set FORMAT (bump it on an incompatible change) and STAGE
    (the command that writes the file, named in errors so the user knows what to re-run)."""

    model_config = ConfigDict(extra="forbid", frozen=False)

    FORMAT: ClassVar[int] = 1
    STAGE: ClassVar[str] = ""
    """The `entrodrop-bench` command that writes this file (re-running it rewrites the file)."""

    format_version: int = 0
    """Format of the file; set by `write`, checked by `read`."""

    @classmethod
    def read(cls, path: Path):
        """The file at `path` as this model. Raises ArtifactError naming the file, what is wrong and the stage to
        re-run (missing file, not JSON, other format version, fields that do not validate)."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ArtifactError(f"{path} does not exist: run `entrodrop-bench {cls.STAGE}` first") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ArtifactError(f"{path} cannot be read ({exc}); re-run `entrodrop-bench {cls.STAGE}`") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ArtifactError(f"{path} is not valid JSON ({exc}); re-run `entrodrop-bench {cls.STAGE}`") from None
        return cls.from_data(data, path)

    @classmethod
    def from_data(cls, data: Any, path: Path | str = "<data>"):
        """Validate already-parsed JSON (`read` without the file system), with the same errors."""
        cls._check_format(data, path)
        try:
            return cls.model_validate(cls.upgrade(data))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}" for e in exc.errors()[:5])
            raise ArtifactError(f"{path} is not a valid {cls.__name__} file ({problems}); re-run "
                                f"`entrodrop-bench {cls.STAGE}`") from None

    @classmethod
    def read_or_none(cls, path: Path):
        """The file as this model, or None when it does not exist (other problems still raise)."""
        return cls.read(path) if path.exists() else None

    @classmethod
    def upgrade(cls, data: dict) -> dict:
        """Turn a file of an older, still-readable format into the current one (default: unchanged)."""
        return data

    READABLE_FORMATS: ClassVar[tuple[int, ...]] = ()
    """Older format versions that `upgrade` turns into the current one."""

    @classmethod
    def _check_format(cls, data: Any, path: Path | str) -> None:
        if not isinstance(data, dict):
            raise ArtifactError(f"{path}: expected a JSON object, got {type(data).__name__}; re-run "
                                f"`entrodrop-bench {cls.STAGE}`")
        version = data.get("format_version", 0)
        if version != cls.FORMAT and version not in cls.READABLE_FORMATS:
            raise ArtifactError(f"{path} was written in {cls.__name__} format {version}, this version of "
                                f"entrodrop-bench reads format {cls.FORMAT}: re-run `entrodrop-bench {cls.STAGE}`")

    def write(self, path: Path) -> None:
        """Write atomically (temp file, then rename) with the current format version."""
        self.format_version = type(self).FORMAT
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, self.model_dump_json(indent=2) + "\n")


class RunStatus(Artifact):
    """State of one training run (run, seed); `train.run_is_complete` also checks the files it promises."""

    STAGE: ClassVar[str] = "train"

    state: Literal["running", "complete", "diverged"]
    """`running` while training (or after a crash), `complete` once the final checkpoint and logs are on disk."""


# =========================================================================== report: selection, leaderboard entries
#   <results_dir>/selection.json                 Selection           select
#   <results_dir>/leaderboard_entries.json       LeaderboardEntries  leaderboard build
# Scores are x100; a domain average is the mean of its benchmarks, the total the mean of the domain averages.


class _Record(BaseModel):
    """A nested record of a report file: unknown keys are refused, like the file's own."""

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="constants")


class Summary(_Record):
    """One value across the seeds that have a selected checkpoint."""

    mean: float
    std: float
    """Sample standard deviation (0 for one seed)."""
    ci95: list[float]
    """95% percentile-bootstrap interval of the mean (fixed RNG, so reruns give the same interval)."""
    n: int
    """Number of seeds."""


class CheckpointScores(_Record):
    """One evaluated checkpoint of one (run, seed)."""

    step: int
    target_epoch: float | None
    scores: dict[str, float | None]
    """Benchmark -> score x100; None when missing or not finite."""
    metrics: dict[str, str | None]
    """Benchmark -> the metric its score is (e.g. `exact_match,strict-match`)."""
    domain_avg: dict[str, float | None]
    """Domain -> mean of its benchmarks; None unless every one of them is scored."""
    total_avg: float | None
    val_loss: float | None
    """Held-out validation loss from the checkpoint's manifest (or the validation curve)."""
    trained_at_commit: str | None
    complete: bool
    """Every benchmark scored; only complete checkpoints are ever selected."""


class ValMinimum(_Record):
    """Lowest overall validation loss on one (run, seed)'s curve."""

    loss: float
    step: int
    target_epoch: float | None
    at_end: bool
    """The minimum is the curve's last point (the loss may still be falling)."""


class SeedSelection(_Record):
    """What selection found for one (run, seed)."""

    state: str
    """The run's status (`complete`, `running`, ...; `unknown` without status.json)."""
    selected: CheckpointScores | None
    """The representative checkpoint under the selection rule; None when no checkpoint qualifies."""
    checkpoints: list[CheckpointScores]
    """Every evaluated checkpoint, oldest first."""
    val_min: ValMinimum | None
    masked_fraction: float | None
    """Fraction of target tokens the regularizer masked (from the run's status)."""


class AggregateValMinimum(_Record):
    loss: Summary
    target_epoch: Summary | None
    at_end: bool
    """Some seed's minimum is its curve's last point."""


class Aggregate(_Record):
    """One run's selected checkpoints summarized across seeds."""

    seeds: list[int]
    """Seeds with a selected checkpoint, in order; the lists below follow it."""
    scores: dict[str, Summary]
    domain_avg: dict[str, Summary]
    total_avg: Summary
    step: list[int]
    target_epoch: list[float | None]
    val_loss: Summary | None
    """None unless every selected checkpoint has a validation loss."""
    val_min: AggregateValMinimum | None = None


class TableRoleRecord(_Record):
    """A run's table role as its plugin declared it (`regularizer.TableRole`), recorded so that the report reads
    roles from the selection and never needs the plugin."""

    label: str
    kind: Literal["baseline", "comparison", "proposed"]
    rank: int
    targets: Literal["all", "high", "low"] | None
    drop_rate: float | None


class RunSelection(_Record):
    """One run (a method at one grid point)."""

    method: str
    plugin: str
    role: TableRoleRecord
    params: dict[str, Any]
    seeds: dict[str, SeedSelection]
    """Seed (as text, a JSON key) -> its selection; seeds without evaluated checkpoints are absent."""
    aggregate: Aggregate | None


class MethodSelection(_Record):
    """One configured method: its grid points and the one that represents it."""

    plugin: str
    role: TableRoleRecord
    """The role of its first grid point (a method's grid points share label, kind and targets)."""
    table: str
    """Which paper table the method belongs to (`main`, `gamma`, `schedule`, ...)."""
    grid_keys: list[str]
    runs: list[str]
    """Its runs (grid points) in config order."""
    best_run: str | None
    """The grid point that represents the method; None when no run has a selected checkpoint."""


class SkippedRun(_Record):
    run: str
    seed: int
    reason: str


class MissingResult(_Record):
    run: str
    seed: int
    step: int
    benchmark: str
    reason: str


class SelectionInputs(_Record):
    """What a selection was computed from, so readers can tell when it no longer matches (see
    `report.selection.read_selection`)."""

    config: str
    """sha256 of the config settings that selection reads (name, preset, eval.domains, eval.selection,
    eval.target_domain, train.seeds, methods)."""
    files: dict[str, str]
    """Every file selection read (status, validation curve, checkpoint manifests, store results of the
    config's runs), as path relative to runs_dir -> sha256 of its content."""


class Selection(Artifact):
    """Each method's representative checkpoint, written by `select` and read by tables, figures and the
    leaderboard (which never recompute it)."""

    STAGE: ClassVar[str] = "select CONFIG"
    FORMAT: ClassVar[int] = 2  # 2: `inputs` added; format 1 cannot be checked for staleness
    model_config = ConfigDict(ser_json_inf_nan="constants")

    experiment: str
    preset: str
    rule: str
    """`target_avg` (the paper's rule) or `val_loss`."""
    target_domain: str
    domains: dict[str, list[str]]
    seeds: list[int]
    scale: str
    methods: dict[str, MethodSelection]
    runs: dict[str, RunSelection]
    skipped: list[SkippedRun]
    """(run, seed)s without a selection (diverged, not trained, nothing evaluated), with why."""
    missing: list[MissingResult]
    """Every (checkpoint, benchmark) without a usable score."""
    weak_isolation: dict[str, list[str]]
    """Sandbox level -> benchmarks whose generated code ran without bubblewrap."""
    inputs: SelectionInputs


class LeaderboardEntries(Artifact):
    """This experiment's leaderboard entries, one per method at its best grid point; `leaderboard publish`
    merges them into the shared leaderboard. Each entry follows results/leaderboard.schema.json, which
    `leaderboard build` and `publish` validate (the schema, not this model, is the entries' contract)."""

    STAGE: ClassVar[str] = "leaderboard build CONFIG"

    entries: list[dict[str, Any]]

    @classmethod
    def from_data(cls, data: Any, path: Path | str = "<data>"):
        # Files written before this model were a bare JSON list of entries; they read the same.
        if isinstance(data, list):
            data = {"format_version": cls.FORMAT, "entries": data}
        return super().from_data(data, path)
