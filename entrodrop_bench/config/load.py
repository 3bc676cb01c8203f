"""Reading a config: YAML through a strict, size-bounded loader, `base:` inheritance, `key.path=value` overrides,
then validation and `check_config`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from entrodrop_bench.config.experiment import ExperimentConfig, check_config
from entrodrop_bench.errors import ConfigError, shown
from entrodrop_bench.validation import validate_model


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error (PyYAML keeps the last)."""


def _construct_strict_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` merges may be overridden by explicit keys
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            first = seen.setdefault(key, key_node)
        except TypeError:  # an unhashable key: construct_mapping reports it
            continue
        if first is not key_node:
            raise yaml.constructor.ConstructorError(
                "while reading a mapping", node.start_mark,
                f"found the key {shown(key)} twice (first on line {first.start_mark.line + 1}); each key may appear "
                "only once in a section (PyYAML would silently keep the last)", key_node.start_mark)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_strict_mapping)


MAX_CONFIG_BYTES = 1 << 20
"""A config file (or an override value) larger than this is refused before it is parsed."""
MAX_YAML_NODES = 100_000
"""The most values a config may hold once its aliases (`*anchor`) are expanded: refuses alias bombs."""


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """How many nodes `node` stands for once every alias is expanded (aliases share nodes; memoized by id)."""
    key = id(node)
    if key not in memo:
        memo[key] = MAX_YAML_NODES + 1  # a node reached again while being sized: a cycle, refused as too big
        if isinstance(node, yaml.MappingNode):
            size = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            size = 1 + sum(_expanded_size(v, memo) for v in node.value)
        else:
            size = 1
        memo[key] = min(size, MAX_YAML_NODES + 1)
    return memo[key]


def parse_yaml(text: str) -> Any:
    """YAML through the safe loader, refusing duplicate keys at any depth, texts over MAX_CONFIG_BYTES and
    documents that expand to more than MAX_YAML_NODES values. Raises yaml.YAMLError."""
    if len(text) > MAX_CONFIG_BYTES:
        raise yaml.YAMLError(f"{len(text)} characters, over the limit of {MAX_CONFIG_BYTES}")
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}) > MAX_YAML_NODES:
            raise yaml.YAMLError(f"its aliases (*anchor) expand to more than {MAX_YAML_NODES} values (an alias bomb?)")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error as one line: what is wrong and where."""
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    problem = getattr(exc, "problem", None) or (str(exc).splitlines() or [""])[0]
    text = where + problem
    return text if len(text) <= 200 else text[:200] + "..."


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override {shown(text)}: expected key.path=value, e.g. train.lr=3e-4")
    key, raw = text.split("=", 1)
    keys = [k.strip() for k in key.split(".")]
    if not all(keys):
        raise ConfigError(f"override {shown(text)}: the key path {shown(key.strip())} has an empty part; expected "
                          "key.path=value with dot-separated keys, e.g. train.lr=3e-4")
    try:
        return keys, parse_yaml(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {shown(text)}: the value {shown(raw)} is not valid YAML ({_yaml_problem(exc)}); "
                          "expected a YAML value, e.g. train.seeds=[0,1] or 'name=\"a b\"'") from None


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    for text in overrides:
        keys, value = _parse_override(text)
        node = data
        for k in keys[:-1]:
            if node.get(k) is None:  # an absent or empty (`train:`) section
                node[k] = {}
            if not isinstance(node[k], dict):
                raise ConfigError(f"override {shown(text)}: {shown(k)} is not a section (it holds {shown(node[k])})")
            node = node[k]
        node[keys[-1]] = value
    return data


def _deep_merge(base: dict, child: dict) -> dict:
    out = dict(base)
    for key, value in child.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _read_text(path: Path) -> str:
    """A config file's text; anything but a readable UTF-8 file is refused with what was found."""
    if path.is_dir():
        raise ConfigError(f"config file {path} is a folder (expected a YAML file, e.g. configs/tiny.yaml)")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist (expected a YAML file, e.g. configs/tiny.yaml)")
    try:
        if (size := path.stat().st_size) > MAX_CONFIG_BYTES:
            raise ConfigError(f"config file {path} is {size} bytes, over the limit of {MAX_CONFIG_BYTES} for a config "
                              "(expected a YAML file of a few KB, e.g. configs/tiny.yaml)")
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror or exc}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        looks = " (it looks like UTF-16)" if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        raise ConfigError(f"config file {path} is not UTF-8 text{looks}: byte {raw[exc.start]:#04x} at offset "
                          f"{exc.start}; expected a YAML file saved as UTF-8") from None


def read_yaml(path: Path, _seen: tuple[Path, ...] = ()) -> dict:
    """Read a config YAML; a top-level `base: other.yaml` (relative to this file) is deep-merged under it."""
    text = _read_text(path)
    try:
        data = parse_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {_yaml_problem(exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping of sections at the top level, got {type(data).__name__}")
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str) or not base.strip():
        raise ConfigError(f"config file {path}: base: {shown(base)} is not a file name (expected e.g. base: qwen3-0.6b-math.yaml)")
    base_path = (path.parent / base).resolve()
    if not base_path.is_file():
        raise ConfigError(f"config file {path}: base: {shown(base)} ({shown(str(base_path))}) does not exist (expected a YAML file, "
                          "relative to this file)")
    if base_path in _seen:
        raise ConfigError(f"config file {path}: `base` chain loops back to {base_path}")
    merged = _deep_merge(read_yaml(base_path, (*_seen, base_path)), data)
    # In a child, `name: null` drops an inherited method or domain.
    for section in (merged, merged.get("eval")):
        key = "methods" if section is merged else "domains"
        if isinstance(section, dict) and isinstance(section.get(key), dict):
            section[key] = {k: v for k, v in section[key].items() if v is not None}
    return merged


def load_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read, override and validate an experiment config; every check happens before any compute.

    Validation resolves every method's params and grid point into its plugin's typed Config
    (`ExperimentConfig.runs`); `check_config` then checks what needs the whole config or the file system.
    What needs the environment (lm-eval's task list, the code sandbox, the hub: `pipeline.preflight`) is checked
    when a command that uses it starts, still before any compute."""
    data = apply_overrides(read_yaml(Path(path)), overrides or [])
    config = validate_model(ExperimentConfig, data)
    check_config(config)
    return config
