"""Every figure function draws non-empty PNG/PDF from synthetic data, and missing runs are skipped with a note."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from test_selection import make_config, scores, write_run

from entrodrop_bench.errors import DataError
from entrodrop_bench.paths import Layout
from entrodrop_bench.regularizer import build_regularizer
from entrodrop_bench.report.figures import (
    figure_1c,
    figure_2a,
    figure_2b,
    figure_2c,
    figure_3,
    figure_4,
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


def _curve(peak: float, n: int = 5) -> list[tuple[int, float, dict, float]]:
    """Score rises then falls around `peak`; validation loss is U-shaped."""
    out = []
    for i in range(1, n + 1):
        s = peak - 0.03 * abs(i - 3)
        out.append((10 * i, 2.0 * i, scores(s, s), 0.8 + 0.05 * (i - 3) ** 2))
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
            write_run(layout, run, seed, _curve(peak + 0.01 * seed), params=params)
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


def test_each_figure_function_draws_png_and_pdf(tmp_path):
    config, layout = _store(tmp_path)
    selection = select(config, layout)
    out = tmp_path / "figs"
    out.mkdir()
    paths, notes = figure_2a(selection, out)
    _check(paths, "fig2a_score_vs_step.png", "fig2a_score_vs_step.pdf")
    assert notes == []
    _check(figure_2b(selection, out)[0], "fig2b_schedule.png", "fig2b_schedule.pdf")
    _check(figure_3(selection, out)[0], "fig3_tuning.png", "fig3_tuning.pdf")
    plain = read_val_curves(layout, "plain", [0, 1])
    assert plain[0]["step"] == 0 and math.isclose(plain[3]["overall"], 0.8)
    _check(figure_1c(plain, out)[0], "fig1c_val_loss_by_entropy.png", "fig1c_val_loss_by_entropy.pdf")
    entro = read_val_curves(layout, "entrodrop", [0, 1])
    _check(figure_4({"Baseline": plain, "EntroDrop": entro}, out)[0], "fig4_loss_dynamics.png", "fig4_loss_dynamics.pdf")
    signals = [("Tom", 3.2, False), (" has", 0.4, True), (" 3", 2.5, False), (" apples", 0.1, True), ("\n", math.nan, False),
               ("<b>&", 1.0, False)] * 10
    paths, _ = figure_2c(signals, out)
    _check(paths, "fig2c_token_entropy.png", "fig2c_token_entropy.pdf", "fig2c_token_entropy.html")
    html = (out / "fig2c_token_entropy.html").read_text()
    assert html.count('class="gated"') == 20 and "&lt;b&gt;&amp;" in html and "http" not in html


def test_write_figures_skips_missing_runs_with_notes(tmp_path):
    config, layout = _store(tmp_path, seeds=(0,), skip=("entrodrop", "entrodrop_static", "weight_decay@weight_decay=0.5"))
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
