"""The base of every inter-stage file: `Artifact` (one pydantic model per file, `read` and an atomic
`write`, a format version checked on read) and `ArtifactError`, what a file that cannot be read raises."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from entrodrop_bench.atomic import write_text
from entrodrop_bench.errors import DataError


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
