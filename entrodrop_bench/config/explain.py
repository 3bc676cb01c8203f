"""`entrodrop-bench config --explain`: every field of a resolved config with its value, type and docstring."""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any, Literal

from pydantic import BaseModel

from entrodrop_bench.config.experiment import ExperimentConfig


def type_name(annotation: Any) -> str:
    """A field's type as a reader writes it: `int | None`, `Literal['a', 'b']`, `list[str]` (bounds such as
    `ge=0` live in the docstring, not here)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is type(None):
        return "None"
    if origin is Annotated:
        return type_name(args[0])
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is Literal:
        return f"Literal[{', '.join(map(repr, args))}]"
    if origin is not None:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(type_name(a) for a in args)}]"
    return annotation.__name__ if isinstance(annotation, type) else str(annotation).replace("typing.", "")


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split())


def _explain_model(model: BaseModel, prefix: str, lines: list[str]) -> None:
    """One line per field of `model` (`key = value  [type]  docstring`), sections and maps of sections recursed."""
    for name, info in type(model).model_fields.items():
        value, key = getattr(model, name), f"{prefix}{name}"
        if isinstance(value, BaseModel):
            lines.append(f"{key}:  [{type(value).__name__}]  {_one_line(info.description)}")
            _explain_model(value, f"{key}.", lines)
        elif isinstance(value, dict) and value and all(isinstance(v, BaseModel) for v in value.values()):
            lines.append(f"{key}:  [{type_name(info.annotation)}]  {_one_line(info.description)}")
            for item, sub in value.items():
                _explain_model(sub, f"{key}.{item}.", lines)
        else:
            lines.append(f"{key} = {value!r}  [{type_name(info.annotation)}]  {_one_line(info.description)}")


def explain_config(config: ExperimentConfig) -> str:
    """Every section and field of a resolved config with its value, type and docstring, then every run with its
    plugin's typed params (defaults filled in) and what the plugin declares (`entrodrop-bench config --explain`)."""
    lines: list[str] = []
    _explain_model(config, "", lines)
    lines.append("runs:  (each method's grid points, params resolved into the plugin's own Config)")
    for run, spec in config.runs.items():
        role = spec.role
        declared = [f"table role {role.kind} {role.label!r}"]
        if spec.baseline_dependency:
            declared.append(f"needs the baseline run's minimum-validation step ({spec.baseline_dependency})")
        if spec.rate_dependency:
            declared.append(f"{spec.rate_dependency[0]} matches the masking rate of method {spec.rate_dependency[1]}")
        if signals := spec.plugin_cls.signals(spec.settings):
            declared.append(f"base-model signals {', '.join(sorted(signals))}")
        lines.append(f"runs.{run}:  method {spec.method}, plugin {spec.plugin} "
                     f"[{type(spec.settings).__module__}.{type(spec.settings).__qualname__}]; {'; '.join(declared)}")
        _explain_model(spec.settings, f"runs.{run}.params.", lines)
    return "\n".join(lines) + "\n"
