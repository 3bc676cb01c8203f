"""Which runs fill the rows of each paper table, read from a typed selection (`artifacts.Selection`).

Shared by `select`, which computes each table's paired comparisons against the Baseline (on a `SelectionRows`
view of what it is assembling), and by the tables, which render them: both must agree on a table's rows, since
Holm's correction runs across exactly those.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from entrodrop_bench.artifacts import MethodSelection, RunSelection, TableRoleRecord


class HasRows(Protocol):
    """What the row rules read: a `Selection`, or a `SelectionRows` view while `select` assembles one."""

    methods: dict[str, MethodSelection]
    runs: dict[str, RunSelection]
    target_domain: str


@dataclass
class SelectionRows:
    """The methods and runs of a selection still being assembled (as dicts), validated into their typed records."""

    methods: dict[str, MethodSelection]
    runs: dict[str, RunSelection]
    target_domain: str

    @classmethod
    def of(cls, methods: dict[str, Any], runs: dict[str, Any], target_domain: str) -> SelectionRows:
        return cls({n: MethodSelection.model_validate(m) for n, m in methods.items()},
                   {r: RunSelection.model_validate(v) for r, v in runs.items()}, target_domain)


def baseline_method(selection: HasRows) -> str | None:
    """The method relative gains are measured against: the first whose plugin's table role is `baseline`."""
    return next((n for n, m in selection.methods.items() if m.role.kind == "baseline"), None)


def main_table_name(selection: HasRows) -> str:
    """`table2` when the target domain is code (the paper's Table 2), else `table1`."""
    return "table2" if selection.target_domain == "code" else "table1"


def main_methods(selection: HasRows) -> list[str]:
    """Main-table methods in row order: by table-role rank (the paper's order), proposed methods last; ties keep
    config order."""
    methods = {n: m for n, m in selection.methods.items() if m.table in ("main", None)}
    return sorted(methods, key=lambda n: (methods[n].role.kind == "proposed", methods[n].role.rank))


ONLINE_ROLES = {"loss": "online_loss", "entropy": "online_entropy"}
"""A declared `online_signal` -> the Table 3 role of its row (one optional row per signal)."""
TARGETING_ROLES = ("random", "random_matched", "high_entropy", "low_entropy", *ONLINE_ROLES.values())


def _targeting_role(declared: TableRoleRecord, table: str) -> str | None:
    """The Table 3 role a run's declared table role fills, or None."""
    online = declared.online_signal
    if online:
        # An online gate (refreshed during training) has rows of its own and never stands for the static gate's
        # rows: the low-entropy row is the main table's proposed EntroDrop. With targets other than low it has
        # no Table 3 row at all (the paper's high-entropy row is a fixed gate; an online high row would be new).
        return ONLINE_ROLES.get(online) if declared.targets == "low" else None
    if declared.rate_matched_to:
        return "random_matched" if declared.targets == "all" else None
    if declared.targets == "all" and declared.kind != "proposed":
        return "random"
    if declared.targets == "high":
        return "high_entropy"
    if declared.targets == "low" and declared.kind == "proposed" and table == "main":
        return "low_entropy"
    return None


def role_runs(selection: HasRows) -> dict[str, tuple[str, str] | None]:
    """(method, run) for random / rate-matched random / high-entropy / low-entropy masking, and for low-signal
    masking with an online gate (`online_loss`, `online_entropy`), from the token-dropout methods' declared
    targets (the low-entropy row: the proposed method of the main table with a fixed gate; the rate-matched row: a
    random-masking run whose rate matches another method's, `rate_matched_to`; an online row: a low-targeting run
    whose gate is refreshed during training, `online_signal`)."""
    found: dict[str, tuple[str, str] | None] = dict.fromkeys(TARGETING_ROLES)
    for name, m in selection.methods.items():
        run = m.best_run or (m.runs[0] if m.runs else None)
        if run is None:
            continue
        role = _targeting_role(selection.runs[run].role, m.table)
        if role is not None:
            found[role] = found[role] or (name, run)
    return found


def has_targeting_table(roles: dict[str, tuple[str, str] | None]) -> bool:
    """Table 3 exists when a random (equal-rate or rate-matched), a high-entropy or an online-gate masking method
    is configured."""
    return any(roles[r] is not None for r in ("random", "random_matched", "high_entropy", *ONLINE_ROLES.values()))


def gamma_runs(selection: HasRows) -> list[tuple[float, str, str]]:
    """(gamma_max, method, run): the baseline as 0, then every run of the gamma sweep and of the main table that
    declares a drop rate and has a fixed gate (the main proposed run first among equal rates)."""
    rows = []
    for name, m in selection.methods.items():
        for run in m.runs:
            declared = selection.runs[run].role
            if declared.kind == "baseline":
                rows.append((0.0, name, run, False))
            elif declared.online_signal:
                continue  # an online gate is another method than the sweep's fixed one, whatever its rate
            elif m.table in ("gamma", "main") and declared.drop_rate is not None:
                rows.append((float(declared.drop_rate), name, run, m.table == "main" and declared.kind == "proposed"))
    rows.sort(key=lambda r: (r[0], not r[3], r[2]))
    seen, out = set(), []
    for g, name, run, _ in rows:
        if g not in seen:
            seen.add(g)
            out.append((g, name, run))
    return out


def has_gamma_table(selection: HasRows) -> bool:
    """Table 4 exists when a method of the `gamma` table is configured."""
    return any(m.table == "gamma" for m in selection.methods.values())


def table_rows(selection: HasRows) -> dict[str, list[tuple[str, str]]]:
    """Table name -> the (method, run) of each of its rows with a run, for every table this selection has."""
    main = [(n, selection.methods[n].best_run) for n in main_methods(selection)]
    tables = {main_table_name(selection): [(n, r) for n, r in main if r]}
    roles = role_runs(selection)
    if has_targeting_table(roles):
        tables["table3"] = [r for r in roles.values() if r is not None]
    if has_gamma_table(selection):
        tables["table4"] = [(name, run) for _, name, run in gamma_runs(selection)]
    return tables
