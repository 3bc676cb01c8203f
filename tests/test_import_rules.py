"""The package's layering, checked on the source (every import statement, function-local ones included):

    core           config, paths, artifacts, errors, atomic, registry, regularizer, provenance, distributed,
                   faults, validation, cost, models (and the package root): import only core
    stages         prepare < train < evaluate < report: import core and their own or an earlier stage, never a
                   later one; report never imports train or evaluate (it reads their files through artifacts)
    baselines/     the built-in plugins: import only core (their signals come in PrepareContext)
    orchestration  cli, pipeline, plan, sources, catalog, launch: may import anything

so a stage can be read, tested and changed knowing only what comes before it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from entrodrop_bench.paths import PROJECT_ROOT

CORE = {"config", "paths", "artifacts", "errors", "atomic", "registry", "regularizer", "provenance", "distributed", "faults", "validation", "cost",
        "models"}
STAGES = ("prepare", "train", "evaluate", "report")
ORCHESTRATION = {"cli", "pipeline", "plan", "sources", "catalog", "launch"}
PACKAGES = ("entrodrop_bench", "baselines")

def _layer(module: str) -> str | None:
    """The layer of a dotted module name of this project (None: a third-party or standard module)."""
    parts = module.split(".")
    if parts[0] == "baselines":
        return "baselines"
    if parts[0] != "entrodrop_bench":
        return None
    if len(parts) == 1:
        return "core"  # the package root: version constants only
    if parts[1] in STAGES:
        return parts[1]
    if parts[1] in CORE:
        return "core"
    if parts[1] in ORCHESTRATION:
        return "orchestration"
    raise AssertionError(f"{module}: not assigned to a layer; add it to CORE, STAGES or ORCHESTRATION in {__file__}")


def _modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the package and of baselines/."""
    found = {}
    for package in PACKAGES:
        for path in sorted((PROJECT_ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(PROJECT_ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imports(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every project module `module` imports anywhere in its file (`from a import b` also counts `a.b` when that is a
    module; `importlib.import_module("...")` with a literal name counts too)."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in modules)
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            names.add(node.args[0].value)
    return {n for n in names if n.split(".")[0] in PACKAGES}


def _allowed(importer: str, imported: str) -> bool:
    if importer == imported or importer == "orchestration":
        return True
    if importer == "core":
        return imported == "core"
    if importer == "baselines":
        return imported == "core"  # a plugin gets its signals in PrepareContext: it imports no stage
    if imported == "core":
        return True
    if importer == "report" and imported in ("train", "evaluate"):
        return False
    return imported in STAGES and STAGES.index(imported) < STAGES.index(importer)


def violations() -> list[tuple[str, str]]:
    found = []
    modules = _modules()
    for module, path in modules.items():
        importer = _layer(module)
        for name in sorted(_imports(module, path, modules)):
            if not _allowed(importer, _layer(name)):
                found.append((module, name))
    return found


def test_every_module_keeps_the_layering():
    found = violations()
    assert not found, "imports that break the layering (see this file's docstring):\n  " + "\n  ".join(
        f"{m} imports {n} ({_layer(m)} -> {_layer(n)})" for m, n in found)


@pytest.mark.parametrize(("importer", "imported", "allowed"), [
    ("core", "prepare", False), ("core", "orchestration", False), ("prepare", "train", False),
    ("train", "prepare", True), ("evaluate", "report", False), ("report", "evaluate", False), ("report", "train", False),
    ("report", "prepare", True), ("baselines", "prepare", False), ("baselines", "train", False),
    ("prepare", "orchestration", False), ("orchestration", "report", True), ("train", "baselines", False),
])
def test_the_rules_themselves(importer, imported, allowed):
    assert _allowed(importer, imported) is allowed


def test_function_local_and_relative_imports_are_seen(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("from . import selection\nfrom .tables import label\n\ndef f():\n"
                      "    from entrodrop_bench.evaluate import store\n    import entrodrop_bench.train.trainer\n"
                      "    importlib.import_module('baselines.plain')\n")
    names = _imports("entrodrop_bench.report.m", source, _modules())
    assert names == {"entrodrop_bench.report", "entrodrop_bench.report.selection", "entrodrop_bench.report.tables",
                     "entrodrop_bench.evaluate", "entrodrop_bench.evaluate.store", "entrodrop_bench.train.trainer",
                     "baselines.plain"}
    assert {(_layer(n), _allowed("report", _layer(n))) for n in names} >= {("evaluate", False), ("train", False),
                                                                             ("baselines", False)}
