"""The file `launch` writes: `LaunchJobs` (launch/jobs.json), every job it submitted, which a re-launch reads."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from entrodrop_bench.artifacts.base import Artifact
from entrodrop_bench.paths import Layout


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
