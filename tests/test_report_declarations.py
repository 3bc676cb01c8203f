"""The report reads what a method declares (`Regularizer.report_fields`, `table_role`, `gate_settings`), never a
method's param or log key: a plugin that logs its masked fraction under a key of its own gets its Table 1 cell, and
no report or stage module names the built-in methods' params or log keys."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
from helpers import write_status
from test_selection import make_config, scores, write_run

from entrodrop_bench.paths import PROJECT_ROOT, Layout
from entrodrop_bench.regularizer import REGULARIZERS, ReportFields, TableRole
from entrodrop_bench.report.selection import select
from entrodrop_bench.report.tables import write_tables

STAGE_CODE = ["report", "prepare", "train", "evaluate"]
"""Folders of entrodrop_bench/ whose modules must read declarations only."""


def _declared_names() -> set[str]:
    """Every log key the built-in plugins declare (default settings and an online gate), and the params their
    declarations are made of (a token dropout's drop rate, EntroDrop's gate share)."""
    REGULARIZERS.discover()
    names = {"gamma_max", "percentile"}
    for name in REGULARIZERS.names():
        cls = REGULARIZERS.get(name)
        configs = [cls.Config()]
        if "signal" in cls.Config.model_fields:
            configs.append(cls.Config(signal="online_loss"))
        for config in configs:
            fields = cls.report_fields(config)
            names |= {k for k in (fields.masked_fraction, fields.gated_fraction, fields.trained_drop_rate) if k}
            names |= {s.key for s in fields.series}
    return names


def _lookups(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, text) of every string used to look a value up: a subscript (`x["k"]`), the key of a `.get("k")`, a
    member of a set literal (`exclude={"k"}`), or a module-level constant (`KEY = "k"`, used as a key later). The
    harness's own typed fields that share a name with a log key (`SeedSelection.masked_fraction`) are attributes
    and record keys, not lookups, and do not count."""
    found = []
    for node in ast.walk(tree):
        keys = []
        if isinstance(node, ast.Subscript):
            keys = [node.slice]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" and node.args:
            keys = [node.args[0]]
        elif isinstance(node, ast.Set):
            keys = list(node.elts)
        found += [(k.lineno, k.value) for k in keys if isinstance(k, ast.Constant) and isinstance(k.value, str)]
    for node in getattr(tree, "body", []):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            found.append((node.lineno, node.value.value))
    return found


def names_looked_up(root: Path, names: set[str]) -> list[str]:
    """`file:line: 'name'` for each lookup of one of `names` in the report and stage modules under `root`."""
    found = []
    for folder in STAGE_CODE:
        for path in sorted((root / "entrodrop_bench" / folder).rglob("*.py")):
            for line, text in _lookups(ast.parse(path.read_text(encoding="utf-8"))):
                if text in names:
                    found.append(f"{path.relative_to(root)}:{line}: {text!r}")
    return found


def test_no_report_or_stage_module_names_a_methods_param_or_log_key():
    names = _declared_names()
    assert {"masked_fraction", "gated_fraction", "gate_flip_fraction", "gate_drift_fraction"} <= names
    found = names_looked_up(PROJECT_ROOT, names)
    assert not found, "read these through the plugin's declarations instead:\n" + "\n".join(found)



def _is_dump(node: ast.AST | None) -> bool:
    """`<anything>.model_dump(...)`."""
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "model_dump"


def _looked_up(node: ast.AST) -> ast.AST | None:
    """What `node` looks a key up in: `x` of `x[...]` or of `x.get(...)`; None for anything else."""
    if isinstance(node, ast.Subscript):
        return node.value
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
        return node.func.value
    return None


def _own_nodes(scope: ast.AST):
    """The nodes of a module or function, without those of the functions defined inside it (their own scopes)."""
    todo = list(ast.iter_child_nodes(scope))
    while todo:
        node = todo.pop()
        yield node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            todo += ast.iter_child_nodes(node)


def dumped_lookups(tree: ast.AST) -> list[int]:
    """Lines that look a key up in the result of `model_dump()`, directly (`m.model_dump()["k"]`) or through a name
    the same module or function assigned it to (`d = m.model_dump()` ... `d["k"]`, `d.get("k")`)."""
    scopes = [tree, *(n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))]
    found = set()
    for scope in scopes:
        nodes = list(_own_nodes(scope))
        dumped = {t.id for n in nodes if isinstance(n, (ast.Assign, ast.AnnAssign)) and _is_dump(n.value)
                  for t in (n.targets if isinstance(n, ast.Assign) else [n.target]) if isinstance(t, ast.Name)}
        for node in nodes:
            value = _looked_up(node)
            if _is_dump(value) or (isinstance(value, ast.Name) and value.id in dumped):
                found.add(node.lineno)
    return sorted(found)


def test_no_report_or_stage_module_looks_up_keys_of_a_dumped_model():
    """The report and the stages read typed artifacts by their fields; turning one back into a dict and looking
    its keys up by string hides a renamed field from the type checker."""
    found = [f"{path.relative_to(PROJECT_ROOT)}:{line}"
             for folder in STAGE_CODE for path in sorted((PROJECT_ROOT / "entrodrop_bench" / folder).rglob("*.py"))
             for line in dumped_lookups(ast.parse(path.read_text(encoding="utf-8")))]
    assert not found, "read the typed fields (or build a new model) instead of model_dump() lookups:\n" + "\n".join(found)


@pytest.mark.parametrize("code, lines", [
    ("x = sel.model_dump()['runs']", [1]),
    ("def f(sel):\n    d = Selection.read(p).model_dump()\n    return d['runs'], d.get('rule')", [3]),
    ("def f(sel):\n    d: dict = sel.model_dump(mode='json')\n    d['runs'] = 1", [3]),
    ("def f(sel):\n    d = sel.model_dump()\n    return g(d)\ndef g(d):\n    return d['runs']", []),
    ("def f(sel):\n    return sel.runs['a'].seeds.get('0'), json.dumps(sel.model_dump())", []),
])
def test_the_dumped_model_rule_sees_direct_and_named_lookups(code, lines):
    assert dumped_lookups(ast.parse(code)) == lines


@pytest.fixture
def own_key_plugin(monkeypatch) -> str:
    """A token dropout that logs its masked fraction as `share_masked` and declares it (and nothing else)."""
    from baselines.token_dropout import TokenDropout

    class OwnKeys(TokenDropout):
        name = "own_keys_dropout"

        @classmethod
        def table_role(cls, config) -> TableRole:
            return TableRole(label="+Own keys", rank=50, targets="all")

        @classmethod
        def report_fields(cls, config) -> ReportFields:
            return ReportFields(masked_fraction="share_masked")

    REGULARIZERS.discover()
    monkeypatch.setitem(REGULARIZERS._items, OwnKeys.name, OwnKeys)
    monkeypatch.setitem(REGULARIZERS._origins, OwnKeys.name, f"{__name__}.OwnKeys")
    return OwnKeys.name


def test_the_masked_column_reads_the_declared_log_key(tmp_path, own_key_plugin):
    config = make_config(tmp_path, methods={"plain": {"plugin": "plain"}, "own": {"plugin": own_key_plugin},
                                            "token_dropout": {"plugin": "token_dropout"}})
    layout = Layout.from_config(config)
    for run in ("plain", "own", "token_dropout"):
        write_run(layout, run, 0, [(10, 1.0, scores(0.4, 0.4), 1.0)], plugin=None if run != "own" else own_key_plugin)
    # `write_run` logs masked_fraction 0.05 for every run; the own-key plugin's status carries its own key as well
    write_status(layout, "own", 0, total_steps=10, method="own", plugin=own_key_plugin,
                 stats={"masked_fraction": 0.05, "share_masked": 0.125})
    sel = select(config, layout)
    assert sel.runs["own"].report.masked_fraction == "share_masked"
    assert sel.runs["own"].seeds["0"].masked_fraction == 0.125
    assert sel.runs["plain"].seeds["0"].masked_fraction is None, "plain declares no masked fraction"
    assert sel.runs["token_dropout"].seeds["0"].gated_fraction is None  # declared, but not logged by write_run
    write_tables(config, layout)
    rows = {line.split(" | ")[0].strip("| "): line.rstrip(" |").split(" | ")[-1]
            for line in (layout.tables_dir / "table1.md").read_text().splitlines() if line.startswith("| ")}
    assert rows["+Own keys (own)"] == "12.50%" and rows["+Token Dropout"] == "5.00%" and rows["Baseline"] == "–"


def test_grid_points_that_differ_in_the_drop_rate_share_one_gate_share_key():
    """`gate_settings` is what prepare keys a measured gate share on: token dropout declares its drop rate out of it."""
    from baselines.entrodrop import EntroDrop

    a, b = EntroDrop.Config(gamma_max=0.05), EntroDrop.Config(gamma_max=0.4)
    assert EntroDrop.gate_settings(a) == EntroDrop.gate_settings(b)
    assert EntroDrop.gate_settings(a) != EntroDrop.gate_settings(EntroDrop.Config(percentile=0.3))
    fields = EntroDrop.report_fields(EntroDrop.Config())
    assert fields.gate_share == 0.5 and fields.series == ()  # the default percentile is declared too
    online = EntroDrop.report_fields(EntroDrop.Config(signal="online_loss"))
    assert [s.dashed for s in online.series] == [False, True]
    assert dataclasses.asdict(EntroDrop.report_fields(EntroDrop.Config(target="all")))["gate_share"] is None


def test_stage_code_folders_exist():
    assert all((PROJECT_ROOT / "entrodrop_bench" / f).is_dir() for f in STAGE_CODE), Path(PROJECT_ROOT)
