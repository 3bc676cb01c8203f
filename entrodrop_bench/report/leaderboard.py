"""Leaderboard entries from a selection, and the published, schema-validated `results/leaderboard.json`.

- `build_entries(config, layout)`: one entry per method (its best grid point in the selection `select`
  wrote), written to `layout.leaderboard_entries` (artifacts.LeaderboardEntries). An entry carries its
  paired comparisons with the Baseline (`vs_baseline`) when `select` computed any, Table 3's contrasts that
  start from its method (`contrasts`), and what its runs cost
  (`cost`: tokens, FLOPs, wall times, devices, device hours, summed over its seeds).
- `publish(results_dir, leaderboard)`: merge those entries into the leaderboard by key (republishing
  replaces, never duplicates; an unchanged publish leaves the file byte-identical), validate the whole
  document against `results/leaderboard.schema.json`, write it atomically and re-render the HTML page.
  Entries from a modified work tree are refused unless `allow_dirty` (they then say so); the experiment's own
  leaderboard drops the entries its config no longer produces, any other leaderboard marks them superseded.
- `validate_file(path)`: every violation, each prefixed with its JSON path (e.g. `$.entries[0].seeds`).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from entrodrop_bench import __version__
from entrodrop_bench.artifacts import (
    LEADERBOARD_SCHEMA_VERSION,
    Aggregate,
    EvalResult,
    LeaderboardBackbone,
    LeaderboardBudget,
    LeaderboardCheckpoint,
    LeaderboardComparison,
    LeaderboardContrast,
    LeaderboardCost,
    LeaderboardDocument,
    LeaderboardEntries,
    LeaderboardEntry,
    LeaderboardMethod,
    LeaderboardProvenance,
    LeaderboardScore,
    LeaderboardSelection,
    LeaderboardSummary,
    LeaderboardSuperseded,
    LeaderboardValCurve,
    LeaderboardVsBaseline,
    PairedDifference,
    PreparedRecord,
    Selection,
    ValCurve,
    interval_fields,
    leaderboard_json_schema,
)
from entrodrop_bench.atomic import json_sha256, write_json, write_text
from entrodrop_bench.config import ExperimentConfig
from entrodrop_bench.cost import summed_cost
from entrodrop_bench.errors import DataError, UserError
from entrodrop_bench.paths import LEADERBOARD_JSON, LEADERBOARD_SCHEMA, Layout, leaderboard_page
from entrodrop_bench.provenance import from_modified_tree, git_commit
from entrodrop_bench.report.leaderboard_html import render
from entrodrop_bench.report.selection import load_store, read_selection
from entrodrop_bench.report.tables import baseline_method, label, relative_pct

SCHEMA_VERSION = LEADERBOARD_SCHEMA_VERSION
VERSION_KEYS = {"lm_eval": "lm_eval", "evalplus": "evalplus", "transformers": "transformers", "torch": "torch"}


# --------------------------------------------------------------------------- provenance
def _installed(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _versions(store_records: list[EvalResult]) -> dict[str, str | None]:
    """Versions recorded by the evaluator for the selected checkpoints; installed versions fill gaps."""
    found: dict[str, str | None] = {}
    for rec in store_records:
        for k, v in rec.provenance.versions.items():
            found.setdefault(k, v)
    out = {k: found.get(k) or _installed(dist) for k, dist in VERSION_KEYS.items()}
    out["entrodrop_bench"] = found.get("entrodrop_bench") or __version__
    return out


def _data_hashes(layout: Layout) -> dict[str, str | None]:
    prepared = PreparedRecord.read_or_none(PreparedRecord.path(layout))
    if prepared is None:
        return {}
    return {"target_train": prepared.target_train.hash, "target_val": prepared.target_val.hash,
            "general": prepared.general.hash, "tokenizer": prepared.tokenizer_hash}


def _plugin_version(plugin: str) -> str | None:
    try:
        from entrodrop_bench.regularizer import REGULARIZERS

        return str(REGULARIZERS.get(plugin).version)
    except Exception:  # an unregistered or broken plugin must not block publishing its results
        return None


# --------------------------------------------------------------------------- entries
def entry_key(config: ExperimentConfig, method: str) -> str:
    """preset/backbone@revision/method/hash; the hash covers everything that defines the setting."""
    mc = config.methods[method]
    ident = {
        "preset": config.preset,
        "backbone": config.model.name_or_path,
        "revision": config.model.revision,
        "token_budget": config.data.token_budget,
        "benchmarks": sorted({b for bs in config.eval.domains.values() for b in bs}),
        "method": method,
        "config": mc.model_dump(mode="json"),
    }
    digest = json_sha256(ident, length=12)
    backbone = config.model.name_or_path.replace("/", "--") + f"@{config.model.revision or 'default'}"
    return f"{config.preset}/{backbone}/{method}/{digest}"


def _comparison(d: PairedDifference) -> LeaderboardComparison:
    return LeaderboardComparison(diff=d.difference, ci95=d.ci95, p=d.p, p_holm=d.p_holm,
                                 **({"mde": d.mde, "level": d.level} if d.level else {}))


def _contrasts(selection: Selection, method: str, run: str) -> list[LeaderboardContrast]:
    """Table 3's contrasts whose first term is this method's run (Holm across the table's contrasts)."""
    table3 = selection.comparisons.tables.get("table3")
    return [LeaderboardContrast(name=c.name, against=c.against, column=c.column, seeds=c.seeds,
                                comparison=None if c.difference is None else _comparison(c.difference))
            for c in (table3.contrasts if table3 else []) if c.method == method and c.run == run]


def _vs_baseline(selection: Selection, method: str, run: str) -> LeaderboardVsBaseline | None:
    """The method's paired comparisons with the Baseline, from the first table (main, 3, 4) that has its run as a
    row: Holm's correction is over that table's rows. None for the Baseline itself or a run in no table."""
    for table, found in selection.comparisons.tables.items():
        row = next((r for r in found.rows if r.method == method and r.run == run), None)
        if row is not None:
            return LeaderboardVsBaseline(
                table=table,
                baseline=selection.comparisons.baseline,
                seeds=row.seeds,
                columns={c: None if d is None else _comparison(d) for c, d in row.columns.items()},
            )
    return None


def _relative(selection: Selection, method: str, agg: Aggregate) -> dict[str, float | None]:
    """Domain (and `total`) -> relative change of the method's average vs the Baseline's, in percent."""
    base_method = baseline_method(selection)
    plain = selection.methods[base_method].best_run if base_method else None
    base = selection.runs[plain].aggregate if plain else None
    rel: dict[str, float | None] = {}
    for d, s in {**agg.domain_avg, "total": agg.total_avg}.items():
        b = base and (base.total_avg if d == "total" else base.domain_avg.get(d))
        pct = None if method == base_method or not b else relative_pct(s.mean, b.mean)
        rel[d] = None if pct is None else round(pct, 4)  # undefined against a zero baseline
    return rel


def _val_curve(layout: Layout, run: str, seeds: list[int]) -> list[LeaderboardValCurve]:
    """Each seed's validation-loss curve (step 0 and every checkpoint) from the run's val_curve.json, for the
    page's small multiples; a seed whose curve file is absent is left out."""
    curves = []
    for seed in seeds:
        curve = ValCurve.read_or_none(ValCurve.path(layout, run, seed))
        if curve is None or not curve.points:
            continue
        points = [p for p in curve.points if math.isfinite(p.overall)]
        curves.append(LeaderboardValCurve(seed=seed, step=[p.step for p in points],
                                          target_epoch=[round(p.target_epoch, 4) for p in points],
                                          loss=[round(p.overall, 5) for p in points]))
    return curves


def _entry(config: ExperimentConfig, layout: Layout, selection: Selection, method: str, store: dict, common: dict) -> LeaderboardEntry | None:
    meth = selection.methods[method]
    run = meth.best_run
    if run is None:
        return None
    info = selection.runs[run]
    agg = info.aggregate
    seeds = agg.seeds
    picked = [info.seeds[str(s)].selected for s in seeds]
    results = [store.get((run, s, p.step), {}) for s, p in zip(seeds, picked)]
    records = [rec for res in results for rec in res.values() if isinstance(rec, EvalResult)]
    first = {b: next((res[b] for res in results if isinstance(res.get(b), EvalResult)), None) for b in agg.scores}
    domain_of = {b: d for d, bs in selection.domains.items() for b in bs}
    entry = LeaderboardEntry(
        key=entry_key(config, method),
        experiment=config.name,
        preset=config.preset,
        paper_table=config.paper_table,
        method=LeaderboardMethod(
            name=method,
            label=label(method, meth),
            plugin=meth.plugin,
            plugin_version=_plugin_version(meth.plugin),
            table=meth.table,
            params=info.params,
            config=config.methods[method].model_dump(mode="json"),
        ),
        backbone=LeaderboardBackbone(id=config.model.name_or_path, revision=config.model.revision),
        budget=LeaderboardBudget(token_budget=config.data.token_budget, mix_ratio=list(config.data.mix_ratio),
                                 seq_len=config.data.seq_len),
        seeds=seeds,
        selection=LeaderboardSelection(
            rule=selection.rule,
            target_domain=selection.target_domain,
            checkpoints=[LeaderboardCheckpoint(seed=s, step=p.step, target_epoch=p.target_epoch, val_loss=p.val_loss,
                                               trained_at_commit=p.trained_at_commit)
                         for s, p in zip(seeds, picked)],
        ),
        scores={b: LeaderboardScore(metric=first[b] and first[b].primary_metric, harness=first[b] and first[b].harness,
                                    domain=domain_of[b], mean=s.mean, std=s.std, n=s.n,
                                    **interval_fields(s))
                for b, s in agg.scores.items()},
        domain_averages={d: LeaderboardSummary.of(s) for d, s in agg.domain_avg.items()},
        total_average=LeaderboardSummary.of(agg.total_avg),
        relative_to_plain_pct=_relative(selection, method, agg),
        provenance=LeaderboardProvenance(**common, versions=_versions(records)),
        # Measured cost of the entry's runs, summed over its seeds (entrodrop_bench/cost.py).
        cost=LeaderboardCost(**summed_cost([info.seeds[str(s)].cost for s in seeds])),
    )
    if (compared := _vs_baseline(selection, method, run)) is not None:
        entry.vs_baseline = compared
    if contrasts := _contrasts(selection, method, run):
        entry.contrasts = contrasts
    if curves := _val_curve(layout, run, seeds):
        entry.val_curve = curves
    return entry


def build_entries(config: ExperimentConfig, layout: Layout) -> list[LeaderboardEntry]:
    """One entry per method with a selected checkpoint in selection.json (refused when missing or stale); written
    to `layout.leaderboard_entries`."""
    selection = read_selection(config, layout)
    store = load_store(layout)
    common = {
        "git_commit": git_commit(),
        "data_hashes": _data_hashes(layout),
        "config_hash": config.config_hash(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    entries = [e for m in config.methods if (e := _entry(config, layout, selection, m, store, common)) is not None]
    written = [e.to_json() for e in entries]
    problems = _violations({"schema_version": SCHEMA_VERSION, "updated": common["date"], "entries": written})
    if problems:
        raise DataError(f"leaderboard entries built from {layout.results_dir} break the schema:\n  " + "\n  ".join(problems))
    LeaderboardEntries(entries=entries).write(layout.leaderboard_entries)
    return entries


# --------------------------------------------------------------------------- validation
def load_schema() -> dict:
    """The schema generated from `artifacts.LeaderboardDocument` (what results/leaderboard.schema.json holds)."""
    return leaderboard_json_schema()


def write_schema(path: Path = LEADERBOARD_SCHEMA) -> Path:
    """Regenerate the published schema file from the model (`entrodrop-bench leaderboard schema`)."""
    write_json(path, leaderboard_json_schema())
    return path


def _leaf_errors(errors) -> list:
    """Schema errors, each `anyOf` of an optional value (`X | null` in the model) replaced by what is wrong with the
    value as an X: "p_holm: 2.0 is greater than the maximum of 1", not "... is not valid under any of the schemas"."""
    out = []
    for e in errors:
        inner = [c for c in e.context or [] if not (c.validator == "type" and c.validator_value == "null")]
        out += _leaf_errors(inner) if e.validator == "anyOf" and inner else [e]
    return out


def _violations(document: Any) -> list[str]:
    from jsonschema import Draft202012Validator, FormatChecker

    validator = Draft202012Validator(load_schema(), format_checker=FormatChecker())
    errors = sorted(_leaf_errors(validator.iter_errors(document)), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    problems = [f"{e.json_path}: {e.message}" for e in errors]
    if isinstance(document, dict) and isinstance(document.get("entries"), list):
        seen: dict[str, int] = {}
        for i, entry in enumerate(document["entries"]):
            key = entry.get("key") if isinstance(entry, dict) else None
            if isinstance(key, str):
                if key in seen:
                    problems.append(f"$.entries[{i}].key: duplicate key {key!r} (also $.entries[{seen[key]}])")
                seen.setdefault(key, i)
    return problems


def render_page(leaderboard: Path) -> Path:
    """Rewrite a valid leaderboard's HTML page from its JSON (what publishing does last); returns the page."""
    problems = validate_file(leaderboard)
    if problems:
        raise DataError(f"{leaderboard} is not a valid leaderboard:\n  " + "\n  ".join(problems))
    page = leaderboard_page(Path(leaderboard))
    write_text(page, render(json.loads(Path(leaderboard).read_text())))
    return page


def validate_file(path: Path) -> list[str]:
    """Every schema violation of a leaderboard file, each as `<JSON path>: <message>` (empty: valid)."""
    path = Path(path)
    try:
        document = json.loads(path.read_text())
    except OSError as exc:
        return [f"$: cannot read {path}: {exc}"]
    except ValueError as exc:  # not UTF-8, or not JSON
        return [f"$: {path} is not valid JSON: {exc}"]
    return _violations(document)


# --------------------------------------------------------------------------- publishing
def _entries_file(results_dir_or_run: Path) -> Path:
    p = Path(results_dir_or_run)
    if p.is_file():
        return p
    candidate = Layout.of_results_dir(p).leaderboard_entries
    if not candidate.is_file():
        raise UserError(
            f"{candidate} does not exist: publish expects an experiment's results directory (e.g. results/tiny) "
            f"after `entrodrop-bench leaderboard build CONFIG` (or `run`) has written its leaderboard entries"
        )
    return candidate


def _check_target(leaderboard: Path) -> None:
    """The leaderboard is a .json file (its page is written beside it as .html) in a folder that can hold it."""
    from entrodrop_bench.paths import output_dir_problem

    if leaderboard.suffix != ".json":
        raise UserError(f"--into: {str(leaderboard)!r} must name a .json file (its HTML page is written beside it, "
                        f"as {leaderboard_page(leaderboard).name})")
    if leaderboard.is_dir():
        raise UserError(f"--into: {str(leaderboard)!r} is a folder; expected a .json file")
    folder = leaderboard.resolve().parent
    if folder.is_dir() and os.access(folder, os.W_OK):
        return
    if (problem := output_dir_problem(folder)) is not None:
        raise UserError(f"--into: {str(leaderboard)!r}: its folder {folder} {problem}")


@dataclass
class Published:
    """What one publish did to a leaderboard (the CLI prints it)."""

    entries: int
    removed: list[str] = field(default_factory=list)
    superseded: list[str] = field(default_factory=list)
    modified_tree: bool = False


def _modified_tree_reasons(new: list[LeaderboardEntry]) -> list[str]:
    """Why these entries come from a modified work tree: built from one, or published from one (empty: neither)."""
    reasons = [f"this work tree ({now}) has changes to tracked files"] if from_modified_tree(now := git_commit()) else []
    built = sorted({c for e in new if from_modified_tree(c := e.provenance.git_commit)})
    if built:
        reasons.append(f"the entries were built from a modified work tree ({', '.join(built)})")
    return reasons


def _marked_modified(entry: LeaderboardEntry, modified: bool) -> LeaderboardEntry:
    """The entry with `provenance.modified_work_tree` recorded."""
    return entry.model_copy(update={"provenance": entry.provenance.model_copy(update={"modified_work_tree": modified})})


def _retire(current: list[LeaderboardEntry], new: list[LeaderboardEntry], own: bool,
            date: str) -> tuple[list[LeaderboardEntry], list[str], list[str]]:
    """The leaderboard's entries once the new ones' experiments are republished: entries of the same experiment and
    preset that the current config no longer produces are dropped from the experiment's own leaderboard, and
    kept but marked superseded (history) in any other. Returns (entries kept, keys removed, keys superseded)."""
    republished = {(e.experiment, e.preset) for e in new}
    keys = {e.key for e in new}
    kept: list[LeaderboardEntry] = []
    removed: list[str] = []
    superseded: list[str] = []
    for e in current:
        if (e.experiment, e.preset) not in republished or e.key in keys:
            kept.append(e)
        elif own:
            removed.append(e.key)
        else:
            if e.superseded is None:  # an entry superseded earlier keeps the date it was first superseded
                e = e.model_copy(update={"superseded": LeaderboardSuperseded(date=date)})
                superseded.append(e.key)
            kept.append(e)
    return kept, removed, superseded


def _read_board(leaderboard: Path) -> tuple[LeaderboardDocument, list[dict]]:
    """A published leaderboard, valid against the schema: as the model, and its entries as they are on disk (so
    that an entry publishing leaves unchanged is rewritten byte for byte)."""
    problems = validate_file(leaderboard)
    if problems:
        raise DataError(f"{leaderboard} is not a valid leaderboard; fix or remove it first:\n  " + "\n  ".join(problems))
    raw = json.loads(leaderboard.read_text())
    try:
        board = LeaderboardDocument.model_validate(raw)
    except ValidationError as exc:
        raise DataError(f"{leaderboard} is not a valid leaderboard; fix or remove it first:\n  {exc}") from exc
    return board, raw["entries"]


def publish(results_dir_or_run: Path, leaderboard: Path = LEADERBOARD_JSON, allow_dirty: bool = False) -> Published:
    """Merge a run's entries into `leaderboard` by key, validate, write atomically, re-render its HTML page.

    Entries from a modified work tree are refused unless `allow_dirty`, and then carry
    `provenance.modified_work_tree`. The experiment's own leaderboard (`Layout.leaderboard_file`) keeps exactly
    the entries its config now produces; any other keeps the ones it no longer produces, marked `superseded`."""
    _check_target(Path(leaderboard))
    source = _entries_file(Path(results_dir_or_run))
    new = LeaderboardEntries.read(source).entries
    leaderboard = Path(leaderboard)
    current: list[LeaderboardEntry] = []
    as_read: list[dict] = []
    updated = ""
    if leaderboard.is_file():
        board, as_read = _read_board(leaderboard)
        current, updated = board.entries, board.updated
    reasons = _modified_tree_reasons(new) if new else []
    if reasons and not allow_dirty:
        raise UserError(f"refusing to publish {source} into {leaderboard}: " + "; ".join(reasons) + ". Commit the "
                        "changes, rebuild the entries (`entrodrop-bench leaderboard build CONFIG`) and publish again, "
                        "or pass --allow-dirty to publish them marked as coming from a modified work tree")
    new = [_marked_modified(e, bool(reasons)) for e in new]
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    own = leaderboard.resolve() == Layout.of_results_dir(source.parent).leaderboard_file.resolve()
    kept, removed, superseded = _retire(current, new, own, now)
    merged = {e.key: e for e in kept}
    merged.update({e.key: e for e in new})
    # An entry publishing left as it was is written as read; the new and the newly superseded ones from the model.
    untouched = {e.key: raw for e, raw in zip(current, as_read) if merged.get(e.key) is e}
    entries = [untouched.get(k) or merged[k].to_json() for k in sorted(merged, key=str)]
    changed = entries != as_read or not leaderboard.is_file()
    document = {
        "schema_version": SCHEMA_VERSION,
        "updated": now if changed else updated,
        "entries": entries,
    }
    problems = _violations(document)
    if problems:
        raise DataError(f"publishing {source} would make an invalid leaderboard; nothing was written:\n  " + "\n  ".join(problems))
    if changed:
        write_json(leaderboard, document)
    write_text(leaderboard_page(leaderboard), render(document))
    return Published(len(new), removed, superseded, bool(reasons))
