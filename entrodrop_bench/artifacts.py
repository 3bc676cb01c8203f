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
