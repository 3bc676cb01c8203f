"""The one module that knows where things live on disk.

    <runs_dir>/                          (gitignored; config `output.runs_dir`)
      world/                             tiny preset (`WorldPaths`): world.json, corpora/, benchmarks/,
                                         tokenizer/, base_model/
      cache/entropy/<key>.safetensors    per-token signals of the frozen base model
      cache/data/<key>.safetensors       tokenized, split corpora
      cache/evalplus/                    evalplus ground truth
      cache/gate_shares.json             each masking run's gated share of the target training tokens
      train/<run>/seed<k>/               one training run (or a symlink to another experiment's identical
                                         run, `output.shared_runs_from`)
        resolved_config.yaml, train_log.jsonl, val_curve.json, status.json, train.out (parallel runs' output)
        checkpoint-<step>/               HF folder (model.safetensors, ...) + manifest.json + trainer_state.pt
      store/<run>/seed<k>/checkpoint-<step>/<benchmark>.json   one eval result each
      store/.../checkpoint-<step>/work/  checkpoint_hash.json, failures/<benchmark>.txt, and the harnesses'
                                         records (`EvalWorkDir`): lm-eval task YAMLs, request caches and log,
                                         evalplus and LiveCodeBench samples (`CodeEvalDir`)
      launch/jobs.json, config-<hash>.yaml, logs/   jobs submitted by `launch` (ids, log paths), submitit's files
    <results_dir>/                       (config `output.results_dir`)
      selection.json, item_outcomes.jsonl.gz, sample_entropy.json, leaderboard_entries.json
      tables/<table>.md|.tex|.csv, figures/<figure>.png|.pdf|.html, figures/NOTES.md
      leaderboard.json, leaderboard.html, leaderboard.png   this experiment's own leaderboard (exactly its
                                         current entries), its page and a screenshot of the page
    results/leaderboard.json, results/leaderboard.schema.json, results/leaderboard.html   the shared leaderboard
                                         (history: entries a config no longer produces stay, marked superseded)
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TASKS_DIR = PROJECT_ROOT / "tasks"
CONFIGS_DIR = PROJECT_ROOT / "configs"
LEADERBOARD_DIR = PROJECT_ROOT / "results"
# The tiny world's pre-trained base model and tokenizer, shipped with the code (`prepare.tiny.prebuilt`).
PREBUILT_WORLDS_DIR = PROJECT_ROOT / "entrodrop_bench" / "prepare" / "tiny" / "prebuilt_worlds"
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
CACHE_SUFFIX = ".safetensors"  # every cache is one safetensors file (no pickle)


def signals_cache_file(cache_dir: Path, key: str) -> Path:
    """A per-token signal cache in `cache_dir` (plugins get the folder as `PrepareContext.cache_dir`)."""
    return cache_dir / f"{key}{CACHE_SUFFIX}"


def evalplus_ground_truth_files(cache_dir: Path, name: str) -> tuple[Path, Path]:
    """(pickled expected outputs, their sha256 record) of one evalplus ground truth in `cache_dir`
    (`Layout.evalplus_cache_dir`); `name` is evalplus's own key: dataset, md5 of the problems, evalplus version."""
    return cache_dir / f"{name}.pkl", cache_dir / f"{name}.json"


def figure_file(figures_dir: Path, name: str, fmt: str) -> Path:
    """One rendering (`fmt`: png, pdf, html) of a figure in `figures_dir` (`Layout.figures_dir`)."""
    return figures_dir / f"{name}.{fmt}"


def prebuilt_world_dir(world_hash: str) -> Path:
    """The shipped tokenizer and base model of the tiny world `world_hash` (a `WorldPaths` layout: world.json
    holding each file's sha256, tokenizer/, base_model/)."""
    return PREBUILT_WORLDS_DIR / world_hash


def figure_notes_file(figures_dir: Path) -> Path:
    """Which figures were skipped or drawn from partial data, and why."""
    return figures_dir / "NOTES.md"


@dataclass(frozen=True)
class WorldPaths:
    """Paths inside a tiny world folder (`Layout.world_dir`, or the temp folder a world is built in)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def marker_file(self) -> Path:
        """Config hash, generator version and build stats; written last, so it marks the world complete."""
        return self.root / "world.json"

    @property
    def tokenizer_dir(self) -> Path:
        return self.root / "tokenizer"

    @property
    def base_model_dir(self) -> Path:
        return self.root / "base_model"

    @property
    def base_model_config(self) -> Path:
        """The HF config of the base model (its presence: the model was saved)."""
        return self.base_model_dir / "config.json"

    def corpus_file(self, source: str) -> Path:
        return self.root / "corpora" / f"{source}.jsonl"

    def benchmark_file(self, name: str) -> Path:
        return self.root / "benchmarks" / f"{name}.jsonl"


@dataclass(frozen=True)
class CodeEvalDir:
    """The record of one evalplus or LiveCodeBench evaluation of a checkpoint (`EvalWorkDir.evalplus_dir`,
    `.livecodebench_dir`, or any folder a caller names): what went into the sandbox and what it said. No sandboxed program can write here."""

    root: Path

    @property
    def samples_file(self) -> Path:
        return self.root / "samples.jsonl"

    @property
    def dataset_file(self) -> Path:
        """The problems evaluated (the dataset cut to `eval.limit`)."""
        return self.root / "dataset.jsonl"

    @property
    def eval_dir(self) -> Path:
        """Where evalplus's run records its samples and log (a `CodeEvalDir` of its own)."""
        return self.root / "eval"

    @property
    def log_file(self) -> Path:
        """evalplus's output when the evaluation failed."""
        return self.root / "evalplus.log"

    @property
    def ground_truth_log(self) -> Path:
        """evalplus's output when computing the ground truth failed."""
        return self.root / "evalplus-ground-truth.log"


@dataclass(frozen=True)
class EvalWorkDir:
    """One checkpoint's evaluation work folder (`Layout.eval_work_dir`): the harnesses' records and caches,
    never a result (those are `Layout.result_file`)."""

    root: Path

    def lm_eval_task_dir(self, benchmark: str) -> Path:
        """Where the generated lm-eval task YAML of a benchmark whose data is overridden goes."""
        return self.root / "tasks" / benchmark

    def lm_eval_task_yaml(self, benchmark: str) -> Path:
        return self.lm_eval_task_dir(benchmark) / f"{benchmark}.yaml"

    def lm_eval_cache(self, key: str) -> Path:
        """lm-eval's request cache (`use_cache` prefix) of one checkpoint content hash."""
        return self.root / "lm_cache" / key

    @property
    def lm_eval_log(self) -> Path:
        """lm-eval's progress bars and warnings."""
        return self.root / "lm_eval.log"

    def evalplus_dir(self, benchmark: str) -> Path:
        """The `CodeEvalDir` of one evalplus benchmark."""
        return self.root / "evalplus" / benchmark

    @property
    def livecodebench_dir(self) -> Path:
        """The `CodeEvalDir` of LiveCodeBench."""
        return self.root / "livecodebench"


# Checkout folders that hold the project itself: output written there would mix with the code.
SOURCE_DIRS = ("entrodrop_bench", "baselines", "tests", "configs", "tasks", "benchmarks", ".git", ".venv")


def _resolve(path: str) -> Path:
    p = Path(path).expanduser()
    return Path(os.path.normpath(p if p.is_absolute() else PROJECT_ROOT / p))


def resolve_project_path(path: str) -> Path:
    """A path from a config: `~` expanded, relative paths relative to the project root."""
    return _resolve(path)


def output_dir_problem(path: Path) -> str | None:
    """Why `path` cannot hold an experiment's output (None: it can). Checked before anything is written."""
    if path == PROJECT_ROOT or path in PROJECT_ROOT.parents:
        return "is the project checkout or a folder above it: expected a folder of its own (e.g. runs/my-experiment)"
    inside = next((d for d in SOURCE_DIRS if path.is_relative_to(PROJECT_ROOT / d)), None)
    if inside is not None:
        return f"is inside the project's {inside}/ folder: expected a folder of its own (e.g. runs/my-experiment)"
    try:
        if path.is_symlink() and not path.exists():
            return "is a broken symbolic link: expected a folder (or a path where one can be created)"
        if path.exists() and not path.is_dir():
            return "exists and is not a folder: expected a folder (or a path where one can be created)"
        existing = next(p for p in (path, *path.parents) if p.exists())
    except OSError as exc:
        return f"cannot be checked: {exc.strerror or exc}"
    if not existing.is_dir():
        return f"cannot be created: {existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"cannot be created or written: {existing} is not writable by this user"
    return None


@dataclass(frozen=True)
class Layout:
    """Paths of one experiment, from its `output` config section."""

    runs_dir: Path
    results_dir: Path

    @classmethod
    def from_config(cls, config) -> Layout:  # config: ExperimentConfig (untyped to avoid an import cycle)
        return cls(_resolve(config.output.runs_dir), _resolve(config.output.results_dir))

    @classmethod
    def of_runs_dir(cls, runs_dir: str) -> Layout:
        """Another experiment's runs, read through `output.shared_runs_from` (its results are never read)."""
        return cls(_resolve(runs_dir), _resolve(runs_dir))

    @classmethod
    def of_results_dir(cls, results_dir: Path) -> Layout:
        """An experiment's results folder given on the command line (`leaderboard publish`); its runs are never read."""
        return cls(results_dir, results_dir)

    # --- tiny world and caches ---
    @property
    def world_dir(self) -> Path:
        return self.runs_dir / "world"

    def entropy_cache(self, key: str) -> Path:
        """The base model's per-token signals of a corpus (see `prepare.entropy.signals_cache_key`)."""
        return signals_cache_file(self.entropy_cache_dir, key)

    def data_cache(self, key: str) -> Path:
        """A tokenized, split corpus (see `prepare.stage._corpus_key`)."""
        return self.runs_dir / "cache" / "data" / f"{key}{CACHE_SUFFIX}"

    # --- training ---
    def run_dir(self, run_name: str, seed: int) -> Path:
        return self.runs_dir / "train" / run_name / f"seed{seed}"

    def link_shared_run(self, run_name: str, seed: int, source: Path) -> Path:
        """Make this experiment's run folder a symlink to another experiment's finished run (absolute target)."""
        path = self.run_dir(run_name, seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(source.resolve(), target_is_directory=True)
        return path

    def train_output_file(self, run_name: str, seed: int) -> Path:
        """stdout and stderr of a run trained in its own process (`train.parallel_runs`)."""
        return self.run_dir(run_name, seed) / "train.out"

    @property
    def eval_filler_output_file(self) -> Path:
        """stdout and stderr of the eval worker that fills an idle training slot (`run`)."""
        return self.runs_dir / "store" / "eval_during_training.out"

    def checkpoint_dir(self, run_name: str, seed: int, step: int) -> Path:
        return self.run_dir(run_name, seed) / f"checkpoint-{step}"

    def checkpoints(self, run_name: str, seed: int) -> list[tuple[int, Path]]:
        """Complete checkpoints, oldest first. A folder counts only once its manifest.json exists."""
        run = self.run_dir(run_name, seed)
        if not run.is_dir():
            return []
        found = []
        for child in run.iterdir():
            m = CHECKPOINT_RE.match(child.name)
            if m and self.manifest_file(child).is_file():
                found.append((int(m.group(1)), child))
        return sorted(found)

    @staticmethod
    def manifest_file(checkpoint_dir: Path) -> Path:
        """Written last into a checkpoint folder: its presence marks the checkpoint complete."""
        return checkpoint_dir / "manifest.json"

    @staticmethod
    def weights_file(checkpoint_dir: Path) -> Path:
        """The checkpoint's weights, as HF `save_pretrained(safe_serialization=True)` names them."""
        return checkpoint_dir / "model.safetensors"

    @staticmethod
    def trainer_state_file(checkpoint_dir: Path) -> Path:
        """Optimizer, scheduler and RNG state, the log and the curve so far: what a resume needs."""
        return checkpoint_dir / "trainer_state.pt"

    def train_runs(self) -> list[tuple[str, int]]:
        """(run name, seed) of every training run folder on disk."""
        base = self.runs_dir / "train"
        if not base.is_dir():
            return []
        return sorted(
            (r.name, int(s.name[4:]))
            for r in base.iterdir()
            if r.is_dir()
            for s in r.iterdir()
            if s.is_dir() and s.name.startswith("seed")
        )

    def val_curve_file(self, run_name: str, seed: int) -> Path:
        return self.run_dir(run_name, seed) / "val_curve.json"

    def status_file(self, run_name: str, seed: int) -> Path:
        return self.run_dir(run_name, seed) / "status.json"

    def train_log_file(self, run_name: str, seed: int) -> Path:
        return self.run_dir(run_name, seed) / "train_log.jsonl"

    def run_config_file(self, run_name: str, seed: int) -> Path:
        return self.run_dir(run_name, seed) / "resolved_config.yaml"

    @property
    def experiment_config_file(self) -> Path:
        """The fully resolved experiment config (YAML + overrides), saved by `prepare`."""
        return self.runs_dir / "config.resolved.yaml"

    @property
    def prepared_file(self) -> Path:
        """What `prepare` produced: model path, corpus cache keys, plan. Its presence marks prepare as done."""
        return self.runs_dir / "prepared.json"

    @property
    def entropy_cache_dir(self) -> Path:
        return self.runs_dir / "cache" / "entropy"

    @property
    def gate_shares_file(self) -> Path:
        """Each masking run's gated share of the target training tokens, measured by `prepare`."""
        return self.runs_dir / "cache" / "gate_shares.json"

    # --- evaluation store ---
    def store_dir(self, run_name: str, seed: int, step: int) -> Path:
        return self.runs_dir / "store" / run_name / f"seed{seed}" / f"checkpoint-{step}"

    def result_file(self, run_name: str, seed: int, step: int, benchmark: str) -> Path:
        return self.store_dir(run_name, seed, step) / f"{benchmark}.json"

    def run_result_files(self, run_name: str, seed: int) -> list[Path]:
        """Every stored result of one training run (all checkpoints, all benchmarks), sorted."""
        return sorted((self.runs_dir / "store" / run_name / f"seed{seed}").glob("checkpoint-*/*.json"))
    def result_files(self) -> list[tuple[str, int, int, str, Path]]:
        """(run, seed, step, benchmark, path) of every result file in the store, sorted by path."""
        root = self.runs_dir / "store"
        if not root.is_dir():
            return []
        found = []
        for path in sorted(root.glob("*/seed*/checkpoint-*/*.json")):
            ckpt, seed_dir = path.parent, path.parent.parent
            m = CHECKPOINT_RE.match(ckpt.name)
            if m and seed_dir.name[4:].isdigit():
                found.append((seed_dir.parent.name, int(seed_dir.name[4:]), int(m.group(1)), path.stem, path))
        return found

    def eval_work_dir(self, run_name: str, seed: int, step: int) -> Path:
        return self.store_dir(run_name, seed, step) / "work"

    def eval_failure_file(self, run_name: str, seed: int, step: int, benchmark: str) -> Path:
        """Traceback of a benchmark that failed on a checkpoint (removed once it succeeds)."""
        return self.eval_work_dir(run_name, seed, step) / "failures" / f"{benchmark}.txt"

    @property
    def evalplus_cache_dir(self) -> Path:
        """evalplus ground truth, shared by every checkpoint."""
        return self.runs_dir / "cache" / "evalplus"

    def checkpoint_hash_memo(self, run_name: str, seed: int, step: int) -> Path:
        """The checkpoint's content hash with the size and mtime of each file hashed (`evaluate.store`)."""
        return self.eval_work_dir(run_name, seed, step) / "checkpoint_hash.json"

    def store_lock(self, run_name: str, seed: int, step: int) -> Path:
        return self.store_dir(run_name, seed, step) / ".lock"

    # --- jobs submitted by `entrodrop-bench launch` ---
    @property
    def launch_dir(self) -> Path:
        return self.runs_dir / "launch"

    @property
    def launch_jobs_file(self) -> Path:
        """Every job `launch` submitted (`LaunchJobs`): what a re-launch reads to submit nothing twice."""
        return self.launch_dir / "jobs.json"

    @property
    def launch_logs_dir(self) -> Path:
        """submitit's folder: each job's stdout, stderr, pickled call and result (submitit names the files)."""
        return self.launch_dir / "logs"

    def launch_config_file(self, config_hash: str) -> Path:
        """The resolved config the jobs of one launch read (one file per config hash: never rewritten under a job)."""
        return self.launch_dir / f"config-{config_hash}.yaml"

    @property
    def launch_lock(self) -> Path:
        """Held while a launch decides what to submit and records it."""
        return self.launch_dir / ".lock"

    # --- selection, tables, figures, leaderboard ---
    @property
    def selection_file(self) -> Path:
        return self.results_dir / "selection.json"

    @property
    def item_outcomes_file(self) -> Path:
        """Per-item outcomes of every evaluated checkpoint of the experiment's runs (`report.item_outcomes`): what
        `tables --from-items` rebuilds every table from, without the runs folder."""
        return self.results_dir / "item_outcomes.jsonl.gz"

    @property
    def tables_dir(self) -> Path:
        return self.results_dir / "tables"

    def table_file(self, name: str, suffix: str) -> Path:
        """One rendering (`suffix`: .md, .tex, .csv) of a table."""
        return self.tables_dir / f"{name}{suffix}"

    @property
    def figures_dir(self) -> Path:
        return self.results_dir / "figures"

    @property
    def sample_entropy_file(self) -> Path:
        """One target sample's tokens with base-model entropy and EntroDrop's gate (Figure 2c)."""
        return self.results_dir / "sample_entropy.json"

    @property
    def leaderboard_entries(self) -> Path:
        """This experiment's leaderboard entries (`leaderboard publish RESULTS_DIR` reads them through
        `Layout.of_results_dir`)."""
        return self.results_dir / "leaderboard_entries.json"

    @property
    def leaderboard_file(self) -> Path:
        """This experiment's own leaderboard: exactly the entries its current config produces (publishing into it
        drops the entries of the same experiment and preset that the config no longer produces)."""
        return self.results_dir / "leaderboard.json"


LEADERBOARD_JSON = LEADERBOARD_DIR / "leaderboard.json"
LEADERBOARD_SCHEMA = LEADERBOARD_DIR / "leaderboard.schema.json"


def leaderboard_page(leaderboard: Path) -> Path:
    """The HTML page of a leaderboard .json file, written beside it (results/leaderboard.html)."""
    return leaderboard.with_suffix(".html")


def leaderboard_screenshot(leaderboard: Path) -> Path:
    """A screenshot of a leaderboard's page, beside it (results/tiny/leaderboard.png)."""
    return leaderboard.with_suffix(".png")


# Folders of the checkout that hold outputs, not code: a change there does not make the work tree "modified".
OUTPUT_DIRS_IN_CHECKOUT = (LEADERBOARD_DIR.relative_to(PROJECT_ROOT).as_posix(),)


PAPER_REFERENCE = PROJECT_ROOT / "entrodrop_bench" / "report" / "paper_reference.json"
