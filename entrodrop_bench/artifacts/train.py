"""The files `train` writes for each (run, seed): `RunStatus`, `ValCurve`, `TrainLog` and each checkpoint's
`CheckpointManifest`, with the cost record (`TrainCost`) they carry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from entrodrop_bench import RUN_FORMAT_VERSION
from entrodrop_bench.artifacts.base import Artifact, ArtifactError
from entrodrop_bench.atomic import write_text
from entrodrop_bench.paths import Layout

_RUN_REMEDY = "delete the run's folder (or use another output.runs_dir) and re-run `entrodrop-bench {stage}`"


class TrainCost(BaseModel):
    """What a run's training cost so far, measured by the trainer (definitions: `entrodrop_bench.cost`)."""

    model_config = ConfigDict(extra="forbid")

    steps: int
    """Optimizer steps in the model."""
    tokens_trained: int
    """`steps` x tokens per step (train.global_batch_tokens in whole rows of data.seq_len)."""
    train_flops: float
    """`cost.flops_per_token` x `tokens_trained`: 6·N·tokens plus the attention term."""
    flops_params: int
    """N of that formula: every parameter but the input embedding table (a tied LM head counted once)."""
    train_wall_s: float
    """Wall seconds training took, summed over every session of the run (a resume adds to it)."""
    device: str
    """Device of the latest session: `cpu`, the GPU's name (torch), or `mps`."""
    device_count: int
    """Processes of the latest session (accelerate's world size), one device each."""
    device_hours: float
    """Training wall x device count, summed per session, in hours."""
    sessions: int = 1
    """Training sessions (processes started) that added to the wall time."""


class RunStatus(Artifact):
    """State of one training run (run, seed); `train.run_is_complete` also checks the files it promises."""

    FORMAT: ClassVar[int] = RUN_FORMAT_VERSION
    STAGE: ClassVar[str] = "train CONFIG"
    REMEDY: ClassVar[str] = _RUN_REMEDY

    state: Literal["running", "complete", "diverged"]
    """`running` while training (or after a crash), `complete` once the final checkpoint and logs are on disk."""
    reason: str | None = None
    """Why the run diverged (None otherwise)."""
    total_steps: int
    """Optimizer steps of the whole run."""
    method: str
    """Method name in the config (`methods.<name>`)."""
    plugin: str
    """Registered regularizer plugin the method uses."""
    params: dict[str, Any]
    """The plugin's parameters for this run (one grid point of a sweep)."""
    seed: int
    """Training seed."""
    config_hash: str
    """`ExperimentConfig.config_hash()` of the experiment that trained the run."""
    run_key: str
    """`config.run_key`: what the run trains; another experiment reuses the run when its key is equal."""
    stats: dict[str, float] = {}
    """Each value the method logged, averaged over the run (written when it completes)."""
    resolved: dict[str, Any] = {}
    """Params the method resolved before training (`Regularizer.resolved_params`: a rate-matched gamma_max, j0's
    step); empty for a method that resolves none, and in statuses written before this field existed."""
    cost: TrainCost | None = None
    """What training cost up to now (None in statuses written before cost accounting)."""
    updated: str
    """UTC time of this write (ISO 8601)."""

    @classmethod
    def path(cls, layout: Layout, run: str, seed: int) -> Path:
        return layout.status_file(run, seed)


class ValPoint(BaseModel):
    """Held-out validation loss at one step, overall and in the paper's two entropy groups."""

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="constants")

    step: int
    """Optimizer steps done (0: the base model)."""
    target_epoch: float
    """Epochs over the target corpus done at `step`."""
    overall: float
    """Mean loss over every label token (NaN when a group has no token)."""
    low_entropy: float
    """Mean loss over the 50% of tokens the base model is most confident about."""
    high_entropy: float
    """Mean loss over the 25% of tokens the base model is least confident about."""
    doc_losses: list[float] | None = None
    """Mean loss over each validation document's label tokens, aligned with the curve's `doc_ids` (format 2;
    None in format-1 curves, and at points recorded by a version before it in a run resumed since)."""


# Decimals kept of a per-document loss on disk: far below the bootstrap's resolution, and it keeps files small.
DOC_LOSS_DECIMALS = 6


class ValCurve(Artifact):
    """Validation losses of one run at step 0 and every checkpoint, oldest first, with each validation
    document's loss at every point (from the same forward pass as the run-level numbers).

    On disk format 2 is an object: `format_version`, `doc_ids`, `doc_tokens` (once per run) and `points`, one
    line each. Format 1, what every version before wrote, is a bare JSON list of points; it still reads, with no
    per-document losses (statistics that need them then say so)."""

    FORMAT: ClassVar[int] = 2
    READABLE_FORMATS: ClassVar[tuple[int, ...]] = (1,)
    STAGE: ClassVar[str] = "train CONFIG"
    REMEDY: ClassVar[str] = _RUN_REMEDY

    points: list[ValPoint] = Field(default_factory=list)
    """The curve, by increasing step."""
    doc_ids: list[int] | None = None
    """Validation documents with at least one label token, by their index in the prepared validation split,
    in order; None in format-1 files."""
    doc_tokens: list[int] | None = None
    """Label tokens of each document of `doc_ids`: the weights under which the per-document losses average to
    `overall` (a token-weighted mean, as the run-level loss is)."""

    @model_validator(mode="after")
    def _docs_align(self) -> ValCurve:
        n = None if self.doc_ids is None else len(self.doc_ids)
        if (self.doc_tokens is None) != (n is None) or (n is not None and len(self.doc_tokens) != n):
            raise ValueError(f"doc_ids ({n}) and doc_tokens ({None if self.doc_tokens is None else len(self.doc_tokens)}) "
                             "must both be given, with one entry per document")
        for p in self.points:
            if p.doc_losses is not None and len(p.doc_losses) != (n or 0):
                raise ValueError(f"step {p.step}: {len(p.doc_losses)} per-document losses for {n or 0} doc_ids")
        return self

    @classmethod
    def path(cls, layout: Layout, run: str, seed: int) -> Path:
        return layout.val_curve_file(run, seed)

    @classmethod
    def from_data(cls, data: Any, path: Path | str = "<data>") -> ValCurve:
        if isinstance(data, list):
            data = {"format_version": 1, "points": data}
        return super().from_data(data, path)

    def write(self, path: Path) -> None:
        self.format_version = self.FORMAT
        points = []
        for p in self.points:
            point = p.model_dump()
            if p.doc_losses is not None:
                point["doc_losses"] = [round(x, DOC_LOSS_DECIMALS) for x in p.doc_losses]
            points.append(json.dumps(point))
        head = [f'"format_version": {self.FORMAT}', f'"doc_ids": {json.dumps(self.doc_ids)}',
                f'"doc_tokens": {json.dumps(self.doc_tokens)}']
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, "{" + ",\n".join(head) + ',\n"points": [\n' + ",\n".join(points) + "\n]}\n")

    def last_step(self) -> int | None:
        return self.points[-1].step if self.points else None


class TrainLogRecord(BaseModel):
    """One optimizer step of a run; the method's own per-step values (`Regularizer.log_values`) ride along as
    extra keys."""

    model_config = ConfigDict(extra="allow")

    step: int
    """Optimizer steps done after this one (1 for the first)."""
    loss: float
    """Training loss of the step."""
    lr: float
    """Learning rate the step used."""
    step_s: float
    """Wall seconds the step took."""
    tokens_per_s: float
    """Tokens the step trained on per wall second."""


class TrainLog(Artifact):
    """The per-step training log of one run, every step since step 1 (steps before a resume included).

    On disk JSON lines, one record per line and no format marker (format 1, what every version so far
    wrote), so `read` and `write` are this model's own."""

    FORMAT: ClassVar[int] = 1
    STAGE: ClassVar[str] = "train CONFIG"
    REMEDY: ClassVar[str] = _RUN_REMEDY

    records: list[TrainLogRecord] = Field(default_factory=list)
    """The steps, oldest first."""

    @classmethod
    def path(cls, layout: Layout, run: str, seed: int) -> Path:
        return layout.train_log_file(run, seed)

    @classmethod
    def read(cls, path: Path) -> TrainLog:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise ArtifactError(f"{path} does not exist: run `entrodrop-bench {cls.STAGE}` first") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ArtifactError(f"{path} cannot be read ({exc}); {cls._remedy()}") from None
        records = []
        for number, line in enumerate(lines, 1):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ArtifactError(f"{path} line {number} is not valid JSON ({exc}); {cls._remedy()}") from None
        return cls.from_data({"format_version": 1, "records": records}, path)

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, "".join(json.dumps(r.model_dump()) + "\n" for r in self.records))

    def last_step(self) -> int | None:
        return self.records[-1].step if self.records else None


class CheckpointManifest(Artifact):
    """What one checkpoint holds; written last into the checkpoint folder, so its presence marks it complete."""

    FORMAT: ClassVar[int] = RUN_FORMAT_VERSION
    STAGE: ClassVar[str] = "train CONFIG"
    REMEDY: ClassVar[str] = _RUN_REMEDY

    run: str
    """Run name (`method` or `method@grid-point`)."""
    method: str
    """Method name in the config."""
    plugin: str
    """Registered regularizer plugin."""
    params: dict[str, Any]
    """The plugin's parameters for this run."""
    seed: int
    """Training seed."""
    step: int
    """Optimizer steps done."""
    total_steps: int
    """Optimizer steps of the whole run."""
    target_epoch: float
    """Epochs over the target corpus done at `step`."""
    tokens_seen: dict[str, int]
    """Target and general tokens trained on up to `step`."""
    config_hash: str
    """`ExperimentConfig.config_hash()` of the experiment that trained it."""
    run_key: str
    """`config.run_key` of the run."""
    git_commit: str | None
    """Commit of the code that trained it (None outside a git checkout)."""
    val_loss: dict[str, float]
    """Validation losses at `step` (the keys of a `ValPoint`'s losses)."""
    weights_sha256: str
    """sha256 of the checkpoint's weights file."""
    created: str
    """UTC time of the save (ISO 8601)."""
    cost: TrainCost | None = None
    """What training cost up to this checkpoint (None in manifests written before cost accounting)."""

    @classmethod
    def path(cls, checkpoint_dir: Path) -> Path:
        return Layout.manifest_file(checkpoint_dir)
