"""The base of every config section, and the name rules and types the sections share."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from entrodrop_bench.errors import shown
from entrodrop_bench.validation import FieldProblem

# Names that become folder or file names (methods, run names, benchmarks, presets, the experiment): one path
# component, never hidden, never `..`, no separators or spaces, short enough for any filesystem.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}")
NAME_RULE = "1-100 letters, digits, '_', '-', '.' or '+', starting with a letter or digit (it becomes a folder or file name)"
# A grid value is written into its run's folder name as `key=value`.
GRID_VALUE_RE = re.compile(r"[A-Za-z0-9_.+-]{1,40}")
MAX_RUN_NAME = 200
Seed = Annotated[int, Field(ge=0, lt=2**32)]


def name_problem(value: Any) -> str | None:
    """Why `value` cannot be used as a name that becomes a path, or None when it can."""
    if isinstance(value, str) and NAME_RE.fullmatch(value):
        return None
    return f"{shown(value)} is not a valid name: expected {NAME_RULE}"


def check_name(field: str, value: Any) -> None:
    if (problem := name_problem(value)) is not None:
        raise FieldProblem(field, problem)


class Section(BaseModel):
    # inf and nan pass `gt=0` style bounds (inf) or make every comparison false (nan): neither is a setting.
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, allow_inf_nan=False)
