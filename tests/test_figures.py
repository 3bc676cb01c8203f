"""Figures plot exactly the data on disk (each line's and bar's values against the store results and the
val_curve.json files), are written as PNG/PDF, and missing runs are skipped with a note."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from helpers import register_online_stub, write_prepared, write_train_log
from matplotlib.colors import same_color
from matplotlib.figure import Figure
from test_selection import make_config, scores, write_run

from entrodrop_bench.errors import DataError
from entrodrop_bench.paths import Layout
from entrodrop_bench.prepare.data import make_plan
from entrodrop_bench.regularizer import build_regularizer
from entrodrop_bench.report import figures
from entrodrop_bench.report.figures import (
    figure_2c,
    load_token_signals,
    read_val_curves,
    write_figures,
)
from entrodrop_bench.report.selection import select

METHODS = {
    "plain": {"plugin": "plain"},
    "weight_decay": {"plugin": "weight_decay", "grid": {"weight_decay": [0.1, 0.5]}},
    "entrodrop": {"plugin": "entrodrop", "params": {"gamma_max": 0.1}},
    "entrodrop_static": {"plugin": "entrodrop", "params": {"gamma_max": 0.1, "schedule": "static"}, "table": "schedule"},
}


def _curve(peak: float, n: int = 5, loss_shift: float = 0.0) -> list[tuple[int, float, dict, float]]:
    """Score rises then falls around `peak`; validation loss is U-shaped."""
    out = []
    for i in range(1, n + 1):
        s = peak - 0.03 * abs(i - 3)
        out.append((10 * i, 2.0 * i, scores(s, s), 0.8 + 0.05 * (i - 3) ** 2 + loss_shift))
    return out


def _store(tmp_path: Path, seeds=(0, 1), skip: tuple[str, ...] = ()):
    config = make_config(tmp_path, methods=METHODS, seeds=seeds)
    layout = Layout.from_config(config)
    runs = {"plain": 0.4, "weight_decay@weight_decay=0.1": 0.42, "weight_decay@weight_decay=0.5": 0.41,
            "entrodrop": 0.46, "entrodrop_static": 0.43}
    for run, peak in runs.items():
        if run in skip:
            continue
        for seed in seeds:
            params = {"weight_decay": float(run.split("=")[1])} if "=" in run else {}
            write_run(layout, run, seed, _curve(peak + 0.01 * seed, loss_shift=0.02 * seed), params=params)
    return config, layout


def _check(paths: list[Path], *names: str) -> None:
    assert sorted(p.name for p in paths) == sorted(names)
    for p in paths:
        data = p.read_bytes()
        assert len(data) > 1000
        if p.suffix == ".png":
            assert data.startswith(b"\x89PNG")
        if p.suffix == ".pdf":
            assert data.startswith(b"%PDF")


@pytest.fixture
def drawn(monkeypatch) -> dict[str, Figure]:
    """Every figure `write_figures` saves, by file name, as the Figure object it drew."""
    found: dict[str, Figure] = {}
    real_save = figures.save

    def save(fig: Figure, out_dir: Path, name: str) -> list[Path]:
        found[name] = fig
        return real_save(fig, out_dir, name)

    monkeypatch.setattr(figures, "save", save)
    return found


def _lines(ax) -> dict[str, tuple[list, list]]:
    """label -> (x, y) of each plotted line (reference lines such as the Baseline's axhline included)."""
    return {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.lines}


def _target_avg(layout: Layout, run: str, seed: int) -> dict[int, float]:
    """step -> math average (x100) of one (run, seed), read straight from the store files."""
    out = {}
    for step, _ in layout.checkpoints(run, seed):
        results = [json.loads(layout.result_file(run, seed, step, b).read_text())["score"] for b in ("gsm8k", "svamp")]
        out[step] = 100 * float(np.mean(results))
    return out


def _score_series(layout: Layout, run: str, seeds) -> tuple[list, list]:
    per_seed = [_target_avg(layout, run, s) for s in seeds]
    steps = sorted(per_seed[0])
    return steps, [float(np.mean([p[step] for p in per_seed])) for step in steps]


def _val_series(layout: Layout, run: str, seeds, key: str) -> tuple[list, list]:
    """(target epochs, `key` loss) averaged over seeds by step, read straight from val_curve.json."""
    by_step: dict[int, list[dict]] = {}
    for seed in seeds:
        data = json.loads(layout.val_curve_file(run, seed).read_text())
        for point in data["points"] if isinstance(data, dict) else data:  # format 2 is an object, 1 a bare list
            by_step.setdefault(point["step"], []).append(point)
    steps = sorted(by_step)
    return ([float(np.mean([p["target_epoch"] for p in by_step[s]])) for s in steps],
            [float(np.mean([p[key] for p in by_step[s]])) for s in steps])


def _assert_series(got: tuple[list, list], want: tuple[list, list]) -> None:
    assert got[0] == pytest.approx(want[0]) and got[1] == pytest.approx(want[1])


def test_figures_plot_the_scores_and_curves_on_disk(tmp_path, drawn):
    seeds = (0, 1)
    config, layout = _store(tmp_path, seeds=seeds)
    select(config, layout)
    paths = write_figures(config, layout)
    _check([p for p in paths if p.name != "NOTES.md"], *(f"{name}.{ext}" for name in drawn for ext in ("png", "pdf")))
    assert read_val_curves(layout, "plain", seeds)[3].overall == pytest.approx(0.81)  # seeds 0 (0.80) and 1 (0.82)
    assert set(drawn) == {"fig1c_val_loss_by_entropy", "fig2a_score_vs_step", "fig2b_schedule", "fig3_tuning", "fig4_loss_dynamics"}
    assert "fig5" not in (layout.figures_dir / "NOTES.md").read_text()  # no online run: no gate-flip figure, no note
    best_wd = "weight_decay@weight_decay=0.1"  # peak 0.42 beats 0.41

    (ax,) = drawn["fig2a_score_vs_step"].axes
    lines = _lines(ax)
    assert list(lines) == ["Baseline", "+Weight Decay", "+EntroDrop"]
    for lab, run in (("Baseline", "plain"), ("+Weight Decay", best_wd), ("+EntroDrop", "entrodrop")):
        _assert_series(lines[lab], _score_series(layout, run, seeds))

    (ax,) = drawn["fig2b_schedule"].axes
    lines = _lines(ax)
    assert list(lines) == ["Baseline", "EntroDrop, curriculum (sigmoid) schedule", "EntroDrop, static schedule (entrodrop_static)"]
    _assert_series(lines["EntroDrop, static schedule (entrodrop_static)"], _score_series(layout, "entrodrop_static", seeds))
    _assert_series(lines["EntroDrop, curriculum (sigmoid) schedule"], _score_series(layout, "entrodrop", seeds))

    (ax,) = drawn["fig3_tuning"].axes  # one swept method: weight decay's two grid points, Baseline as a line
    heights = [bar.get_height() for bar in ax.patches]
    selected = {run: float(np.mean([max(_target_avg(layout, run, s).values()) for s in seeds]))
                for run in ("plain", best_wd, "weight_decay@weight_decay=0.5")}
    assert heights == pytest.approx([selected[best_wd], selected["weight_decay@weight_decay=0.5"]])
    assert [same_color(bar.get_facecolor(), "tab:orange") for bar in ax.patches] == [True, False]  # the chosen setting
    assert _lines(ax)["Baseline"][1] == pytest.approx([selected["plain"]] * 2)

    (ax,) = drawn["fig1c_val_loss_by_entropy"].axes
    lines = _lines(ax)
    for key, lab in figures.GROUPS:
        _assert_series(lines[lab], _val_series(layout, "plain", seeds, key))

    axes = drawn["fig4_loss_dynamics"].axes
    assert [a.get_title() for a in axes] == [lab for _, lab in figures.GROUPS]
    for ax, (key, _) in zip(axes, figures.GROUPS):
        lines = _lines(ax)
        assert list(lines) == ["Baseline", "EntroDrop"]
        _assert_series(lines["Baseline"], _val_series(layout, "plain", seeds, key))
        _assert_series(lines["EntroDrop"], _val_series(layout, "entrodrop", seeds, key))


def test_figure_5_plots_the_gate_flips_logged_at_each_refresh(tmp_path, drawn, monkeypatch):
    stub = register_online_stub(monkeypatch)
    methods = {**METHODS, "online": {"plugin": stub, "params": {"online": "loss"}, "table": "targeting"},
               "online_grid": {"plugin": stub, "params": {"online": "entropy"}, "grid": {"percentile": [0.3, 0.5]},
                               "table": "targeting"}}
    config = make_config(tmp_path, methods=methods, seeds=(0, 1))
    layout = Layout.from_config(config)
    for seed in (0, 1):
        write_run(layout, "plain", seed, _curve(0.4))
    # 10 steps of 10 rows, 60% of them target rows of 100 tokens, 2000 target tokens: epoch 0.3 per step
    plan = make_plan(10_000, 100, 1_000, 0.6, 2_000)
    write_prepared(layout, plan=plan.to_json())
    flips = {0: {3: 0.10, 6: 0.04, 9: 0.02}, 1: {3: 0.12, 6: 0.06, 9: 0.01}}
    drift = {0: {3: 0.10, 6: 0.12, 9: 0.12}, 1: {3: 0.12, 6: 0.14, 9: 0.14}}
    for seed, refreshes in flips.items():
        write_train_log(layout, "online", seed, 10, refreshes, drift[seed])
    write_train_log(layout, "online_grid@percentile=0.3", 0, 10, {5: 0.2, 10: 0.1})
    write_train_log(layout, "online_grid@percentile=0.3", 1, 4, {})  # trained, but before its first refresh
    # online_grid@percentile=0.5 has no train log at all; no online run has been evaluated yet either
    select(config, layout)
    paths = write_figures(config, layout)
    assert {"fig5_gate_flips.png", "fig5_gate_flips.pdf"} <= {p.name for p in paths}
    (ax,) = drawn["fig5_gate_flips"].axes
    assert ax.get_title() == "Gated set changes over training (online EntroDrop)"
    lines = _lines(ax)
    drifted = "+EntroDrop (online loss) (online): differs from the base model's gate"
    assert list(lines) == ["+EntroDrop (online loss) (online)", drifted,
                           "+EntroDrop (online entropy) (online_grid) [percentile=0.3]"]
    _assert_series(lines["+EntroDrop (online loss) (online)"], ([0.9, 1.8, 2.7], [11.0, 5.0, 1.5]))
    _assert_series(lines[drifted], ([0.9, 1.8, 2.7], [11.0, 13.0, 13.0]))
    _assert_series(lines["+EntroDrop (online entropy) (online_grid) [percentile=0.3]"], ([1.5, 3.0], [20.0, 10.0]))
    assert [plan.target_epoch(s) for s in (3, 6, 9)] == pytest.approx([0.9, 1.8, 2.7])
    (band,) = ax.collections  # min-max band for the run with two seeds only
    ys = band.get_paths()[0].vertices[:, 1]
    assert (ys.min(), ys.max()) == pytest.approx((1.0, 12.0))
    notes = (layout.figures_dir / "NOTES.md").read_text()
    assert "fig5: +EntroDrop (online entropy) (online_grid) [percentile=0.3]: mean over seed(s) 0 only" in notes
    assert "fig5: +EntroDrop (online entropy) (online_grid) [percentile=0.5]: no stub_flips logged" in notes
    # without prepare's plan the refreshes have no target epoch: skipped with a note, the other figures still drawn
    layout.prepared_file.unlink()
    drawn.clear()
    write_figures(config, layout)
    assert "fig5_gate_flips" not in drawn and "fig1c_val_loss_by_entropy" in drawn
    assert "fig5 skipped: no training plan in prepared.json" in (layout.figures_dir / "NOTES.md").read_text()


def test_figure_2c_boxes_the_gated_tokens_and_greys_unscored_ones(tmp_path, drawn):
    signals = [("Tom", 3.2, False), (" has", 0.4, True), (" 3", 2.5, False), (" apples", 0.1, True), ("\n", math.nan, False),
               ("<b>&", 1.0, False)] * 10
    paths, _ = figure_2c(signals, tmp_path)
    _check(paths, "fig2c_token_entropy.png", "fig2c_token_entropy.pdf", "fig2c_token_entropy.html")
    ax = drawn["fig2c_token_entropy"].axes[0]
    assert [t.get_text() for t in ax.texts] == [figures._visible(tok) for tok, _, _ in signals]
    assert [same_color(box.get_edgecolor(), "red") for box in ax.patches] == [gated for _, _, gated in signals]
    grey = [same_color(box.get_facecolor(), (0.85, 0.85, 0.85)) for box in ax.patches]
    assert grey == [math.isnan(entropy) for _, entropy, _ in signals]
    html = (tmp_path / "fig2c_token_entropy.html").read_text()
    assert html.count('class="gated"') == 20 and "&lt;b&gt;&amp;" in html and "http" not in html


def test_write_figures_skips_missing_runs_with_notes(tmp_path):
    config, layout = _store(tmp_path, seeds=(0,), skip=("entrodrop", "entrodrop_static", "weight_decay@weight_decay=0.5"))
    select(config, layout)
    paths = write_figures(config, layout)
    names = {p.name for p in paths}
    assert {"fig1c_val_loss_by_entropy.png", "fig2a_score_vs_step.pdf", "fig3_tuning.png", "fig4_loss_dynamics.png"} <= names
    assert "fig2b_schedule.png" not in names  # no schedule run has results
    notes = (layout.figures_dir / "NOTES.md").read_text()
    assert "fig2b skipped" in notes and "+EntroDrop: no evaluated checkpoints" in notes
    assert "weight_decay@weight_decay=0.5: no selected checkpoint" in notes and "fig2c skipped" in notes
    assert "EntroDrop: no val_curve.json" in notes


def test_write_figures_on_empty_store_and_sample_file(tmp_path):
    config = make_config(tmp_path, methods=METHODS)
    layout = Layout.from_config(config)
    layout.sample_entropy_file.parent.mkdir(parents=True)
    layout.sample_entropy_file.write_text(json.dumps({"tokens": ["a", " b", " c", " d", " e"], "entropy": [None, 0.5, 0.1, 0.9, 0.3],
                                                      "eligible": [False, True, True, True, True]}))
    select(config, layout)
    paths = write_figures(config, layout)
    assert {p.name for p in paths} == {"fig2c_token_entropy.png", "fig2c_token_entropy.pdf", "fig2c_token_entropy.html", "NOTES.md"}
    # The gate drawn is the proposed method's own (EntroDrop, k = 0.5: at or below the median 0.4 of the eligible).
    assert (layout.figures_dir / "fig2c_token_entropy.html").read_text().count('class="gated"') == 2
    assert [g for _, _, g in load_token_signals(layout.sample_entropy_file, config.runs["entrodrop"].build())] == [False, False, True, False, True]
    high = build_regularizer("entrodrop", {"target": "high"})
    assert [g for _, _, g in load_token_signals(layout.sample_entropy_file, high)] == [False, True, False, True, False]
    assert load_token_signals(layout.sample_entropy_file, None)[0][0] == "a"
    layout.sample_entropy_file.write_text(json.dumps({"tokens": ["a"], "entropy": [], "eligible": [True]}))
    with pytest.raises(DataError, match="differ in length"):
        load_token_signals(layout.sample_entropy_file, None)
