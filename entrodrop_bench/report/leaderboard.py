"""Leaderboard entries from a selection, and the published, schema-validated `results/leaderboard.json`.

- `build_entries(config, layout)`: one entry per method (its best grid point in the selection `select`
  wrote), written to `layout.leaderboard_entries` (artifacts.LeaderboardEntries). An entry carries its
  paired comparisons with the Baseline (`vs_baseline`) when `select` computed any, and what its runs cost
  (`cost`: tokens, FLOPs, wall times, devices, device hours, summed over its seeds).
- `publish(results_dir, leaderboard)`: merge those entries into the leaderboard by key (republishing
  replaces, never duplicates; an unchanged publish leaves the file byte-identical), validate the whole
  document against `results/leaderboard.schema.json`, write it atomically and re-render the HTML page.
- `validate_file(path)`: every violation, each prefixed with its JSON path (e.g. `$.entries[0].seeds`).
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from entrodrop_bench import __version__
from entrodrop_bench.artifacts import (
    LEADERBOARD_SCHEMA_VERSION,
    Aggregate,
    EvalResult,
    LeaderboardBackbone,
    LeaderboardBudget,
    LeaderboardCheckpoint,
    LeaderboardComparison,
    LeaderboardCost,
    LeaderboardEntries,
    LeaderboardEntry,
    LeaderboardMethod,
    LeaderboardProvenance,
    LeaderboardScore,
    LeaderboardSelection,
    LeaderboardSummary,
    LeaderboardVsBaseline,
    PreparedRecord,
    Selection,
    interval_fields,
    leaderboard_json_schema,
)
from entrodrop_bench.atomic import json_sha256, write_json, write_text
from entrodrop_bench.config import ExperimentConfig
from entrodrop_bench.cost import summed_cost
from entrodrop_bench.errors import DataError, UserError
from entrodrop_bench.paths import LEADERBOARD_JSON, LEADERBOARD_SCHEMA, Layout, leaderboard_page
from entrodrop_bench.provenance import git_commit
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
                columns={c: None if d is None else LeaderboardComparison(
                    diff=d.difference, ci95=d.ci95, p=d.p, p_holm=d.p_holm,
                    **({"mde": d.mde, "level": d.level} if d.level else {}))
                         for c, d in row.columns.items()},
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


def _entry(config: ExperimentConfig, selection: Selection, method: str, store: dict, common: dict) -> LeaderboardEntry | None:
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
    entries = [e for m in config.methods if (e := _entry(config, selection, m, store, common)) is not None]
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


def publish(results_dir_or_run: Path, leaderboard: Path = LEADERBOARD_JSON) -> None:
    """Merge a run's entries into `leaderboard` by key, validate, write atomically, re-render its HTML page."""
    _check_target(Path(leaderboard))
    source = _entries_file(Path(results_dir_or_run))
    new = LeaderboardEntries.read(source).entries
    leaderboard = Path(leaderboard)
    current: list[dict] = []
    updated = ""
    if leaderboard.is_file():
        problems = validate_file(leaderboard)
        if problems:
            raise DataError(f"{leaderboard} is not a valid leaderboard; fix or remove it first:\n  " + "\n  ".join(problems))
        # Checked against the schema generated from the model; the entries kept as they are on disk, so an
        # unchanged entry is rewritten byte for byte.
        board = json.loads(leaderboard.read_text())
        current, updated = board["entries"], board["updated"]
    merged = {e["key"]: e for e in current}
    merged.update({e.key: e.to_json() for e in new})
    entries = [merged[k] for k in sorted(merged, key=str)]
    changed = entries != current or not leaderboard.is_file()
    document = {
        "schema_version": SCHEMA_VERSION,
        "updated": datetime.now(timezone.utc).isoformat(timespec="seconds") if changed else updated,
        "entries": entries,
    }
    problems = _violations(document)
    if problems:
        raise DataError(f"publishing {source} would make an invalid leaderboard; nothing was written:\n  " + "\n  ".join(problems))
    if changed:
        write_json(leaderboard, document)
    write_text(leaderboard_page(leaderboard), render(document))
