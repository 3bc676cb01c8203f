"""Validation of typed configs into one clear ConfigError: shared by the experiment config and every plugin's Config.

A core module of its own so that `config` (which resolves plugins) and `regularizer` (the plugin API) both use
it without importing each other.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from entrodrop_bench.errors import ConfigError, shown

M = TypeVar("M", bound=BaseModel)


class FieldProblem(ValueError):
    """Raised by a validator about one key (a dotted path relative to the model it validates, or None: the key
    the validator is attached to); `validate_model` reports it as `<key path>: <message>`."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field


def _format_loc(prefix: str, loc: tuple) -> str:
    parts = [prefix] if prefix else []
    parts += [str(p) for p in loc if not (isinstance(p, str) and p.startswith("function-after"))]
    return ".".join(parts) or "(root)"


def validate_model(cls: type[M], data: Any, *, key_path: str = "") -> M:
    """Validate `data` into `cls`; translate pydantic's errors into one ConfigError naming each key path."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = _format_loc(key_path, err["loc"])
            value = err.get("input")
            problem = (err.get("ctx") or {}).get("error")
            if isinstance(problem, FieldProblem):
                field = tuple(problem.field.split(".")) if problem.field else ()
                lines.append(f"{_format_loc(key_path, (*err['loc'], *field))}: {problem}")
            elif err["type"] == "extra_forbidden":
                allowed = ", ".join(sorted(cls.model_fields)) if len(err["loc"]) == 1 else "see the section's fields"
                lines.append(f"{where}: unknown key (allowed here: {allowed})")
            elif err["type"] == "missing":
                lines.append(f"{where}: required key is missing")
            else:
                lines.append(f"{where}: {err['msg'][:200]} (got {shown(value)})")
        raise ConfigError("Invalid config:\n  " + "\n  ".join(lines)) from None
