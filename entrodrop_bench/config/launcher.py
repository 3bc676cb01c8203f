"""`launcher:`: how `launch` submits the jobs (SLURM or local processes); it changes nothing that is computed."""

from __future__ import annotations

import re

from pydantic import Field, model_validator

from entrodrop_bench.config.base import Section
from entrodrop_bench.errors import shown
from entrodrop_bench.validation import FieldProblem

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
