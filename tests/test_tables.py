"""Tables from synthetic stores: a golden Table 1, the paper's own numbers reproduced, Tables 3-4, seeds.

Set UPDATE_GOLDEN=1 to rewrite tests/golden/table1.md after an intended format change (then review the diff).
"""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from helpers import register_online_stub
from test_selection import item_means, make_config, scores, write_run

from entrodrop_bench.artifacts import ArtifactError
from entrodrop_bench.paths import PAPER_REFERENCE, Layout
from entrodrop_bench.report.leaderboard import build_entries
from entrodrop_bench.report.rows import has_targeting_table, role_runs
from entrodrop_bench.report.selection import select
from entrodrop_bench.report.tables import latex_escape, proposed_method, r2, relative_pct, write_tables

GOLDEN = Path(__file__).parent / "golden"


def _golden_store(tmp_path: Path):
    config = make_config(tmp_path)
    layout = Layout.from_config(config)
    write_run(layout, "plain", 0, [(10, 2.0, scores(0.40, 0.50, 0.50, 0.70), 1.0), (20, 4.0, scores(0.42, 0.50, 0.48, 0.70), 0.9)])
    write_run(layout, "weight_decay@weight_decay=0.1", 0, [(10, 2.0, scores(0.43, 0.50, 0.50, 0.71), 1.0)], params={"weight_decay": 0.1})
    write_run(layout, "weight_decay@weight_decay=0.5", 0, [(10, 2.0, scores(0.44, 0.51, 0.49, 0.69), 1.0)], params={"weight_decay": 0.5})
    write_run(layout, "entrodrop", 0, [(10, 2.0, scores(0.45, 0.52, 0.52, 0.70), 1.0), (20, 4.0, scores(0.47, 0.53, 0.51, 0.71), 0.8)],
              params={"gamma_max": 0.1})
    return config, layout


def _md_rows(text: str) -> dict[str, list[str]]:
    """First Markdown table of a file: first cell -> cells."""
    rows = {}
    for line in text.split("\n\n", 2)[1].splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        rows[cells[0]] = cells
    return rows


def test_table1_matches_golden_and_hand_computed_relative_change(tmp_path):
    config, layout = _golden_store(tmp_path)
    select(config, layout)
    paths = write_tables(config, layout)
    assert sorted(p.name for p in paths) == ["table1.csv", "table1.md", "table1.tex"]
    text = (layout.tables_dir / "table1.md").read_text()
    golden = GOLDEN / "table1.md"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()
    rows = _md_rows(text)
    # hand computation: Baseline math avg (42+50)/2 = 46; EntroDrop (47+53)/2 = 50 -> 50/46 - 1 = +8.70%
    assert rows["Baseline"][3] == "46.00"
    assert rows["+EntroDrop"][3] == "50.00 (+8.70%)"
    # weight decay's best grid point is 0.5: math (44+51)/2 = 47.5 -> 47.5/46 - 1 = +3.26%; total 53.25/52.5 -> +1.43%
    assert rows["+Weight Decay"][3] == "47.50 (+3.26%)" and rows["+Weight Decay"][8] == "weight_decay=0.5"
    assert rows["+Weight Decay"][7] == "53.25 (+1.43%)"
    assert rows["Baseline"][9] == "step 20 (epoch 4.0)"
    records = list(csv.DictReader((layout.tables_dir / "table1.csv").open()))
    entro = next(r for r in records if r["method"] == "entrodrop" and r["column"] == "math Avg")
    assert float(entro["relative_pct"]) == pytest.approx((50 / 46 - 1) * 100, abs=1e-4)
    tex = (layout.tables_dir / "table1.tex").read_text()
    assert r"50.00 (+8.70\%)" in tex and r"weight\_decay=0.5" in tex and "\\toprule" in tex


def test_tables_read_the_written_selection_and_refuse_a_stale_one(tmp_path):
    config, layout = _golden_store(tmp_path)
    with pytest.raises(ArtifactError, match=r"selection\.json does not exist: run `entrodrop-bench select CONFIG`"):
        write_tables(config, layout)
    select(config, layout)
    written = layout.selection_file.read_bytes()
    write_tables(config, layout)
    assert layout.selection_file.read_bytes() == written, "tables never rewrite the selection"
    before = (layout.tables_dir / "table1.md").read_text()
    write_run(layout, "plain", 0, [(20, 4.0, scores(0.9, 0.9), 0.9)])  # better scores: the written selection is stale
    with pytest.raises(ArtifactError, match=r"out of date: .*store/plain/seed0/checkpoint-20/gsm8k\.json changed.*"
                                            r"run `entrodrop-bench select CONFIG`"):
        write_tables(config, layout)
    assert (layout.tables_dir / "table1.md").read_text() == before
    select(config, layout)
    write_tables(config, layout)
    assert _md_rows((layout.tables_dir / "table1.md").read_text())["Baseline"][3] == "90.00"


def _paper_store(tmp_path: Path, table: str, preset: str, target: str):
    ref = json.loads(PAPER_REFERENCE.read_text())[table][preset]
    methods = {name: {"plugin": name} for name in ref["rows"]}
    config = make_config(tmp_path, methods=methods, domains=ref["domains"], target=target, preset=preset,
                         paper_table=int(table[-1]), name=preset)
    layout = Layout.from_config(config)
    for name, row in ref["rows"].items():
        write_run(layout, name, 0, [(100, 5.0, {b: v / 100 for b, v in row["scores"].items()}, 0.7)])
    return ref, config, layout


@pytest.mark.parametrize(("table", "preset", "target"), [("table1", "qwen3-0.6b-math", "math"), ("table2", "qwen3-0.6b-code", "code")])
def test_paper_rows_fed_as_store_reproduce_printed_averages_and_relative_change(tmp_path, table, preset, target):
    ref, config, layout = _paper_store(tmp_path, table, preset, target)
    select(config, layout)
    write_tables(config, layout)
    text = (layout.tables_dir / f"{table}.md").read_text()
    rows = _md_rows(text)
    labels = {"plain": "Baseline", "weight_decay": "+Weight Decay", "hidden_dropout": "+Hidden Dropout",
              "neftune": "+NEFTune", "token_dropout": "+Token Dropout", "entrodrop": "+EntroDrop"}
    headers = [h.strip() for h in text.splitlines()[2].strip("|").split(" | ")]
    checked = 0
    for name, row in ref["rows"].items():
        cells = dict(zip(headers, rows[labels[name]]))
        for dom in [target, "general", "total"]:
            printed = row["avg"][dom]
            if printed is None:  # the paper's Table 2 prints no Total Avg
                continue
            rel = "" if row["relative_pct"] is None else f" ({row['relative_pct'][dom]:+.2f}%)"
            assert cells["Total Avg" if dom == "total" else f"{dom} Avg"] == f"{printed:.2f}{rel}", (name, dom)
            checked += 1
        for bench, value in row["scores"].items():
            assert cells[bench] == f"{value:.1f}"
    assert checked >= 2 * len(ref["rows"])
    # side-by-side comparison with the paper: every difference is zero
    assert "Reproduced vs paper" in text
    comparison = text.split("## Reproduced vs paper", 1)[1]
    deltas = re.findall(r"\| ([+-]\d+\.\d\d) ", comparison)
    assert deltas and set(deltas) == {"+0.00"}
    records = list(csv.DictReader((layout.tables_dir / f"{table}.csv").open()))
    bench_diffs = [float(r["diff_vs_paper"]) for r in records if r["table"] == table and r["column"] in ref["rows"]["plain"]["scores"]]
    assert len(bench_diffs) == len(ref["rows"]) * len(ref["rows"]["plain"]["scores"]) and set(bench_diffs) == {0.0}


def test_ablation_tables_3_and_4_with_paper_columns(tmp_path):
    methods = {
        "plain": {"plugin": "plain"},
        "entrodrop": {"plugin": "entrodrop", "params": {"gamma_max": 0.1}},
        "token_dropout": {"plugin": "token_dropout", "params": {"gamma_max": 0.1}, "table": "targeting"},
        "entrodrop_high": {"plugin": "entrodrop", "params": {"gamma_max": 0.1, "target": "high"}, "table": "targeting"},
        "entrodrop_gamma": {"plugin": "entrodrop", "grid": {"gamma_max": [0.05, 0.4]}, "table": "gamma"},
    }
    domains = {"math": ["gsm8k", "svamp"]}
    config = make_config(tmp_path, methods=methods, domains=domains, preset="qwen3-0.6b-math", paper_table=3)
    layout = Layout.from_config(config)
    math_scores = {"plain": 0.40, "entrodrop": 0.46, "token_dropout": 0.44, "entrodrop_high": 0.45,
                   "entrodrop_gamma@gamma_max=0.05": 0.43, "entrodrop_gamma@gamma_max=0.4": 0.41}
    for run, s in math_scores.items():
        params = {"gamma_max": float(run.split("=")[1])} if "=" in run else {}
        # val loss falls to a minimum at epoch 10 then rises, except gamma 0.4 which keeps falling
        losses = [0.9, 0.7, 0.8] if run != "entrodrop_gamma@gamma_max=0.4" else [0.9, 0.8, 0.6]
        write_run(layout, run, 0, [(10 * i, 5.0 * i, {"gsm8k": s, "svamp": s}, v) for i, v in enumerate(losses, 1)],
                  params=params)
    select(config, layout)
    paths = {p.name for p in write_tables(config, layout)}
    assert {"table1.md", "table3.md", "table3.tex", "table3.csv", "table4.md", "table4.csv"} <= paths
    t3_text = (layout.tables_dir / "table3.md").read_text()
    t3 = _md_rows(t3_text)
    assert list(t3) == ["Random masking", "High-entropy", "Low-entropy (EntroDrop)"]  # no online method: no online row
    assert "online" not in t3_text
    assert t3["Random masking"][2] == "44.00" and t3["High-entropy"][3] == "+1.00"
    assert t3["Low-entropy (EntroDrop)"][3] == "+2.00" and t3["Low-entropy (EntroDrop)"][4] == "45.32"
    t4 = _md_rows((layout.tables_dir / "table4.md").read_text())
    assert list(t4) == ["Baseline (γ = 0)", "γ_max = 0.05", "γ_max = 0.1", "γ_max = 0.4"]
    assert t4["Baseline (γ = 0)"][1:4] == ["40.00", "10.0", "0.700"]
    assert t4["γ_max = 0.4"][2] == ">15.0" and t4["γ_max = 0.4"][3] == "0.600"
    assert t4["γ_max = 0.1"][4] == "–"  # curves without per-document losses: no paired difference
    assert t4["γ_max = 0.1"][5:8] == ["44.94", "50", "0.689"]  # paper columns
    # realized masked fraction (each run's status logs 0.05): token-dropout runs only, the Baseline masks nothing
    assert t4["γ_max = 0.1"][8] == "5.00%" and t4["Baseline (γ = 0)"][8] == "–"
    assert t3["Random masking"][-1] == "5.00%"


def test_main_table_token_dropout_is_also_table3s_random_row(tmp_path):
    """One vanilla token-dropout run fills the Table 1 "+Token Dropout" row and Table 3's "random" row."""
    methods = {
        "plain": {"plugin": "plain"},
        "token_dropout": {"plugin": "token_dropout", "params": {"gamma_max": 0.1}},
        "entrodrop": {"plugin": "entrodrop", "params": {"gamma_max": 0.1}},
        "entrodrop_high": {"plugin": "entrodrop", "params": {"gamma_max": 0.1, "target": "high"}, "table": "targeting"},
    }
    config = make_config(tmp_path, methods=methods, domains={"math": ["gsm8k", "svamp"]}, preset="qwen3-0.6b-math", paper_table=1)
    layout = Layout.from_config(config)
    for run, s in {"plain": 0.40, "token_dropout": 0.44, "entrodrop": 0.46, "entrodrop_high": 0.45}.items():
        write_run(layout, run, 0, [(10, 5.0, {"gsm8k": s, "svamp": s}, 0.7)], params=dict(methods[run].get("params", {})))
    select(config, layout)
    write_tables(config, layout)
    t1 = _md_rows((layout.tables_dir / "table1.md").read_text())
    assert list(t1) == ["Baseline", "+Token Dropout", "+EntroDrop"]
    assert t1["+Token Dropout"][3] == "44.00 (+10.00%)" and "+EntroDrop" in t1 and "High-entropy" not in t1
    t3 = _md_rows((layout.tables_dir / "table3.md").read_text())
    assert t3["Random masking"][2] == "44.00" and t3["Low-entropy (EntroDrop)"][3] == "+2.00"
    records = list(csv.DictReader((layout.tables_dir / "table3.csv").open()))
    assert next(r for r in records if r["label"] == "Random masking")["run"] == "token_dropout"


def _solving(base: dict[str, list[float]], solved: int) -> dict[str, list[float]]:
    """The Baseline's per-item outcomes with its first `solved` wrong math items (gsm8k, svamp) turned right."""
    out = {b: list(v) for b, v in base.items()}
    for b in ("gsm8k", "svamp"):
        for i in [i for i, x in enumerate(out[b]) if x == 0.0][:solved]:
            out[b][i] = 1.0
    return out


def test_table3_online_rows_join_the_comparisons_only_where_configured(tmp_path, monkeypatch):
    """An online gate (`online_signal`, low targets) gets its own Table 3 row, compared like the others; it never
    stands for the static EntroDrop (low-entropy row, main proposed method) nor the high-entropy row nor Table 4."""
    stub = register_online_stub(monkeypatch)
    methods = {
        "plain": {"plugin": "plain"},
        # listed first, in the main table, declared proposed, with a rate no other run has: still only an online row
        "online_main": {"plugin": stub, "params": {"online": "entropy", "proposed": True, "gamma_max": 0.3}},
        "entrodrop": {"plugin": "entrodrop", "params": {"gamma_max": 0.1}},
        "token_dropout": {"plugin": "token_dropout", "params": {"gamma_max": 0.1}, "table": "targeting"},
        "online_high": {"plugin": stub, "params": {"online": "loss", "target": "high"}, "table": "targeting"},  # no row
        "entrodrop_high": {"plugin": "entrodrop", "params": {"gamma_max": 0.1, "target": "high"}, "table": "targeting"},
        "online_loss": {"plugin": stub, "params": {"online": "loss", "percentile": 0.3}, "table": "targeting"},
        "entrodrop_gamma": {"plugin": "entrodrop", "grid": {"gamma_max": [0.05, 0.2]}, "table": "gamma"},
    }
    config = make_config(tmp_path, methods=methods, preset="qwen3-0.6b-math", paper_table=3)
    layout = Layout.from_config(config)
    rng = np.random.default_rng(3)
    base = {b: rng.binomial(1, 0.4, size=200).astype(float).tolist() for b in ("gsm8k", "svamp", "hellaswag", "piqa")}
    solved = {"plain": 0, "online_main": 6, "entrodrop": 8, "token_dropout": 2, "online_high": 3, "entrodrop_high": 4,
              "online_loss": 40, "entrodrop_gamma@gamma_max=0.05": 5, "entrodrop_gamma@gamma_max=0.2": 7}
    items = {run: _solving(base, n) for run, n in solved.items()}
    for run, outcomes in items.items():
        method = run.split("@")[0]
        params = dict(methods[method].get("params", {}), **({"gamma_max": float(run.split("=")[1])} if "=" in run else {}))
        write_run(layout, run, 0, [(10, 5.0, item_means(outcomes), 0.7)], plugin=methods[method]["plugin"], params=params,
                  items={10: outcomes})
    sel = select(config, layout)
    assert proposed_method(sel) == "entrodrop"
    assert role_runs(sel)["low_entropy"] == ("entrodrop", "entrodrop")
    assert role_runs(sel)["high_entropy"] == ("entrodrop_high", "entrodrop_high")
    # Holm runs across Table 3's rows, the online ones included, in row order
    table3 = sel.comparisons.tables["table3"].rows
    assert [r.run for r in table3] == ["token_dropout", "entrodrop_high", "entrodrop", "online_loss", "online_main"]
    online = next(r for r in table3 if r.run == "online_loss").columns["math"]
    assert online.difference == pytest.approx(100 * 40 / 200) and online.p_holm < 0.05

    write_tables(config, layout)
    text = (layout.tables_dir / "table3.md").read_text()
    t3 = _md_rows(text)
    assert list(t3) == ["Random masking", "High-entropy", "Low-entropy (EntroDrop)", "Low-signal, online (training loss)",
                        "Low-signal, online (entropy)"]

    def math_avg(run: str) -> float:
        return r2(100 * (np.mean(items[run]["gsm8k"]) + np.mean(items[run]["svamp"])) / 2)

    row = t3["Low-signal, online (training loss)"]
    assert row[1] == "bottom 30%, refreshed in training"
    assert row[2].startswith(f"{math_avg('online_loss'):.2f}‡ [")  # one seed: item-level mark, with its interval
    assert row[3] == f"{math_avg('online_loss') - math_avg('token_dropout'):+.2f}"
    assert row[4:7] == ["–", "–", "–"] and row[7] == "5.00%"  # the paper has no online row
    # its percentile is the default: the declared gate share shows it all the same (not the as-written params)
    assert t3["Low-signal, online (entropy)"][1] == "bottom 50%, refreshed in training"
    assert t3["Low-entropy (EntroDrop)"][2].startswith(f"{math_avg('entrodrop'):.2f}")
    assert "gate recomputed during training" in text and "not yet visited keep the base model's signal" in text
    records = list(csv.DictReader((layout.tables_dir / "table3.csv").open()))
    rec = next(r for r in records if r["label"] == "Low-signal, online (training loss)" and r["column"] == "math Avg")
    assert rec["run"] == "online_loss" and float(rec["diff_vs_baseline"]) == pytest.approx(20.0, abs=1e-4)
    assert float(rec["p_holm"]) < 0.05 and rec["paper"] == ""
    assert next(r for r in records if r["label"] == "High-entropy")["run"] == "entrodrop_high"
    # Table 4 sweeps the fixed gate only: no γ_max = 0.3 row from the online run's declared rate
    assert list(_md_rows((layout.tables_dir / "table4.md").read_text())) == [
        "Baseline (γ = 0)", "γ_max = 0.05", "γ_max = 0.1", "γ_max = 0.2"]
    t1 = _md_rows((layout.tables_dir / "table1.md").read_text())
    assert "+EntroDrop" in t1 and "+EntroDrop (online entropy) (online_main)" in t1
    # the leaderboard entry of the online method carries Table 3's comparison (the first table with its run)
    entries = {e.method.name: e for e in build_entries(config, layout)}
    vs = entries["online_loss"].vs_baseline
    assert vs.table == "table3" and vs.columns["math"].diff == pytest.approx(20.0)


def test_an_online_method_alone_makes_table3():
    roles = dict.fromkeys(["random", "random_matched", "high_entropy", "low_entropy", "online_loss", "online_entropy"])
    assert not has_targeting_table(roles) and not has_targeting_table({**roles, "low_entropy": ("e", "e")})
    assert has_targeting_table({**roles, "online_entropy": ("o", "o")})


def test_several_seeds_show_mean_and_std(tmp_path):
    config = make_config(tmp_path, methods={"plain": {"plugin": "plain"}, "entrodrop": {"plugin": "entrodrop"}}, seeds=(0, 1))
    layout = Layout.from_config(config)
    for seed in (0, 1):
        write_run(layout, "plain", seed, [(10, 1.0, scores(0.40 + 0.02 * seed, 0.40 + 0.02 * seed), 1.0)])
        write_run(layout, "entrodrop", seed, [(10, 1.0, scores(0.50, 0.50), 1.0)])
    select(config, layout)
    write_tables(config, layout)
    rows = _md_rows((layout.tables_dir / "table1.md").read_text())
    assert rows["Baseline"][3] == "41.00 ± 1.41"
    assert rows["+EntroDrop"][3] == "50.00 ± 0.00 (+21.95%)"
    records = list(csv.DictReader((layout.tables_dir / "table1.csv").open()))
    base = next(r for r in records if r["method"] == "plain" and r["column"] == "math Avg")
    # Without per-item outcomes: a t interval over the 2 seeds, 41 +- t(0.975, 1) x 1.41 / sqrt(2) = 41 +- 12.71,
    # never their min-max; two equal seeds give no interval rather than a zero-width one.
    assert base["n_seeds"] == "2" and base["ci_over"] == "seeds"
    assert [float(base["ci95_low"]), float(base["ci95_high"])] == pytest.approx([41 - 12.7062, 41 + 12.7062], abs=1e-3)
    entro = next(r for r in records if r["method"] == "entrodrop" and r["column"] == "math Avg")
    assert entro["ci95_low"] == entro["ci95_high"] == ""


def test_missing_runs_and_metrics_are_noted_not_averaged(tmp_path):
    config = make_config(tmp_path)
    layout = Layout.from_config(config)
    write_run(layout, "plain", 0, [(10, 1.0, {"gsm8k": 0.4, "svamp": 0.4, "hellaswag": 0.5}, 1.0)], state="running")
    write_run(layout, "entrodrop", 0, [(10, 1.0, scores(0.5, 0.5), 1.0)], state="diverged", reason="loss inf at step 9")
    select(config, layout)
    write_tables(config, layout)
    text = (layout.tables_dir / "table1.md").read_text()
    rows = _md_rows(text)
    assert rows["Baseline"][1] == "–" and rows["+EntroDrop"][3] == "–"
    assert "plain/seed0/checkpoint-10/piqa (no result file)" in text
    assert "skipped entrodrop seed 0: diverged: loss inf at step 9" in text
    assert "plain seed 0 is not finished (state running)" in text


def test_number_conventions():
    assert r2(48.565) == 48.57 and r2(-0.125) == -0.13
    assert relative_pct(30.6667, 29.0) == pytest.approx((30.67 / 29.0 - 1) * 100)  # paper: +5.76%, not +5.75%
    assert f"{relative_pct(30.6667, 29.0):+.2f}" == "+5.76"
    assert latex_escape("a_b 5% ± γ") == r"a\_b 5\% $\pm$ $\gamma$"
