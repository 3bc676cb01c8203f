"""Typed files that pass between stages: one pydantic model per file, one `read` and one `write` each.

Every stage reads the previous stage's files only through these models, and writes its own only through
them (atomically: a reader sees the old file or the new one, never half of one). A file written by an
incompatible version of this code is refused with what wrote it and which stage to re-run, instead of
being half-understood.

    file                                                    model               written by
    prepared.json                                           PreparedRecord      prepare
    cache/gate_shares.json                                  GateShares          prepare
    train/<run>/seed<k>/status.json                         RunStatus           train
    train/<run>/seed<k>/val_curve.json                      ValCurve            train
    train/<run>/seed<k>/train_log.jsonl                     TrainLog            train
    train/<run>/seed<k>/checkpoint-<step>/manifest.json     CheckpointManifest  train
    store/<run>/seed<k>/checkpoint-<step>/<benchmark>.json  EvalResult          evaluate
    store/.../checkpoint-<step>/work/checkpoint_hash.json   CheckpointHashMemo  evaluate
    <results_dir>/sample_entropy.json                       SampleEntropy       prepare
    <results_dir>/selection.json                            Selection           select
    <results_dir>/leaderboard_entries.json                  LeaderboardEntries  leaderboard build
    launch/jobs.json                                        LaunchJobs          launch

Paths come from `paths.Layout`; nothing here forms a file name.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from entrodrop_bench import RUN_FORMAT_VERSION
from entrodrop_bench.atomic import write_text
from entrodrop_bench.errors import DataError
from entrodrop_bench.paths import Layout
from entrodrop_bench.regularizer import MethodTable


class ArtifactError(DataError):
    """An inter-stage file is missing, unreadable, or written by an incompatible version."""


class Artifact(BaseModel):
    """Base of every inter-stage file. Subclasses set FORMAT (bump it on an incompatible change) and STAGE
    (the command that writes the file, named in errors so the user knows what to re-run)."""

    # NaN stays NaN on disk (a validation group with no tokens), as json.dumps writes it.
    model_config = ConfigDict(extra="forbid", frozen=False, ser_json_inf_nan="constants")

    FORMAT: ClassVar[int] = 1
    STAGE: ClassVar[str] = ""
    """The `entrodrop-bench` command that writes this file (re-running it rewrites the file)."""
    REMEDY: ClassVar[str] = "re-run `entrodrop-bench {stage}`"
    """What the user does about a file this version cannot read (`{stage}` is replaced by STAGE)."""

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
            raise ArtifactError(f"{path} cannot be read ({exc}); {cls._remedy()}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ArtifactError(f"{path} is not valid JSON ({exc}); {cls._remedy()}") from None
        return cls.from_data(data, path)

    @classmethod
    def _remedy(cls) -> str:
        return cls.REMEDY.format(stage=cls.STAGE)

    @classmethod
    def from_data(cls, data: Any, path: Path | str = "<data>"):
        """Validate already-parsed JSON (`read` without the file system), with the same errors."""
        cls._check_format(data, path)
        try:
            return cls.model_validate(cls.upgrade(data))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}" for e in exc.errors()[:5])
            raise ArtifactError(f"{path} is not a valid {cls.__name__} file ({problems}); {cls._remedy()}") from None

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
            raise ArtifactError(f"{path}: expected a JSON object, got {type(data).__name__}; {cls._remedy()}")
        version = data.get("format_version", 0)
        if version != cls.FORMAT and version not in cls.READABLE_FORMATS:
            raise ArtifactError(f"{path} was written in {cls.__name__} format {version}, this version of "
                                f"entrodrop-bench reads format {cls.FORMAT}: {cls._remedy()}")

    def render(self) -> str:
        """The file's text, with the current format version."""
        self.format_version = type(self).FORMAT
        return self.model_dump_json(indent=2) + "\n"

    def write(self, path: Path) -> None:
        """Write atomically (temp file, then rename) with the current format version."""
        text = self.render()
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, text)

    def write_if_changed(self, path: Path) -> bool:
        """`write`, unless the file already holds exactly this (a stage re-run over finished work writes nothing);
        whether it wrote."""
        if path.is_file() and path.read_text(encoding="utf-8") == self.render():
            return False
        self.write(path)
        return True


_RUN_REMEDY = "delete the run's folder (or use another output.runs_dir) and re-run `entrodrop-bench {stage}`"


class CorpusRecord(BaseModel):
    """Size and content hash of one tokenized corpus."""

    model_config = ConfigDict(extra="forbid")

    docs: int
    """Number of documents."""
    tokens: int
    """Number of tokens."""
    hash: str
    """The corpus's fingerprint (`prepare.fingerprints.corpus_fingerprint`)."""


class PreparedRecord(Artifact):
    """What `prepare` produced for an experiment; its format is the format of the whole runs directory."""

    FORMAT: ClassVar[int] = RUN_FORMAT_VERSION
    STAGE: ClassVar[str] = "prepare CONFIG"
    # prepare refuses a runs directory of another format, so re-running it alone does not help.
    REMEDY: ClassVar[str] = "use another output.runs_dir or delete the old runs, then re-run `entrodrop-bench {stage}`"

    config_hash: str
    """`ExperimentConfig.config_hash()` of the config that was prepared."""
    model_path: str
    """The base model's local folder or hub id."""
    tokenizer_hash: str
    """The tokenizer's fingerprint (`prepare.fingerprints.tokenizer_fingerprint`)."""
    target_train: CorpusRecord
    """The target corpus's training split."""
    target_val: CorpusRecord
    """The target corpus's held-out validation split."""
    general: CorpusRecord
    """The general-domain corpus mixed into training."""
    plan: dict[str, Any]
    """The token-budget plan (`TrainingPlan.to_json()`)."""
    writer_rank: int
    """Rank of the process that wrote the record (0 unless launched oddly)."""

    @classmethod
    def path(cls, layout: Layout) -> Path:
        return layout.prepared_file


class GateShare(BaseModel):
    """How much of the target training corpus one masking run's gate passes (`Regularizer.token_gates` over the
    signal the method declares; a method without signals has no gate and passes every eligible token)."""

    model_config = ConfigDict(extra="forbid")

    key: str
    """Hash of what it was measured from (the fingerprints of the target corpus, the tokenizer and the base model's
    weights, the plugin and its gate settings); another key is re-measured."""
    signal: str | None
    """The base-model signal the gate read (None: no gate)."""
    eligible_tokens: int
    """Target training tokens any token dropout may touch (not a document's first token, not special)."""
    gated_tokens: int
    """Of those, the tokens the gate passes."""
    gated_fraction: float
    """`gated_tokens / eligible_tokens`: the g of a rate-matched gamma_max (`baselines.masking`)."""


class GateShares(Artifact):
    """Per run of a masking method (one that declares `expected_masked_fraction`), its gated share of the eligible
    target training tokens, measured once by `prepare`; rate-matched runs resolve their gamma_max from it."""

    FORMAT: ClassVar[int] = 1
    STAGE: ClassVar[str] = "prepare CONFIG"

    runs: dict[str, GateShare]
    """Run name -> its gate share."""

    @classmethod
    def path(cls, layout: Layout) -> Path:
        return layout.gate_shares_file


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


class RunCost(BaseModel):
    """What one (run, seed) cost: its training (from its status) and its evaluations (from the results store)."""

    model_config = ConfigDict(extra="forbid")

    train: TrainCost | None
    """None when the run's status predates cost accounting (or it has no status)."""
    eval_wall_s: float
    """Summed wall seconds of the run's stored results (every checkpoint and benchmark)."""
    eval_results: int
    """Stored results summed."""
    eval_results_untimed: int = 0
    """Of those, results without a recorded wall time (counted as 0 s)."""
    device_hours: float | None
    """Training device hours plus evaluation wall (one device each), in hours; None without a training cost."""


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


class SampleEntropy(Artifact):
    """One target validation document as the base model sees it, for Figure 2c: its tokens, their entropy
    and which of them any token dropout may touch (the report draws the proposed method's gate over it).

    On disk a JSON object without a format marker (format 1). Files of versions before `eligible` held `gated`
    instead; they are refused, and re-running prepare rewrites them."""

    FORMAT: ClassVar[int] = 1
    STAGE: ClassVar[str] = "prepare CONFIG"
    REMEDY: ClassVar[str] = "re-run `entrodrop-bench {stage}` to rewrite it"

    tokens: list[str]
    """Each token of the document, decoded on its own."""
    entropy: list[float | None]
    """The base model's entropy at each token; null where it has none (the first token, special tokens)."""
    eligible: list[bool]
    """Whether token dropout may touch each token (finite entropy, not a special token)."""

    @model_validator(mode="after")
    def _same_length(self) -> SampleEntropy:
        if not len(self.tokens) == len(self.entropy) == len(self.eligible):
            raise ValueError(f"tokens ({len(self.tokens)}), entropy ({len(self.entropy)}) and eligible "
                             f"({len(self.eligible)}) differ in length")
        return self

    @classmethod
    def path(cls, layout: Layout) -> Path:
        return layout.sample_entropy_file

    @classmethod
    def from_data(cls, data: Any, path: Path | str = "<data>") -> SampleEntropy:
        if isinstance(data, dict) and "format_version" not in data:
            data = {**data, "format_version": 1}
        return super().from_data(data, path)

    def render(self) -> str:
        return json.dumps(self.model_dump(exclude={"format_version"}), indent=2) + "\n"


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


class ResultProvenance(BaseModel):
    """Where a stored score came from. Harness-specific extras (sandbox, lm-eval seeds, ...) are kept as given."""

    model_config = ConfigDict(extra="allow", ser_json_inf_nan="constants")

    checkpoint: str
    """Folder of the evaluated checkpoint."""
    checkpoint_sha256: str
    """Content hash of the checkpoint's weights, config and tokenizer (`evaluate.store.checkpoint_sha256`)."""
    task_version: Any = None
    """The benchmark task's version."""
    task_config_hash: str
    """Hash of everything that defines the task (definition files, data, settings)."""
    num_fewshot: int | None = None
    """Few-shot examples in each prompt."""
    seed: int
    """Training seed of the checkpoint."""
    batch_size: int
    """`eval.batch_size`."""
    limit: int | None = None
    """`eval.limit` (None: every example)."""
    max_gen_toks: int | None = None
    """Generation cap of the benchmark."""
    data_file: str | None = None
    """Data file the benchmark read (None: the task's own data)."""
    backend: str = "hf"
    """Engine that generated the outputs: `hf` (transformers) or `vllm` (`eval.backend`). Loglikelihood tasks are
    scored by HF under either setting; a result written before this field existed was generated by HF."""
    versions: dict[str, str] = {}
    """Versions of lm_eval, evalplus, transformers, torch, entrodrop_bench (and vllm when it generated)."""
    wall_time_s: float | None = None
    """Seconds the benchmark took."""
    date: str | None = None
    """UTC time of the evaluation (ISO 8601)."""


class ItemOutcomes(BaseModel):
    """Per-item scores of one benchmark on one checkpoint, in the harness's item order: what paired statistics
    and held-out selection need (the benchmark's score is their mean, up to the harness's own aggregation)."""

    model_config = ConfigDict(extra="forbid")

    ids: list[str]
    """Item ids, stable across checkpoints and methods (lm-eval `doc_id`, evalplus `task_id`, LiveCodeBench
    `question_id`), so two methods' outcomes pair up item by item."""
    scores: list[float]
    """The primary metric per item (0/1 for exact match and pass@1), aligned with `ids`."""


class EvalResult(Artifact):
    """One benchmark's result on one checkpoint, in the results store."""

    FORMAT: ClassVar[int] = 1
    STAGE: ClassVar[str] = "eval CONFIG"

    run: str
    """Run name."""
    method: str
    """Method name in the config."""
    seed: int
    """Training seed."""
    step: int
    """Checkpoint step."""
    target_epoch: float | None
    """Epochs over the target corpus at `step` (from the manifest)."""
    benchmark: str
    """Benchmark name."""
    harness: str
    """`lm-eval` or `evalplus` (also for LiveCodeBench, which runs in evalplus's sandbox)."""
    metrics: dict[str, Any]
    """Every metric the harness reported."""
    primary_metric: str | None
    """The metric that is the benchmark's score."""
    score: float | None
    """The primary metric as a finite number in [0, 1]; None when the harness gave none."""
    provenance: ResultProvenance
    """Where the score came from (checkpoint and task hashes decide whether it is still valid)."""
    items: ItemOutcomes | None = None
    """Per-item outcomes; None in results written before they were kept (re-evaluated when a statistic needs them)."""

    @classmethod
    def path(cls, layout: Layout, run: str, seed: int, step: int, benchmark: str) -> Path:
        return layout.result_file(run, seed, step, benchmark)

    def is_valid_for(self, *, checkpoint_hash: str, task_config_hash: str, need_items: bool = False) -> bool:
        """Whether this result still stands for a checkpoint and task with these hashes. A result without per-item
        outcomes stands for its score; with `need_items` (a statistic needs them) it does not."""
        return (self.provenance.checkpoint_sha256 == checkpoint_hash
                and self.provenance.task_config_hash == task_config_hash
                and not (need_items and self.items is None))


def stored_results(layout: Layout) -> Iterator[tuple[str, int, int, str, EvalResult | ArtifactError]]:
    """(run, seed, step, benchmark, result) of every file in the results store; a file that cannot be read as a
    result gives its ArtifactError instead (the report lists it as missing, with the reason)."""
    for run, seed, step, benchmark, path in layout.result_files():
        try:
            yield run, seed, step, benchmark, EvalResult.read(path)
        except ArtifactError as exc:
            yield run, seed, step, benchmark, exc


class CheckpointHashMemo(Artifact):
    """Memo of a checkpoint's content hash with each hashed file's size and mtime (recomputed when one changes).
    Format 0, written before this model, had no format_version and the same fields."""

    FORMAT: ClassVar[int] = 1
    READABLE_FORMATS: ClassVar[tuple[int, ...]] = (0,)
    STAGE: ClassVar[str] = "eval CONFIG"

    files: dict[str, list[int]]
    """File name -> [size in bytes, mtime in ns]."""
    sha256: str
    """The checkpoint's content hash."""

    @classmethod
    def path(cls, layout: Layout, run: str, seed: int, step: int) -> Path:
        return layout.checkpoint_hash_memo(run, seed, step)


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
    ci95: list[float] | None
    """95% interval. Scores and averages (`report.comparisons.score_interval`): over seeds and items with per-item
    outcomes (seed term + item terms), over items with one seed, a t interval over seeds without them; None for
    one seed without per-item outcomes or several without spread (never a zero-width interval). Validation
    losses: see `AggregateValMinimum`."""
    n: int
    """Number of seeds."""
    ci_over: str | None = None
    """What `ci95` covers: `seeds and items`, `items only` (one seed: that checkpoint), `seeds`; None: no interval
    or an older selection."""


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


class HeldoutPick(_Record):
    """One (run, seed) under the held-out view (`report.selection`): each benchmark's items split once, by a
    seeded hash of the item id, into a selection half and a report half; the checkpoint is picked on the
    selection half's target-domain average and scored on the report half. Averages x100."""

    step: int
    """The checkpoint picked on the selection half (ties: the earliest)."""
    selection_avg: float
    """Its target-domain average on the selection half (what picked it; optimistic)."""
    report_avg: float
    """Its target-domain average on the report half (unbiased for that checkpoint)."""
    paper_avg: float
    """The paper rule's (`target_avg`) target-domain average on every item, at the checkpoint that rule picks."""
    crossfit_avg: float | None = None
    """Cross-fitted held-out score: over `crossfit_splits` item splits and both of their directions, the report-half
    target average of the checkpoint picked on the other half, averaged (`statistics.crossfit_select`)."""
    crossfit_splits: int | None = None


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
    """Share of eligible target tokens the regularizer masked, averaged over the run (from the run's status: the log
    value its plugin declares as `ReportFields.masked_fraction`); None for a method that masks nothing."""
    gated_fraction: float | None = None
    """Share of eligible target tokens its gate passed, averaged over the run (the declared
    `ReportFields.gated_fraction`); None without a gate."""
    resolved: dict[str, Any] = {}
    """Params the method resolved before training (from the run's status: a rate-matched gamma_max, ...)."""
    heldout: HeldoutPick | None = None
    """The held-out view of this seed; None when a checkpoint's result lacks per-item outcomes."""
    cost: RunCost | None = None
    """What the (run, seed) cost, training and evaluation (`cost.run_cost`); None in older selections."""


class AggregateValMinimum(_Record):
    loss: Summary
    """The minima across seeds. With `documents` set, its ci95 is a bootstrap over validation documents
    (token-weighted, seeds then documents with several seeds; `report.val_loss`)."""
    target_epoch: Summary | None
    at_end: bool
    """Some seed's minimum is its curve's last point."""
    documents: int | None = None
    """Validation documents `loss.ci95` resamples; None when a seed's curve has no per-document losses (format
    1): then ci95 is across seeds with several seeds and None with one."""


class HeldoutSummary(_Record):
    """A run's `HeldoutPick`s averaged over the seeds of its aggregate (x100)."""

    step: list[int]
    """Picked checkpoint per seed."""
    selection_avg: float
    report_avg: float
    """Target-domain average on the report half: the held-out score."""
    paper_avg: float
    crossfit_avg: float | None = None
    """Mean over seeds of their cross-fitted held-out scores (`HeldoutPick.crossfit_avg`)."""
    optimism: float
    """`paper_avg - crossfit_avg` (`paper_avg - report_avg` in older selections): how much the paper's rule (best
    checkpoint on the same test items it reports) overstates the target-domain score; positive on average, since
    picking the maximum of noisy scores selects upward noise. Cross-fitted, it does not depend on one split."""


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
    heldout: HeldoutSummary | None = None
    """The held-out view across the same seeds; None unless every one of them has it."""


class TableRoleRecord(_Record):
    """A run's table role as its plugin declared it (`regularizer.TableRole`), recorded so that the report reads
    roles from the selection and never needs the plugin."""

    label: str
    kind: Literal["baseline", "comparison", "proposed"]
    rank: int
    targets: Literal["all", "high", "low"] | None
    drop_rate: float | None
    rate_matched_to: str | None = None
    """The method whose expected masked fraction this run matches (Table 3's rate-matched row)."""
    online_signal: str | None = None
    """What a gate refreshed during training reads (`loss`, `entropy`; Table 3's online rows); None: a fixed gate."""


class LogSeriesRecord(_Record):
    """A logged value a run's plugin declared for the report to draw (`regularizer.LogSeries`)."""

    key: str
    label: str
    dashed: bool = False


class ReportFieldsRecord(_Record):
    """What the report shows of a run beyond its scores, as its plugin declared it (`regularizer.ReportFields`),
    recorded so that the report reads declarations and never a param or log key by name."""

    masked_fraction: str | None = None
    gated_fraction: str | None = None
    gate_share: float | None = None
    trained_drop_rate: str | None = None
    series: list[LogSeriesRecord] = []


class RunSelection(_Record):
    """One run (a method at one grid point)."""

    method: str
    plugin: str
    role: TableRoleRecord
    report: ReportFieldsRecord
    """Its plugin's report declarations."""
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
    """sha256 of the config settings that selection reads (name, preset, eval.domains, eval.selection, eval.heldout_seed,
    eval.target_domain, train.seeds, methods)."""
    files: dict[str, str]
    """Every file selection read (status, validation curve, checkpoint manifests, store results of the
    config's runs), as path relative to runs_dir -> sha256 of its content."""


class PairedDifference(_Record):
    """One method's average minus the Baseline's, paired over items (and seeds), x100."""

    difference: float
    """Point estimate, in points."""
    ci95: list[float]
    """95% interval of the difference (scores: seeds x items, `statistics.crossed_difference`; validation loss:
    a paired bootstrap over documents)."""
    p: float
    """Two-sided p-value for "no difference"."""
    p_holm: float
    """`p` after Holm's correction across the rows of the same table (per column)."""
    se: float | None = None
    """Standard error (scores only)."""
    mde: float | None = None
    """Minimum detectable effect: the true difference detected at level 0.05 with 80% power (scores only)."""
    level: str | None = None
    """`seeds and items` (several seeds: the methods compared) or `items only` (one seed: two checkpoints
    compared; a mark means the checkpoints differ, not the methods); None for validation loss."""


class RowComparison(_Record):
    """One table row (a method's run) against the Baseline's selected run."""

    method: str
    run: str
    seeds: list[int]
    """Training seeds paired with the Baseline's (both have a selected checkpoint with per-item outcomes)."""
    columns: dict[str, PairedDifference | None]
    """Each domain average and `total` -> the comparison; None when a result it needs lacks per-item outcomes."""
    val_loss: PairedDifference | None = None
    """Table 4 only: minimum validation loss minus the Baseline's (in nats, not x100), paired over validation
    documents by id (and seeds), Holm across Table 4's rows (`report.val_loss`); None elsewhere, or when a curve
    has no per-document losses."""


class Contrast(_Record):
    """One of Table 3's own questions: a row minus another row (not the Baseline) on the target domain."""

    name: str
    """`low vs rate-matched random`, `low vs random` (no rate-matched row) or `low vs high entropy`."""
    method: str
    run: str
    against: str
    """The method subtracted."""
    against_run: str
    column: str
    """The target domain."""
    seeds: list[int]
    difference: PairedDifference | None
    """None when a result it needs lacks per-item outcomes; Holm across the table's contrasts."""


class TableComparisons(_Record):
    """The comparisons of one table, in row order (the Baseline's own row left out)."""

    rows: list[RowComparison]
    contrasts: list[Contrast] = []
    """Table 3 only: its rows against each other (`report.comparisons.CONTRASTS`)."""


class Comparisons(_Record):
    """Every table's rows against the Baseline (`report.comparisons`)."""

    test: str
    """The test, in words."""
    alpha: float
    """Level of a mark (Holm-adjusted p below it)."""
    mde_power: float
    """Power at which `PairedDifference.mde` is detected."""
    baseline: str | None
    """The method compared against (table role `baseline`); None when there is none."""
    baseline_run: str | None
    """Its selected run; None when it has no selected checkpoint (then there are no comparisons)."""
    tables: dict[str, TableComparisons]
    """Table name (`table1`/`table2`, `table3`, `table4`) -> its comparisons."""
    lacking_items: list[str]
    """Selected results (`run/seed<k>/checkpoint-<step>/<benchmark>`) without per-item outcomes."""
    notes: list[str]
    """What is absent and why."""


class Selection(Artifact):
    """Each method's representative checkpoint, written by `select` and read by tables, figures and the
    leaderboard (which never recompute it)."""

    STAGE: ClassVar[str] = "select CONFIG"
    # 2: `inputs` added; format 1 cannot be checked for staleness. 3: `comparisons`, item-level one-seed intervals.
    # 4: Table 4's validation-loss intervals over documents (`val_min.documents`, `val_loss` comparisons).
    # 5: each run's report declarations (`RunSelection.report`), each seed's gated fraction.
    # 6: seeds x items tests and intervals (`level`, `se`, `mde`, `ci_over`), Table 3's contrasts, cross-fitted
    #    optimism; no bootstrap resamples or seed.
    FORMAT: ClassVar[int] = 6
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
    comparisons: Comparisons
    """Each table's methods against the Baseline: paired differences with intervals and Holm-adjusted p-values."""


_DATE_TIME = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}"
_CI95_TEXT = ("95% interval: over training seeds and test items (seed term + item terms, report.statistics) with "
              "per-item outcomes; with one seed over the items only (`ci_over`: items only); without per-item outcomes a "
              "t interval over seeds. Absent where there is none (one seed without per-item outcomes, or seeds without "
              "spread): never zero-width. Older entries: the min-max of the seeds.")
_CI_OVER_TEXT = "What `ci95` covers: `seeds and items`, `items only` (one seed: that checkpoint) or `seeds`."


def _absent_or_value(schema: dict[str, Any]) -> None:
    """JSON schema of an optional field that is absent when unset, never null: only its non-null branch."""
    branches = [b for b in schema.pop("anyOf") if b != {"type": "null"}]
    schema.pop("default", None)
    schema.update(branches[0])


class _Entry(BaseModel):
    """A part of a leaderboard entry. Written with `exclude_unset`: a field the entry never set (an optional one
    such as `ci95`, or one an older entry lacks) stays absent on disk, so republishing rewrites old entries as
    they were."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class LeaderboardSummary(_Entry):
    """A statistic across seeds, on the x100 scale."""

    mean: float
    """Mean across seeds of the per-seed selected checkpoint's value."""
    std: float = Field(ge=0)
    """Sample standard deviation across seeds (0 with one seed)."""
    n: int = Field(ge=1)
    """Number of seeds that contributed."""
    ci95: list[float] | None = Field(default=None, min_length=2, max_length=2, description=_CI95_TEXT,
                                     json_schema_extra=_absent_or_value)
    ci_over: str | None = Field(default=None, description=_CI_OVER_TEXT, json_schema_extra=_absent_or_value)

    @classmethod
    def of(cls, s: Summary) -> LeaderboardSummary:
        """A selection's summary; `ci95` (and what it covers) only when it has one."""
        return cls(mean=s.mean, std=s.std, n=s.n, **interval_fields(s))


def interval_fields(s: Summary) -> dict[str, Any]:
    """`ci95` and `ci_over` of a summary that has an interval; nothing otherwise."""
    if not s.ci95:
        return {}
    return {"ci95": s.ci95, **({"ci_over": s.ci_over} if s.ci_over else {})}


class LeaderboardMethod(_Entry):
    """The method as configured."""

    name: str = Field(min_length=1)
    """Method name in the config's `methods` section."""
    label: str
    """Display name as in the paper's tables (e.g. +EntroDrop)."""
    plugin: str = Field(min_length=1)
    """Registered regularizer plugin."""
    plugin_version: str | None
    """The plugin's `version`; null when the plugin was not importable at build time."""
    table: MethodTable
    """Which paper table family the method belongs to."""
    params: dict[str, Any]
    """Parameters of the selected (best) grid point."""
    config: dict[str, Any] = Field(json_schema_extra={"required": ["plugin", "params", "grid"]})
    """The full method config: plugin, params, grid, table."""


class LeaderboardBackbone(_Entry):
    """Base model that was continually pre-trained."""

    id: str = Field(min_length=1)
    """Hub id, local path name, or `tiny`."""
    revision: str | None
    """Pinned hub revision, if any."""


class LeaderboardBudget(_Entry):
    """Training budget, identical for every method of an experiment."""

    token_budget: int = Field(ge=1)
    """Total training tokens."""
    mix_ratio: list[Annotated[float, Field(ge=0, le=1)]] = Field(min_length=2, max_length=2)
    """target:general token shares."""
    seq_len: int = Field(ge=1)
    """Packed sequence length."""


class LeaderboardCheckpoint(_Entry):
    """The selected checkpoint of one seed."""

    seed: int
    step: int = Field(ge=0)
    """Optimizer step of the checkpoint."""
    target_epoch: float | None
    """Target-domain epochs seen at that step."""
    val_loss: float | None = None
    """Held-out target validation loss at that checkpoint."""
    trained_at_commit: str | None = None
    """Project commit that trained this checkpoint (from its manifest; `-dirty` when the tree had changes); null when
    unknown."""


class LeaderboardSelection(_Entry):
    """How the representative checkpoint was chosen."""

    rule: Literal["target_avg", "val_loss", "heldout"]
    """`target_avg`: highest target-domain average (the paper's rule); `val_loss`: lowest held-out validation loss;
    `heldout`: highest target-domain average on the selection half of each benchmark's items (split by a seeded hash
    of the item id), scored on the report half."""
    target_domain: str
    """Domain whose average drives selection."""
    checkpoints: list[LeaderboardCheckpoint] = Field(min_length=1)
    """Selected checkpoint per seed."""


class LeaderboardScore(_Entry):
    """One benchmark's score (x100) at the selected checkpoints."""

    metric: str | None
    """Primary metric key as emitted by the harness (e.g. `exact_match,strict-match`, `pass@1`)."""
    harness: str | None
    """lm-eval or evalplus."""
    domain: str
    """Domain the benchmark is averaged into."""
    mean: float
    """Mean score x100."""
    std: float = Field(ge=0)
    """Sample standard deviation across seeds (0 with one seed)."""
    n: int = Field(ge=1)
    """Number of seeds that contributed."""
    ci95: list[float] | None = Field(default=None, min_length=2, max_length=2, description=_CI95_TEXT,
                                     json_schema_extra=_absent_or_value)
    ci_over: str | None = Field(default=None, description=_CI_OVER_TEXT, json_schema_extra=_absent_or_value)


class LeaderboardProvenance(_Entry):
    """Where the numbers come from."""

    git_commit: str | None
    """Project commit that built this entry (with `-dirty` when the tree had changes); null outside git. The commit
    that trained each checkpoint is under selection.checkpoints."""
    data_hashes: dict[str, str | None]
    """Content hashes of the tokenized target train/val and general corpora and the tokenizer (from prepare); empty
    when unknown."""
    config_hash: str | None
    """Hash of the fully resolved experiment config."""
    date: str = Field(pattern=_DATE_TIME, json_schema_extra={"format": "date-time"})
    """UTC time the entry was built."""
    versions: dict[str, str | None] = Field(
        json_schema_extra={"required": ["lm_eval", "evalplus", "transformers", "torch", "entrodrop_bench"]})
    """Versions used by evaluation (lm_eval, evalplus, transformers, torch, entrodrop_bench)."""
    modified_work_tree: bool | None = Field(default=None, json_schema_extra=_absent_or_value)
    """Optional: true when the entry was built or published from a work tree with changes to tracked files outside
    results/ (published with --allow-dirty); absent in entries published before it was recorded (their `git_commit`
    ends in `-dirty` then)."""


class LeaderboardCost(_Entry):
    """What the entry's runs cost, measured, summed over its seeds (a value is null when some seed did not record
    it). Definitions in entrodrop_bench/cost.py."""

    tokens_trained: int | None = Field(default=None, ge=0)
    """Tokens trained: optimizer steps x tokens per step."""
    train_flops: float | None = Field(default=None, ge=0)
    """Training FLOPs: (6 N + 12 L H d S) x tokens trained, N every parameter but the input embedding table."""
    train_wall_s: float | None = Field(default=None, ge=0)
    """Training wall seconds, summed over every session (resumes included)."""
    eval_wall_s: float | None = Field(default=None, ge=0)
    """Evaluation wall seconds: the sum of the stored results' wall times, every checkpoint and benchmark."""
    device: str | None = None
    """Training device(s): `cpu` or the GPU name."""
    device_count: int | None = Field(default=None, ge=1)
    """Training processes (accelerate world size), one device each."""
    device_hours: float | None = Field(default=None, ge=0)
    """Training wall x device count plus evaluation wall (one device), in hours."""


class LeaderboardComparison(_Entry):
    """The method's average minus the Baseline's (x100), paired over items (and seeds)."""

    diff: float
    """Point estimate of the difference, in points."""
    ci95: list[float] = Field(min_length=2, max_length=2)
    """95% interval of the difference (over seeds and items; one seed: items only)."""
    p: float = Field(ge=0, le=1)
    """Two-sided p-value for no difference."""
    p_holm: float = Field(ge=0, le=1)
    """p after Holm's correction across the rows of the table named in `table`."""
    mde: float | None = Field(default=None, ge=0, json_schema_extra=_absent_or_value)
    """Minimum detectable effect: the true difference found at p < 0.05 with 80% power (before Holm)."""
    level: str | None = Field(default=None, json_schema_extra=_absent_or_value)
    """`seeds and items` (the methods compared) or `items only` (one seed: two checkpoints compared)."""


class LeaderboardVsBaseline(_Entry):
    """Paired comparisons of this method with the Baseline of the same experiment."""

    table: str
    """Paper table whose rows Holm's correction runs across (table1, table2, table3, table4)."""
    baseline: str | None
    """The Baseline method's name."""
    seeds: list[int]
    """Training seeds paired with the Baseline's."""
    columns: dict[str, LeaderboardComparison | None]
    """Domain name or `total` -> the comparison of that average; null when a result it needs lacks per-item
    outcomes."""


class LeaderboardContrast(_Entry):
    """One of Table 3's own contrasts with this entry's method as the first term: it minus another row of the
    table (not the Baseline), on the target domain."""

    name: str
    """`low vs rate-matched random`, `low vs random` (no rate-matched row) or `low vs high entropy`."""
    against: str
    """The method subtracted (another entry of the same experiment)."""
    column: str
    """The target domain."""
    seeds: list[int]
    """Training seeds paired."""
    comparison: LeaderboardComparison | None
    """The difference, its interval, p-values (Holm across the table's contrasts), MDE and level; null when a
    result it needs lacks per-item outcomes."""


class LeaderboardSuperseded(_Entry):
    """A shared leaderboard's mark on an entry its experiment's config no longer produces."""

    date: str = Field(pattern=_DATE_TIME, json_schema_extra={"format": "date-time"})
    """UTC time of the publish that superseded it."""


class LeaderboardValCurve(_Entry):
    """One seed's held-out target validation loss over training, at step 0 and every checkpoint."""

    seed: int
    """Training seed."""
    step: list[Annotated[int, Field(ge=0)]]
    """Optimizer steps of the points."""
    target_epoch: list[Annotated[float, Field(ge=0)]]
    """Target-domain epochs at each point."""
    loss: list[float]
    """Mean validation loss over every label token at each point."""


class LeaderboardEntry(_Entry):
    """One method of one experiment, at its best grid point and selected checkpoint(s)."""

    key: str = Field(pattern=r"^[^/]+/[^/]+(/[^/]+)*/[0-9a-f]{12}$")
    """preset/backbone@revision/method/hash: hash of the preset, backbone, token budget, benchmark set and the
    method's full config (grid included). Republishing replaces the entry with the same key."""
    experiment: str = Field(min_length=1)
    """Experiment name (config `name`)."""
    preset: str = Field(min_length=1)
    """Paper setting reproduced (e.g. qwen3-0.6b-math) or `tiny`."""
    paper_table: int | None = None
    """Paper table the experiment reproduces (1-4)."""
    method: LeaderboardMethod
    """The method as configured."""
    backbone: LeaderboardBackbone
    """Base model that was continually pre-trained."""
    budget: LeaderboardBudget
    """Training budget, identical for every method of an experiment."""
    seeds: list[int] = Field(min_length=1)
    """Seeds whose selected checkpoints are aggregated."""
    selection: LeaderboardSelection
    """How the representative checkpoint was chosen."""
    scores: dict[str, LeaderboardScore] = Field(min_length=1)
    """Benchmark name -> score (x100) at the selected checkpoints."""
    domain_averages: dict[str, LeaderboardSummary] = Field(min_length=1)
    """Domain -> mean of its benchmarks (x100)."""
    total_average: LeaderboardSummary
    """Mean of the domain averages."""
    relative_to_plain_pct: dict[str, float | None]
    """Domain name or `total` -> relative change vs the plain (Baseline) method of the same experiment, in percent,
    computed from the 2-decimal averages as the paper does; null for plain itself or when plain has no result."""
    provenance: LeaderboardProvenance
    """Where the numbers come from."""
    cost: LeaderboardCost | None = Field(default=None, json_schema_extra=_absent_or_value)
    """Optional: what the entry's runs cost (absent in entries built before cost accounting)."""
    vs_baseline: LeaderboardVsBaseline | None = Field(default=None, json_schema_extra=_absent_or_value)
    """Optional: paired comparisons with the Baseline (absent for the Baseline itself and in entries built before
    they existed)."""
    contrasts: list[LeaderboardContrast] | None = Field(default=None, json_schema_extra=_absent_or_value)
    """Optional: Table 3's contrasts whose first term is this method (`low vs rate-matched random`, `low vs high
    entropy`); absent for every other method and in entries built before they existed."""
    val_curve: list[LeaderboardValCurve] | None = Field(default=None, json_schema_extra=_absent_or_value)
    """Optional: each seed's held-out target validation loss at step 0 and every checkpoint of the entry's run (from
    its val_curve.json), for the page's curves; absent in entries built before it was recorded."""
    superseded: LeaderboardSuperseded | None = Field(default=None, json_schema_extra=_absent_or_value)
    """Optional, only in a shared leaderboard: the entry's experiment was published again (same experiment and
    preset) and its config no longer produces this entry; kept as history. An experiment's own leaderboard drops
    such entries instead."""

    def to_json(self) -> dict[str, Any]:
        """The entry as written: fields it never set are absent."""
        return self.model_dump(mode="json", exclude_unset=True)


LEADERBOARD_SCHEMA_VERSION = 1


class LeaderboardDocument(_Entry):
    """Published results of multi-epoch continual pre-training methods (EntroDrop and regularization baselines). One
    entry per (preset, backbone, method configuration); republishing an experiment replaces its entries by key.
    Every write of results/leaderboard.json is validated against the schema generated from this model."""

    schema_version: Literal[1]
    """Version of this schema; bumped on incompatible changes."""
    updated: str = Field(pattern=_DATE_TIME, json_schema_extra={"format": "date-time"})
    """UTC time the entries last changed (ISO 8601)."""
    entries: list[LeaderboardEntry]
    """Entries sorted by key; keys are unique."""

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_unset=True)


def leaderboard_json_schema() -> dict[str, Any]:
    """results/leaderboard.schema.json: the JSON schema of `LeaderboardDocument` (`entrodrop-bench leaderboard
    schema` rewrites the file; a test fails when the two differ)."""
    schema = LeaderboardDocument.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": "https://entrodrop-bench/leaderboard.schema.json", **schema}


class LeaderboardEntries(Artifact):
    """This experiment's leaderboard entries, one per method at its best grid point; `leaderboard publish`
    merges them into the shared leaderboard."""

    STAGE: ClassVar[str] = "leaderboard build CONFIG"

    entries: list[LeaderboardEntry]

    @classmethod
    def from_data(cls, data: Any, path: Path | str = "<data>"):
        # Files written before this model were a bare JSON list of entries; they read the same.
        if isinstance(data, list):
            data = {"format_version": cls.FORMAT, "entries": data}
        return super().from_data(data, path)

    def render(self) -> str:
        """Each entry as written (`LeaderboardEntry.to_json`: fields it never set stay absent)."""
        self.format_version = type(self).FORMAT
        return self.model_dump_json(indent=2, exclude_unset=True) + "\n"


class LaunchedJob(BaseModel):
    """One job `launch` submitted (or decided not to submit because a job it needed failed)."""

    model_config = ConfigDict(extra="forbid")

    key: str
    """What the job does: `prepare`, `train/<run>/seed<k>`, `eval/<i>` or `report`."""
    job_id: str | None
    """The scheduler's job id (SLURM job id, or the local process id); None: never submitted (see `note`)."""
    executor: Literal["slurm", "local"]
    """Where it was submitted."""
    submitted: str
    """UTC time of the submission (ISO 8601)."""
    depends_on: list[str] = []
    """Job ids it waits for (`afterok`; evaluation jobs: `after`, i.e. once those have started)."""
    stdout: str | None = None
    """The job's stdout file."""
    stderr: str | None = None
    """The job's stderr file."""
    config_hash: str
    """`ExperimentConfig.config_hash()` of the launched config."""
    note: str | None = None
    """Why a job was not submitted, or what else a reader should know."""


class LaunchJobs(Artifact):
    """Every job the launches of an experiment submitted, oldest first; the last record of a key is its current
    job. A re-launch reads it to skip jobs still queued or running and to list failed ones with their logs."""

    STAGE: ClassVar[str] = "launch CONFIG"

    jobs: list[LaunchedJob] = []

    @classmethod
    def path(cls, layout: Layout) -> Path:
        return layout.launch_jobs_file

    def current(self) -> dict[str, LaunchedJob]:
        """Key -> its latest record."""
        return {job.key: job for job in self.jobs}
