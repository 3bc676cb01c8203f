"""Paired comparisons against the Baseline, through `select` into selection.json, the tables and the leaderboard.

Synthetic stores with per-item outcomes (`write_run(..., items=...)`): a planted effect on known items is found
significant, no effect rejects in about 5% of seeded repeats, Holm runs across the rows of each table, and one
seed gets item-level intervals instead of zero-width ones.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_selection import item_means, make_config, scores, write_run

from entrodrop_bench.cli import build_parser
from entrodrop_bench.config import load_config
from entrodrop_bench.errors import DataError
from entrodrop_bench.orchestrate.pipeline import stage_tables
from entrodrop_bench.paths import CONFIGS_DIR, Layout
from entrodrop_bench.report import comparisons, item_outcomes
from entrodrop_bench.report.leaderboard import build_entries, publish, validate_file
from entrodrop_bench.report.selection import select
from entrodrop_bench.report.statistics import holm
from entrodrop_bench.report.tables import write_tables

BENCHES = ["gsm8k", "svamp", "hellaswag", "piqa"]
N_ITEMS = 200


def _baseline_items(rng: np.random.Generator, n: int = N_ITEMS) -> dict[str, list[float]]:
    return {b: rng.binomial(1, 0.4, size=n).astype(float).tolist() for b in BENCHES}


def _planted(base: dict[str, list[float]], solved: int, benches=("gsm8k", "svamp")) -> dict[str, list[float]]:
    """The Baseline's items with the first `solved` items of `benches` turned from wrong to right (a known gain)."""
    out = {b: list(v) for b, v in base.items()}
    for b in benches:
        out[b][:solved] = [1.0] * solved
    return out


def _with_known_gain(base: dict[str, list[float]], solved: int) -> tuple[dict, dict, float]:
    """Baseline items with the first `solved` items failed, and a method that solves exactly those: the math
    average gains solved / N_ITEMS x 100 points."""
    base = {b: ([0.0] * solved + v[solved:]) if b in ("gsm8k", "svamp") else v for b, v in base.items()}
    return base, _planted(base, solved), 100.0 * solved / N_ITEMS


def _write(layout: Layout, run: str, seed: int, items: dict[str, list[float]], **kwargs) -> None:
    write_run(layout, run, seed, [(10, 1.0, item_means(items), 1.0)], items={10: items}, **kwargs)


def _main_config(tmp_path: Path, seeds=(0,)):
    methods = {"plain": {"plugin": "plain"}, "weight_decay": {"plugin": "weight_decay"},
               "entrodrop": {"plugin": "entrodrop", "params": {"gamma_max": 0.1}}}
    return make_config(tmp_path, methods=methods, seeds=seeds)


@pytest.mark.parametrize("seeds", [(0,), (0, 1)])
def test_planted_effect_is_significant_in_selection_tables_and_leaderboard(tmp_path, seeds):
    config = _main_config(tmp_path, seeds)
    layout = Layout.from_config(config)
    rng = np.random.default_rng(0)
    for seed in seeds:
        base, better, gain = _with_known_gain(_baseline_items(rng), solved=30)
        _write(layout, "plain", seed, base)
        _write(layout, "weight_decay", seed, base)  # identical to the Baseline: no effect
        _write(layout, "entrodrop", seed, better, params={"gamma_max": 0.1})
    sel = select(config, layout)
    rows = {r.method: r for r in sel.comparisons.tables["table1"].rows}
    assert set(rows) == {"weight_decay", "entrodrop"}, "the Baseline is not compared with itself"
    entro = rows["entrodrop"]
    assert entro.seeds == list(seeds)
    math = entro.columns["math"]
    assert math.difference == pytest.approx(gain)
    assert math.ci95[0] > 0 and math.ci95[0] < gain < math.ci95[1]
    assert math.p_holm < 0.05
    assert entro.columns["general"].difference == 0.0 and entro.columns["general"].p_holm == 1.0
    assert entro.columns["total"].difference == pytest.approx(gain / 2)  # mean of the two domain averages
    assert rows["weight_decay"].columns["math"].p_holm == 1.0
    assert sel.comparisons.lacking_items == [] and sel.comparisons.notes == []
    assert select(config, layout).comparisons == sel.comparisons, "seeded: reruns give the same numbers"

    write_tables(config, layout)
    md = (layout.tables_dir / "table1.md").read_text()
    entro_row = next(line for line in md.splitlines() if line.startswith("| +EntroDrop |"))
    wd_row = next(line for line in md.splitlines() if line.startswith("| +Weight Decay |"))
    cells = [c.strip() for c in entro_row.strip("|").split(" | ")]
    # One seed compares two checkpoints: its mark is the item-level one and says so; several seeds test methods.
    mark, tex_mark = ("‡", "$^\\ddagger$") if len(seeds) == 1 else ("†", "$^\\dagger$")
    assert cells[3].endswith(f"%){mark}"), cells  # math Avg: significant
    assert not cells[6].endswith(mark)  # general Avg: no effect
    assert mark not in wd_row
    if len(seeds) == 1:
        assert "- ‡: item-level only. With one training seed a row compares two checkpoints, not two methods" in md
        assert "- †:" not in md
    else:
        assert "- †: Holm-adjusted p < 0.05 vs the Baseline over training seeds and test items" in md
    assert "- Minimum detectable effect (the true difference vs the Baseline found with 80% power" in md
    assert f"%){tex_mark}" in (layout.tables_dir / "table1.tex").read_text()
    records = list(csv.DictReader((layout.tables_dir / "table1.csv").open()))
    rec = next(r for r in records if r["method"] == "entrodrop" and r["column"] == "math Avg")
    assert float(rec["diff_vs_baseline"]) == pytest.approx(gain, abs=1e-4)
    assert float(rec["diff_ci95_low"]) > 0 and float(rec["p_holm"]) < 0.05 and float(rec["mde"]) > 0
    assert rec["level"] == ("items only" if len(seeds) == 1 else "seeds and items")
    base_rec = next(r for r in records if r["method"] == "plain" and r["column"] == "math Avg")
    assert base_rec["p_holm"] == ""

    entries = {e.method.name: e for e in build_entries(config, layout)}
    vs = entries["entrodrop"].vs_baseline
    assert vs.table == "table1" and vs.baseline == "plain"
    assert vs.columns["math"].diff == pytest.approx(gain) and vs.columns["math"].p_holm < 0.05
    assert "vs_baseline" not in entries["plain"].to_json()
    board = tmp_path / "board.json"
    publish(layout.results_dir, board, allow_dirty=True)  # whatever state this checkout is in
    assert validate_file(board) == []
    # The page marks the cell as the tables do, says what both marks mean, and states the column's MDE.
    page = board.with_suffix(".html").read_text()
    entro_body = page.split(f'data-key="{entries["entrodrop"].key}"')[1].split("</tbody>")[0]
    wd_body = page.split(f'data-key="{entries["weight_decay"].key}"')[1].split("</tbody>")[0]
    other = "†" if mark == "‡" else "‡"
    assert f'<span class="mark">{mark}</span>' in entro_body and f'<span class="mark">{other}</span>' not in page
    assert '<span class="mark">' not in wd_body
    assert "<b>‡</b>: item-level only. With one training seed a row compares two checkpoints" in page
    assert "<b>†</b>: over training seeds and test items" in page
    footer = page.split('<tr class="mde">')[1].split("</tr>")[0]
    assert f"±{vs.columns['math'].mde:.2f}" in footer  # Weight Decay, identical to the Baseline, has no MDE to add
    over = "items only (one seed: this checkpoint)" if len(seeds) == 1 else "seeds and items"
    assert f'<span class="ci" title="95% interval over {over}">' in entro_body
    doc = json.loads(board.read_text())
    doc["entries"][0].setdefault("vs_baseline", vs.model_dump(mode="json"))["columns"]["math"]["p_holm"] = 2.0
    board.write_text(json.dumps(doc))
    assert any("p_holm" in p and "maximum" in p for p in validate_file(board))


def test_no_effect_rejects_in_about_five_percent_of_repeats(tmp_path):
    domains = {"math": ["gsm8k"], "general": ["piqa"]}
    rng = np.random.default_rng(5)
    repeats, rejections = 120, 0
    for r in range(repeats):
        config = make_config(tmp_path / f"r{r}", methods={"plain": {"plugin": "plain"}, "entrodrop": {"plugin": "entrodrop"}},
                             domains=domains)
        layout = Layout.from_config(config)
        # Shared item difficulty (the pairing), independent outcomes given it: the methods do not differ.
        difficulty = {b: rng.uniform(0.1, 0.9, size=60) for b in ("gsm8k", "piqa")}
        for run in ("plain", "entrodrop"):
            _write(layout, run, 0, {b: rng.binomial(1, d).astype(float).tolist() for b, d in difficulty.items()})
        (row,) = select(config, layout).comparisons.tables["table1"].rows
        rejections += row.columns["math"].p_holm < 0.05
    # 5% of 120 = 6 (sd ~2.4)
    assert 1 <= rejections <= 14, rejections


def _family(sel, table: str, column: str) -> tuple[list[float], list[float]]:
    rows = sel.comparisons.tables[table].rows
    return [r.columns[column].p for r in rows], [r.columns[column].p_holm for r in rows]


def test_holm_runs_across_the_rows_of_each_table(tmp_path):
    methods = {
        "plain": {"plugin": "plain"},
        "hidden_dropout": {"plugin": "hidden_dropout"},
        "neftune": {"plugin": "neftune"},
        "token_dropout": {"plugin": "token_dropout"},
        "entrodrop": {"plugin": "entrodrop", "params": {"gamma_max": 0.1}},
        "entrodrop_gamma": {"plugin": "entrodrop", "grid": {"gamma_max": [0.05, 0.2]}, "table": "gamma"},
    }
    config = make_config(tmp_path, methods=methods)
    layout = Layout.from_config(config)
    rng = np.random.default_rng(1)
    base = _baseline_items(rng)
    _write(layout, "plain", 0, base)
    # graded effects on math, so the family's p-values differ and Holm's multipliers matter
    for run, solved, params in [("hidden_dropout", 4, {}), ("neftune", 10, {}), ("token_dropout", 14, {}),
                                ("entrodrop", 24, {"gamma_max": 0.1}),
                                ("entrodrop_gamma@gamma_max=0.05", 8, {"gamma_max": 0.05}),
                                ("entrodrop_gamma@gamma_max=0.2", 12, {"gamma_max": 0.2})]:
        gained = {b: list(v) for b, v in base.items()}
        for b in ("gsm8k", "svamp"):
            wrong = [i for i, x in enumerate(gained[b]) if x == 0.0][:solved]
            for i in wrong:
                gained[b][i] = 1.0
        _write(layout, run, 0, gained, method=run.split("@")[0], plugin="entrodrop" if "entrodrop" in run else None,
               params=params)
    sel = select(config, layout)
    tables = sel.comparisons.tables
    assert [r.run for r in tables["table1"].rows] == ["hidden_dropout", "neftune", "token_dropout", "entrodrop"]
    assert [r.run for r in tables["table3"].rows] == ["token_dropout", "entrodrop"]
    assert [r.run for r in tables["table4"].rows] == ["entrodrop_gamma@gamma_max=0.05", "entrodrop",
                                                      "entrodrop_gamma@gamma_max=0.2"]
    for table in ("table1", "table3", "table4"):
        for column in ("math", "total"):
            raw, adjusted = _family(sel, table, column)
            assert adjusted == pytest.approx(holm(raw).tolist())
            assert all(a >= p for a, p in zip(adjusted, raw))
    raw, adjusted = _family(sel, "table1", "math")
    assert max(a - p for a, p in zip(adjusted, raw)) > 0, "a family of four must inflate some p-value"
    # the same run (entrodrop) is corrected within each table's own family
    p_in = {t: next(r.columns["math"].p_holm for r in tables[t].rows if r.run == "entrodrop") for t in tables}
    raw_p = next(r.columns["math"].p for r in tables["table1"].rows if r.run == "entrodrop")
    assert raw_p <= p_in["table3"] <= p_in["table1"]  # a family of two inflates less than one of four

    write_tables(config, layout)
    t3 = (layout.tables_dir / "table3.md").read_text()
    assert "‡ [" in next(line for line in t3.splitlines() if line.startswith("| Low-entropy")).split(" | ")[2]
    t4 = (layout.tables_dir / "table4.md").read_text()
    assert next(line for line in t4.splitlines() if line.startswith("| γ_max = 0.1 |")).split(" | ")[1].endswith("‡")
    assert "Baseline (γ = 0) | " in t4 and "‡" not in next(line for line in t4.splitlines() if "Baseline (γ = 0)" in line)
    records = list(csv.DictReader((layout.tables_dir / "table4.csv").open()))
    by_run = {r["run"]: r for r in records if r["column"] == "math Avg"}
    assert [float(by_run[r.run]["p_holm"]) for r in tables["table4"].rows] == pytest.approx(
        [r.columns["math"].p_holm for r in tables["table4"].rows], abs=1e-4)


def test_single_seed_gets_item_level_intervals_never_zero_width(tmp_path):
    config = make_config(tmp_path, methods={"plain": {"plugin": "plain"}, "entrodrop": {"plugin": "entrodrop"}})
    layout = Layout.from_config(config)
    items = _baseline_items(np.random.default_rng(2), n=80)
    _write(layout, "plain", 0, items)
    write_run(layout, "entrodrop", 0, [(10, 1.0, scores(0.5, 0.5), 1.0)])  # no per-item outcomes
    sel = select(config, layout)
    agg = sel.runs["plain"].aggregate
    for summary in [*agg.scores.values(), *agg.domain_avg.values(), agg.total_avg]:
        lo, hi = summary.ci95
        assert summary.n == 1 and lo < summary.mean < hi
    # binomial standard error of 80 items near p = 0.4 is ~5.5 points: the interval is about +-11
    assert 10 < agg.scores["gsm8k"].ci95[1] - agg.scores["gsm8k"].ci95[0] < 35
    assert agg.total_avg.ci95[1] - agg.total_avg.ci95[0] < agg.scores["gsm8k"].ci95[1] - agg.scores["gsm8k"].ci95[0]
    assert comparisons.score_interval({0: {"gsm8k": {"a": 0.0, "b": 0.0}}}, {"math": ["gsm8k"]}, "gsm8k") is None
    none = sel.runs["entrodrop"].aggregate
    assert none.total_avg.ci95 is None and none.scores["gsm8k"].ci95 is None, "one value alone has no interval"
    entries = {e.method.name: e.to_json() for e in build_entries(config, layout)}
    assert "ci95" not in entries["entrodrop"]["total_average"]
    assert entries["plain"]["total_average"]["ci95"] == pytest.approx(agg.total_avg.ci95)
    assert entries["plain"]["total_average"]["ci_over"] == "items only" and "ci_over" not in entries["entrodrop"]["total_average"]
    # The page shows the interval, starred as items-only (one seed), and says what both mean.
    board = tmp_path / "board.json"
    publish(layout.results_dir, board, allow_dirty=True)  # whatever state this checkout is in
    page = board.with_suffix(".html").read_text()
    lo, hi = agg.total_avg.ci95
    assert (f'<span class="v">{agg.total_avg.mean:.2f}</span><span class="ci" title="95% interval over items only '
            f'(one seed: this checkpoint)">[{lo:.2f}, {hi:.2f}]*</span>') in page
    assert "<b>*</b> after an interval: one seed, so the interval is over the test items only" in page


def test_results_without_items_leave_their_cells_absent_with_a_note(tmp_path):
    config = make_config(tmp_path, methods={"plain": {"plugin": "plain"}, "entrodrop": {"plugin": "entrodrop"}})
    layout = Layout.from_config(config)
    base, better, _ = _with_known_gain(_baseline_items(np.random.default_rng(3)), solved=30)
    _write(layout, "plain", 0, base)
    del better["piqa"]  # entrodrop's piqa result keeps no per-item outcomes
    write_run(layout, "entrodrop", 0, [(10, 1.0, {**item_means(better), "piqa": 0.7}, 1.0)], items={10: better})
    sel = select(config, layout)
    (row,) = sel.comparisons.tables["table1"].rows
    assert row.columns["math"].p_holm < 0.05
    assert row.columns["general"] is None and row.columns["total"] is None
    assert sel.comparisons.lacking_items == ["entrodrop/seed0/checkpoint-10/piqa"]
    (note,) = sel.comparisons.notes
    assert "entrodrop/seed0/checkpoint-10/piqa" in note and "`entrodrop-bench eval CONFIG` with eval.per_item: true re-evaluates" in note
    write_tables(config, layout)
    md = (layout.tables_dir / "table1.md").read_text()
    assert note in md
    records = list(csv.DictReader((layout.tables_dir / "table1.csv").open()))
    general = next(r for r in records if r["method"] == "entrodrop" and r["column"] == "general Avg")
    assert general["p"] == general["p_holm"] == "" and general["mean"] != ""
    (entry,) = [e for e in build_entries(config, layout) if e.method.name == "entrodrop"]
    assert entry.vs_baseline.columns["general"] is None


def test_no_items_anywhere_leaves_the_tables_as_before(tmp_path):
    """Without per-item outcomes there is nothing to mark: no mark, and a line under the table says why."""
    config = make_config(tmp_path, methods={"plain": {"plugin": "plain"}, "entrodrop": {"plugin": "entrodrop"}})
    layout = Layout.from_config(config)
    write_run(layout, "plain", 0, [(10, 1.0, scores(0.1, 0.1), 1.0)])
    write_run(layout, "entrodrop", 0, [(10, 1.0, scores(0.9, 0.9), 1.0)])
    sel = select(config, layout)
    (row,) = sel.comparisons.tables["table1"].rows
    assert all(d is None for d in row.columns.values())
    assert len(sel.comparisons.lacking_items) == 8
    write_tables(config, layout)
    md = (layout.tables_dir / "table1.md").read_text()
    assert "†" not in md and "‡" not in md
    assert "- No significance marks: no row has the per-item outcomes a comparison with the Baseline needs." in md


def test_malformed_item_outcomes_are_refused_naming_the_result(tmp_path):
    config = make_config(tmp_path, methods={"plain": {"plugin": "plain"}, "entrodrop": {"plugin": "entrodrop"}})
    layout = Layout.from_config(config)
    items = _baseline_items(np.random.default_rng(4), n=10)
    _write(layout, "plain", 0, items)
    _write(layout, "entrodrop", 0, items)
    path = layout.result_file("entrodrop", 0, 10, "svamp")
    record = json.loads(path.read_text())
    record["items"]["ids"][1] = record["items"]["ids"][0]  # two outcomes for one item
    path.write_text(json.dumps(record))
    with pytest.raises(DataError, match=r"entrodrop/seed0/checkpoint-10/svamp: per-item outcomes must hold as many "
                                        r"unique item ids as scores.*9 unique ids of 10"):
        select(config, layout)


def _table3_config(tmp_path: Path, seeds=(0, 1, 2)):
    methods = {"plain": {"plugin": "plain"},
               "token_dropout": {"plugin": "token_dropout"},
               "entrodrop": {"plugin": "entrodrop", "params": {"gamma_max": 0.1}},
               "entrodrop_high": {"plugin": "entrodrop", "params": {"gamma_max": 0.1, "target": "high"},
                                  "table": "targeting"}}
    return make_config(tmp_path, methods=methods, seeds=seeds)


def test_table3_answers_its_own_question_with_intervals_and_tests(tmp_path):
    """EntroDrop against random masking and against high-entropy masking: their own paired differences (not each
    against the Baseline), with Holm across the two, over 3 seeds and their items."""
    config = _table3_config(tmp_path)
    layout = Layout.from_config(config)
    rng = np.random.default_rng(8)
    for seed in (0, 1, 2):
        base, better, gain = _with_known_gain(_baseline_items(rng), solved=40)
        _write(layout, "plain", seed, base)
        _write(layout, "token_dropout", seed, base)
        _write(layout, "entrodrop_high", seed, base, method="entrodrop_high", plugin="entrodrop",
               params={"gamma_max": 0.1, "target": "high"})
        _write(layout, "entrodrop", seed, better, params={"gamma_max": 0.1})
    sel = select(config, layout)
    contrasts = {c.name: c for c in sel.comparisons.tables["table3"].contrasts}
    assert set(contrasts) == {"low vs random", "low vs high entropy"}  # no rate-matched row configured
    for name, against in (("low vs random", "token_dropout"), ("low vs high entropy", "entrodrop_high")):
        c = contrasts[name]
        assert (c.method, c.against_run, c.column, c.seeds) == ("entrodrop", against, "math", [0, 1, 2])
        d = c.difference
        assert d.difference == pytest.approx(gain) and d.ci95[0] < gain < d.ci95[1] and d.ci95[0] > 0
        assert d.level == "seeds and items" and d.p_holm < 0.05 and d.mde > 0
    assert [c.difference.p_holm for c in contrasts.values()] == pytest.approx(
        holm([c.difference.p for c in contrasts.values()]).tolist())
    # The leaderboard entry of the low-entropy method carries both contrasts; no other entry carries any.
    entries = {e.method.name: e for e in build_entries(config, layout)}
    carried = {c.name: c for c in entries["entrodrop"].contrasts}
    assert set(carried) == set(contrasts) and all(entries[m].contrasts is None for m in entries if m != "entrodrop")
    for name, c in carried.items():
        d = contrasts[name].difference
        assert (c.against, c.column, c.seeds) == (contrasts[name].against, "math", [0, 1, 2])
        assert (c.comparison.diff, c.comparison.p_holm, c.comparison.mde, c.comparison.level) == (
            d.difference, d.p_holm, d.mde, "seeds and items")
    # ... and the page shows them under Table 3, marked over seeds and items.
    board = tmp_path / "board.json"
    publish(layout.results_dir, board, allow_dirty=True)  # whatever state this checkout is in
    assert validate_file(board) == []
    page = board.with_suffix(".html").read_text()
    block = page.split("<h3>Table 3's own contrasts</h3>")[1].split("</table>")[0]
    rows = block.split("<tr>")[2:]
    assert [r.split("<td>")[1].split("</td>")[0] for r in rows] == list(carried)
    assert all(f"{c.comparison.diff:+.2f}†" in r for r, c in zip(rows, carried.values()))
    assert "+EntroDrop − +Token Dropout" in rows[0] and "+EntroDrop − +EntroDrop (entrodrop_high)" in rows[1]
    assert page.count("Table 3's own contrasts") == 1  # under Table 3, though EntroDrop's own row is in Table 1
    assert "Table 3's own contrasts" in page.split("Table 3: which tokens to mask")[1].split("</section>")[0]


def test_the_per_item_file_rebuilds_every_statistic_without_the_runs_folder(tmp_path):
    config = _table3_config(tmp_path, seeds=(0, 1))
    layout = Layout.from_config(config)
    rng = np.random.default_rng(9)
    for seed in (0, 1):
        base, better, _ = _with_known_gain(_baseline_items(rng, n=60), solved=10)
        for run, items in (("plain", base), ("token_dropout", better), ("entrodrop", better)):
            # two checkpoints, so the cross-fitted optimism has a choice to make
            write_run(layout, run, seed, [(10, 1.0, item_means(base), 1.0), (20, 2.0, item_means(items), 0.9)],
                      items={10: base, 20: items}, **({"params": {"gamma_max": 0.1}} if run == "entrodrop" else {}))
        _write(layout, "entrodrop_high", seed, base, method="entrodrop_high", plugin="entrodrop",
               params={"gamma_max": 0.1, "target": "high"})
    sel = select(config, layout)
    written = {p.name: p.read_bytes() for p in write_tables(config, layout)}
    assert {"table1.md", "table3.md", "table3.csv"} <= set(written)
    path = layout.item_outcomes_file
    first = path.read_bytes()
    select(config, layout)
    assert path.read_bytes() == first, "the same outcomes write the same bytes"
    experiment, items = item_outcomes.read(path)
    assert experiment == config.name and items[("entrodrop", 1, 20)]["gsm8k"]
    shutil.rmtree(layout.runs_dir)
    rebuilt = item_outcomes.rebuilt_selection(config, layout, path).model_dump()
    original = sel.model_dump()
    assert rebuilt["comparisons"] == original["comparisons"]
    assert rebuilt["runs"] == original["runs"]
    assert original["runs"]["entrodrop"]["aggregate"]["heldout"]["crossfit_avg"] is not None
    assert (item_outcomes.rebuilt_selection(config, layout, path).render()
            == layout.selection_file.read_text(encoding="utf-8")), "rebuilt: selection.json, byte for byte"
    # `entrodrop-bench tables CONFIG --from-items FILE` (this stage) writes the same tables, byte for byte.
    for p in layout.tables_dir.iterdir():
        p.unlink()
    stage_tables(config, layout, echo=lambda _: None, from_items=path)
    assert {p.name: p.read_bytes() for p in layout.tables_dir.iterdir()} == written
    args = build_parser().parse_args(["tables", "configs/tiny-study.yaml", "--from-items", str(path)])
    assert args.from_items == str(path)
    # A file of another experiment, or a damaged one, is refused by name.
    other = tmp_path / "other.jsonl.gz"
    other.write_bytes(item_outcomes.encode(items, "another"))
    with pytest.raises(DataError, match="holds the outcomes of experiment 'another'"):
        item_outcomes.rebuilt_selection(config, layout, other)
    other.write_bytes(b"not gzip")
    with pytest.raises(DataError, match="not a gzip-compressed per-item outcomes file"):
        item_outcomes.read(other)


def test_the_committed_study_tables_rebuild_from_the_committed_per_item_file(tmp_path):
    """`entrodrop-bench tables configs/tiny-study.yaml --from-items <its item_outcomes.jsonl.gz>` rewrites the
    committed study tables exactly, from the committed selection.json and per-item file alone (no runs folder)."""
    config = load_config(CONFIGS_DIR / "tiny-study.yaml")
    committed = Layout.from_config(config)
    if not committed.item_outcomes_file.is_file():
        pytest.skip(f"{committed.item_outcomes_file} is not committed yet (`make study` writes it)")
    rebuilt = Layout.from_config(load_config(CONFIGS_DIR / "tiny-study.yaml", [
        f"output.results_dir={tmp_path / 'results'}", f"output.runs_dir={tmp_path / 'no-runs'}"]))
    rebuilt.results_dir.mkdir(parents=True)
    shutil.copy(committed.selection_file, rebuilt.selection_file)
    stage_tables(config, rebuilt, echo=lambda _: None, from_items=committed.item_outcomes_file)
    assert not (tmp_path / "no-runs").exists()
    for path in sorted(rebuilt.tables_dir.iterdir()):
        assert path.read_text() == (committed.tables_dir / path.name).read_text(), path.name
