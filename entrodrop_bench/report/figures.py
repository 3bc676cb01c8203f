"""Paper figures from the selection `select` wrote and the training curves, as PNG + PDF (+ HTML for 2c),
and one of this project's own for the online EntroDrop variant (fig5).

- fig1c: validation loss of the Baseline by token-entropy group (overall / low / high) vs target epoch
- fig2a: target-domain score vs training step, one line per method (best grid point)
- fig2b: static vs curriculum drop-rate schedule (Baseline, EntroDrop, EntroDrop static)
- fig2c: one target-domain sample, tokens coloured by base-model entropy, EntroDrop's masked tokens marked
- fig3:  hyper-parameter tuning of the baselines: target-domain score of every grid point
- fig4:  validation loss by entropy group, Baseline vs EntroDrop
- fig5:  the logged series runs declare (`ReportFields.series`) vs target epoch, from the runs' train logs (online
         EntroDrop: share of eligible target tokens whose gate flipped at each refresh); no figure without such a run

Missing runs never crash a figure: the series is left out, the figure says so, and `NOTES.md` in the
figures folder lists what was skipped. Uses matplotlib's Agg canvas directly (no pyplot state, no display).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from html import escape
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize, to_hex
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from entrodrop_bench.artifacts import PreparedRecord, SampleEntropy, Selection, TrainLog, ValCurve, ValPoint
from entrodrop_bench.atomic import atomic_path, write_text
from entrodrop_bench.config import ExperimentConfig
from entrodrop_bench.paths import Layout, figure_file, figure_notes_file
from entrodrop_bench.prepare.data import TrainingPlan
from entrodrop_bench.regularizer import Regularizer
from entrodrop_bench.report.selection import read_selection
from entrodrop_bench.report.tables import baseline_method, label, main_methods, proposed_method, setting

GROUPS = [("overall", "all tokens"), ("low_entropy", "low-entropy tokens"), ("high_entropy", "high-entropy tokens")]
TokenSignals = list[tuple[str, float, bool]]
SeedSeries = dict[int, list[tuple[int, float]]]
"""Seed -> (optimizer step, logged value) at each step that logged it."""


@dataclass
class RunSeries:
    """One series a run's plugin declares (`ReportFields.series`) with what its seeds logged of it."""

    key: str
    label: str
    dashed: bool
    data: SeedSeries


FIG5_TITLE = "Gated set changes over training (online EntroDrop)"


# --------------------------------------------------------------------------- saving
def _new_figure(width: float = 7.0, height: float = 4.2) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, out_dir: Path, name: str) -> list[Path]:
    """PNG and PDF, each written atomically; the PDF without a creation date so reruns are identical."""
    paths = []
    for fmt, meta in (("png", {"Software": None}), ("pdf", {"CreationDate": None})):
        path = figure_file(out_dir, name, fmt)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=150, metadata=meta)
        paths.append(path)
    return paths


def _note_on(ax, notes: list[str]) -> None:
    if notes:
        ax.text(0.01, 0.01, "\n".join(notes), transform=ax.transAxes, fontsize=7, color="0.35", va="bottom", ha="left")


# --------------------------------------------------------------------------- curves from the selection
def score_curve(selection: Selection, run: str, domain: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(steps, mean, std) of a domain average across seeds at the steps every seed evaluated."""
    info = selection.runs.get(run)
    if not info or not info.seeds:
        return None
    per_seed = []
    for rec in info.seeds.values():
        per_seed.append({r.step: r.domain_avg.get(domain) for r in rec.checkpoints if r.domain_avg.get(domain) is not None})
    steps = sorted(set.intersection(*(set(p) for p in per_seed))) if per_seed else []
    if not steps:
        return None
    values = np.array([[p[s] for s in steps] for p in per_seed])
    return np.array(steps), values.mean(axis=0), values.std(axis=0)


def _plot_score_lines(ax, selection: Selection, runs: list[tuple[str, str | None]], domain: str) -> list[str]:
    notes = []
    for lab, run in runs:
        curve = score_curve(selection, run, domain) if run else None
        if curve is None:
            notes.append(f"{lab}: no evaluated checkpoints")
            continue
        steps, mean, std = curve
        (line,) = ax.plot(steps, mean, marker="o", markersize=3, label=lab)
        if np.any(std > 0):
            ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.15)
    ax.set_xlabel("training step")
    ax.set_ylabel(f"{domain} average score (x100)")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=8)
    _note_on(ax, notes)
    return notes


def figure_2a(selection: Selection, out_dir: Path) -> tuple[list[Path], list[str]]:
    """Target-domain score vs step for each main-table method at its best grid point."""
    domain = selection.target_domain
    runs = [(label(m, selection.methods[m]), selection.methods[m].best_run) for m in main_methods(selection)]
    fig = _new_figure()
    ax = fig.add_subplot()
    notes = _plot_score_lines(ax, selection, runs, domain)
    ax.set_title(f"Fig. 2a: {domain} score during training, per method")
    if not ax.lines:
        return [], [f"fig2a skipped: no method has evaluated checkpoints ({'; '.join(notes)})"]
    return save(fig, out_dir, "fig2a_score_vs_step"), [f"fig2a: {n}" for n in notes]


def _schedule_runs(selection: Selection) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    methods = selection.methods
    if (base := baseline_method(selection)) is not None:
        out.append(("Baseline", methods[base].best_run))
    for name, m in methods.items():
        if m.role.kind != "proposed":
            continue
        if m.table == "main":
            out.append(("EntroDrop, curriculum (sigmoid) schedule", m.best_run))
        elif m.table == "schedule":
            out.append((f"EntroDrop, static schedule ({name})", m.best_run))
    return out


def figure_2b(selection: Selection, out_dir: Path) -> tuple[list[Path], list[str]]:
    """Curriculum vs static drop-rate schedule, with the Baseline for reference."""
    static = [m.best_run for m in selection.methods.values() if m.table == "schedule"]
    if not static:
        return [], ["fig2b skipped: no method with table: schedule in this config"]
    if not any(run and score_curve(selection, run, selection.target_domain) for run in static):
        return [], ["fig2b skipped: the static-schedule run has no evaluated checkpoints"]
    fig = _new_figure()
    ax = fig.add_subplot()
    notes = _plot_score_lines(ax, selection, _schedule_runs(selection), selection.target_domain)
    ax.set_title("Fig. 2b: static vs curriculum drop-rate schedule")
    if not ax.lines:
        return [], ["fig2b skipped: no evaluated checkpoints for the schedule runs"]
    return save(fig, out_dir, "fig2b_schedule"), [f"fig2b: {n}" for n in notes]


def figure_3(selection: Selection, out_dir: Path) -> tuple[list[Path], list[str]]:
    """Selected target-domain score of every grid point of each swept method (mean ± std over seeds)."""
    domain = selection.target_domain
    swept = [n for n, m in selection.methods.items() if len(m.runs) > 1 and m.table == "main"]
    if not swept:
        return [], ["fig3 skipped: no swept (grid) method in the main table"]
    if not any(selection.runs[r].aggregate for n in swept for r in selection.methods[n].runs):
        return [], ["fig3 skipped: no grid point of a swept method has a selected checkpoint"]
    fig = _new_figure(width=max(6.5, 3.2 * len(swept) + 1), height=4.0)
    axes = fig.subplots(1, len(swept), squeeze=False)[0]
    notes = []
    plain = _best_run(selection, baseline_method(selection))
    base_agg = selection.runs[plain].aggregate if plain else None
    base = base_agg.domain_avg.get(domain) if base_agg else None
    for ax, name in zip(axes, swept):
        m = selection.methods[name]
        labels, means, stds = [], [], []
        for run in m.runs:
            agg = selection.runs[run].aggregate
            params = selection.runs[run].params
            labels.append(", ".join(f"{k}={params[k]}" for k in m.grid_keys))
            s = agg and agg.domain_avg.get(domain)
            if not s:
                notes.append(f"{run}: no selected checkpoint")
            means.append(s.mean if s else math.nan)
            stds.append(s.std if s else 0.0)
        colors = ["tab:orange" if r == m.best_run else "tab:blue" for r in m.runs]
        ax.bar(range(len(labels)), means, yerr=stds, color=colors, capsize=3)
        ax.set_xticks(range(len(labels)), labels, rotation=20, fontsize=8)
        if base:
            ax.axhline(base.mean, color="0.3", linestyle="--", linewidth=1, label="Baseline")
            ax.legend(fontsize=8)
        finite = [x for x in means if math.isfinite(x)] + ([base.mean] if base else [])
        if finite:
            ax.set_ylim(min(finite) - 2, max(finite) + 2)
        ax.set_title(label(name, m), fontsize=10)
        ax.set_ylabel(f"{domain} average (x100)")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Fig. 3: hyper-parameter tuning of the baselines\n(selected checkpoint of each grid point; orange: chosen setting)")
    return save(fig, out_dir, "fig3_tuning"), [f"fig3: {n}" for n in notes]


# --------------------------------------------------------------------------- validation-loss curves
def read_val_curves(layout: Layout, run: str, seeds: list[int]) -> list[ValPoint] | None:
    """Mean across seeds of val_curve.json points (by step, without per-document losses); None when no seed has a
    curve."""
    by_step: dict[int, list[ValPoint]] = {}
    for seed in seeds:
        curve = ValCurve.read_or_none(ValCurve.path(layout, run, seed))
        for p in curve.points if curve else []:
            by_step.setdefault(p.step, []).append(p)
    if not by_step:
        return None
    out = []
    for step in sorted(by_step):
        pts = by_step[step]
        means = {}
        for key, _ in GROUPS:
            vals = [getattr(p, key) for p in pts if math.isfinite(getattr(p, key))]
            means[key] = float(np.mean(vals)) if vals else math.nan
        out.append(ValPoint(step=step, target_epoch=float(np.mean([p.target_epoch for p in pts])), **means))
    return out


def figure_1c(curve: list[ValPoint] | None, out_dir: Path) -> tuple[list[Path], list[str]]:
    """Baseline validation loss on all / low-entropy / high-entropy tokens vs target epoch."""
    if not curve:
        return [], ["fig1c skipped: no val_curve.json for the Baseline (plain)"]
    fig = _new_figure()
    ax = fig.add_subplot()
    epochs = [p.target_epoch for p in curve]
    for key, name in GROUPS:
        ax.plot(epochs, [getattr(p, key) for p in curve], marker="o", markersize=3, label=name)
    ax.set_xlabel("target-domain epoch")
    ax.set_ylabel("held-out validation loss (nats/token)")
    ax.set_title("Fig. 1c: Baseline validation loss by token-entropy group")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, out_dir, "fig1c_val_loss_by_entropy"), []


def figure_4(curves: dict[str, list[ValPoint] | None], out_dir: Path) -> tuple[list[Path], list[str]]:
    """Validation loss by entropy group, one panel per group, one line per method (Baseline vs EntroDrop)."""
    present = {k: v for k, v in curves.items() if v}
    notes = [f"fig4: {k}: no val_curve.json" for k, v in curves.items() if not v]
    if not present:
        return [], ["fig4 skipped: no validation curves for Baseline or EntroDrop"]
    fig = _new_figure(width=11, height=3.8)
    axes = fig.subplots(1, len(GROUPS))
    for ax, (key, name) in zip(axes, GROUPS):
        for lab, curve in present.items():
            ax.plot([p.target_epoch for p in curve], [getattr(p, key) for p in curve], marker="o", markersize=3, label=lab)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("target-domain epoch")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("held-out validation loss (nats/token)")
    axes[0].legend(fontsize=8)
    _note_on(axes[0], [n.split(": ", 1)[1] for n in notes])
    fig.suptitle("Fig. 4: validation loss by token entropy, Baseline vs EntroDrop")
    return save(fig, out_dir, "fig4_loss_dynamics"), notes


# --------------------------------------------------------------------------- Figure 5: logged series (online gate refreshes)
def series_runs(selection: Selection) -> list[tuple[str, str]]:
    """(label, run) of every run whose plugin declares series to draw (`ReportFields.series`: online EntroDrop's gate
    flips), in config order; the runs of a method with several grid points are labelled with their setting."""
    out = []
    for name, m in selection.methods.items():
        for run in m.runs:
            if not selection.runs[run].report.series:
                continue
            lab = label(name, m)
            if len(m.runs) > 1:
                lab += f" [{setting(selection.runs[run].params, m.grid_keys)}]"
            out.append((lab, run))
    return out


def read_log_series(layout: Layout, run: str, seeds: list[int], keys: list[str]) -> dict[str, SeedSeries]:
    """Each declared key -> each seed's (step, value) where its train log carries it, from one read of each log; a
    seed without a log, or without that key logged yet, is absent from that key's series."""
    out: dict[str, SeedSeries] = {key: {} for key in keys}
    for seed in seeds:
        log = TrainLog.read_or_none(TrainLog.path(layout, run, seed))
        for key, series in out.items():
            points = [(r.step, float(r.model_extra[key])) for r in (log.records if log else [])
                      if (r.model_extra or {}).get(key) is not None]
            if points:
                series[seed] = points
    return out


def declared_series(layout: Layout, selection: Selection, run: str, seeds: list[int]) -> list[RunSeries]:
    """The series a run's plugin declares, with what its train logs hold of them."""
    declared = selection.runs[run].report.series
    data = read_log_series(layout, run, seeds, [d.key for d in declared])
    return [RunSeries(d.key, d.label, d.dashed, data[d.key]) for d in declared]


def training_plan(layout: Layout) -> TrainingPlan | None:
    """The plan `prepare` recorded (steps -> target epochs), or None before prepare or when it lacks a field."""
    prepared = PreparedRecord.read_or_none(PreparedRecord.path(layout))
    names = [f.name for f in dataclasses.fields(TrainingPlan)]
    if prepared is None or any(n not in prepared.plan for n in names):
        return None
    return TrainingPlan(**{n: prepared.plan[n] for n in names})


def _series_curve(series: SeedSeries) -> tuple[list[int], np.ndarray]:
    """(steps every seed logged the value at, the value in % with one row per seed)."""
    per_seed = [dict(points) for points in series.values()]
    steps = sorted(set.intersection(*(set(p) for p in per_seed)))
    return steps, 100 * np.array([[p[s] for s in steps] for p in per_seed])


def figure_5(runs: dict[str, list[RunSeries]], plan: TrainingPlan | None, seeds: list[int],
             out_dir: Path) -> tuple[list[Path], list[str]]:
    """Each declared series (a share of eligible target tokens, e.g. whose gate flipped at each refresh) vs target
    epoch, per run (mean over seeds, min-max band with several); a dashed series in the colour of the run's first
    solid one (online EntroDrop: the share whose gate differs from the base model's)."""
    if not runs:
        return [], []  # no run declares a series: nothing to draw, nothing to note
    if plan is None:
        return [], ["fig5 skipped: no training plan in prepared.json (written by `prepare`) to place the logged values "
                    "in target epochs"]
    notes = []
    fig = _new_figure()
    ax = fig.add_subplot()
    for lab, declared in runs.items():
        color = None
        for i, s in enumerate(sorted(declared, key=lambda d: d.dashed)):
            steps, values = _series_curve(s.data) if s.data else ([], None)
            if not steps:
                if i == 0:
                    notes.append(f"{lab}: {s.key} not logged by every seed with a train log" if s.data else
                                 f"{lab}: no {s.key} logged (nothing in its train logs)")
                    break
                continue
            name = lab if i == 0 else f"{lab}: {s.label}"
            epochs = [plan.target_epoch(step) for step in steps]
            if s.dashed:
                ax.plot(epochs, values.mean(axis=0), linestyle="--", color=color, label=name)
                continue
            if len(s.data) < len(seeds):
                notes.append(f"{lab}: mean over seed(s) {', '.join(map(str, sorted(s.data)))} only; the others logged no {s.key}")
            (line,) = ax.plot(epochs, values.mean(axis=0), marker="o", markersize=3, label=name, color=color)
            color = color or line.get_color()
            if len(s.data) > 1:
                ax.fill_between(epochs, values.min(axis=0), values.max(axis=0), color=line.get_color(), alpha=0.15)
    if not ax.lines:
        return [], [f"fig5 skipped: no run has logged a series it declares ({'; '.join(notes)})"]
    ax.set_xlabel("target-domain epoch")
    ax.set_ylabel("% of eligible target tokens")
    ax.text(0.99, 0.01, _caption(runs), transform=ax.transAxes, fontsize=7, color="0.35", ha="right", va="bottom")
    ax.set_ylim(bottom=0)  # a share: its zero is meaningful (a gate that has settled)
    ax.set_title(FIG5_TITLE)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _note_on(ax, notes)
    return save(fig, out_dir, "fig5_gate_flips"), [f"fig5: {n}" for n in notes]


def _caption(runs: dict[str, list[RunSeries]]) -> str:
    """`solid: <labels>; dashed: <labels>` from the declared series."""
    parts = []
    for dashed, style in ((False, "solid"), (True, "dashed")):
        labels = list(dict.fromkeys(s.label for declared in runs.values() for s in declared if s.dashed == dashed))
        if labels:
            parts.append(f"{style}: {', '.join(labels)}")
    return "; ".join(parts)


# --------------------------------------------------------------------------- Figure 2c
def load_token_signals(path: Path, plugin: Regularizer | None) -> TokenSignals:
    """(token, entropy, gated) triples from sample_entropy.json (written by `prepare`): a null entropy (special
    or first token) becomes NaN; `gated` is `plugin.token_gates` over the document (all False without a plugin
    or a gate)."""
    sample = SampleEntropy.read(Path(path))
    values = np.array([math.nan if e is None else e for e in sample.entropy])
    gates = plugin.token_gates(values, np.array([0, len(values)]), np.array(sample.eligible, dtype=bool)) if plugin else None
    gated = [False] * len(values) if gates is None else [bool(g) for g in gates]
    return [(t, v, g) for t, v, g in zip(sample.tokens, values.tolist(), gated)]


def _visible(token: str) -> str:
    return token.replace("\t", "→").replace("\n", "⏎")


def _layout_tokens(signals: TokenSignals, width: int) -> list[tuple[int, int, str]]:
    """(line, column, text) of every token on a fixed-width grid; a token with a newline ends its line."""
    placed, line, col = [], 0, 0
    for token, _, _ in signals:
        text = _visible(token) or "∅"
        if col and col + len(text) > width:
            line, col = line + 1, 0
        placed.append((line, col, text))
        col += len(text)
        if "\n" in token:
            line, col = line + 1, 0
    return placed


def figure_2c(signals: TokenSignals, out_dir: Path, max_tokens: int = 400, width: int = 72) -> tuple[list[Path], list[str]]:
    """PNG/PDF and an HTML page of one sample: background = base-model entropy, red box = token EntroDrop masks."""
    if not signals:
        return [], ["fig2c skipped: the sample has no tokens"]
    notes = [f"fig2c: showing the first {max_tokens} of {len(signals)} tokens"] if len(signals) > max_tokens else []
    signals = signals[:max_tokens]
    finite = [e for _, e, _ in signals if math.isfinite(e)]
    norm = Normalize(vmin=0.0, vmax=max(finite) if finite and max(finite) > 0 else 1.0)
    cmap = colormaps["YlOrRd"]
    placed = _layout_tokens(signals, width)
    n_lines = placed[-1][0] + 1
    fig = _new_figure(width=10, height=1.6 + 0.28 * n_lines)
    ax = fig.add_subplot()
    ax.set_xlim(0, width)
    ax.set_ylim(n_lines, -0.2)
    ax.axis("off")
    for (line, col, text), (_, ent, gated) in zip(placed, signals):
        face = cmap(norm(ent)) if math.isfinite(ent) else (0.85, 0.85, 0.85, 1.0)
        ax.add_patch(Rectangle((col, line + 0.05), len(text), 0.85, facecolor=face,
                               edgecolor="red" if gated else "none", linewidth=1.2 if gated else 0))
        ax.text(col + len(text) / 2, line + 0.5, text, ha="center", va="center", family="monospace", fontsize=7)
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, orientation="horizontal", fraction=0.05, pad=0.02,
                 label="base-model entropy (nats); red box: token EntroDrop may mask (low entropy); grey: not scored")
    n_gated = sum(g for _, _, g in signals)
    ax.set_title(f"Fig. 2c: one target-domain sample by token entropy ({n_gated} of {len(signals)} tokens gated)")
    paths = save(fig, out_dir, "fig2c_token_entropy")
    html_path = figure_file(out_dir, "fig2c_token_entropy", "html")
    write_text(html_path, _token_html(signals, norm, cmap, notes))
    return [*paths, html_path], notes


def _token_html(signals: TokenSignals, norm: Normalize, cmap, notes: list[str]) -> str:
    spans = []
    for token, ent, gated in signals:
        color = to_hex(cmap(norm(ent))) if math.isfinite(ent) else "#d9d9d9"
        tip = f"entropy {ent:.3f} nats" if math.isfinite(ent) else "not scored (special token)"
        tip += "; masked by EntroDrop" if gated else ""
        cls = ' class="gated"' if gated else ""
        spans.append(f'<span{cls} style="background:{color}" title="{escape(tip)}">{escape(token)}</span>')
    legend_stops = ", ".join(to_hex(cmap(x)) for x in np.linspace(0, 1, 6))
    note = "".join(f"<p class=note>{escape(n)}</p>" for n in notes)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Fig. 2c: token entropy</title>\n"
        "<style>body{font-family:system-ui,sans-serif;margin:2rem;max-width:60rem}"
        ".sample{font-family:monospace;white-space:pre-wrap;line-height:1.9;border:1px solid #ccc;padding:1rem}"
        ".gated{outline:2px solid #d00;outline-offset:-1px}"
        f".bar{{height:12px;width:20rem;background:linear-gradient(to right,{legend_stops})}}"
        ".note{color:#666;font-size:.9rem}</style>\n</head>\n<body>\n"
        "<h1>Fig. 2c: one target-domain sample by base-model token entropy</h1>\n"
        f"<p>Background: entropy of the frozen base model's next-token distribution, from 0 to {norm.vmax:.2f} nats "
        "(light = predictable, dark = uncertain). Red outline: low-entropy tokens EntroDrop may mask. "
        "Hover a token for its value.</p>\n<div class=bar></div>\n"
        f"{note}<div class=sample>{''.join(spans)}</div>\n</body>\n</html>\n"
    )


# --------------------------------------------------------------------------- all figures
def _best_run(selection: Selection, method: str | None) -> str | None:
    return selection.methods[method].best_run if method else None


def _gate_plugin(config: ExperimentConfig, selection: Selection) -> Regularizer | None:
    """The main proposed method's plugin at its selected grid point (its first one before any selection)."""
    method = proposed_method(selection)
    if method is None:
        return None
    run = selection.methods[method].best_run or selection.methods[method].runs[0]
    return config.runs[run].build()


def write_figures(config: ExperimentConfig, layout: Layout) -> list[Path]:
    """Every figure this experiment has data for, from selection.json (refused when missing or stale), the
    runs' validation curves and (fig5) the online runs' train logs; skipped ones are listed in figures/NOTES.md."""
    selection = read_selection(config, layout)
    out = layout.figures_dir
    out.mkdir(parents=True, exist_ok=True)
    seeds = list(config.train.seeds)
    plain = _best_run(selection, baseline_method(selection))
    entro = _best_run(selection, proposed_method(selection))
    plain_curve = read_val_curves(layout, plain, seeds) if plain else None
    jobs = [
        lambda: figure_1c(plain_curve, out),
        lambda: figure_2a(selection, out),
        lambda: figure_2b(selection, out),
        lambda: figure_3(selection, out),
        lambda: figure_4({"Baseline": plain_curve, "EntroDrop": read_val_curves(layout, entro, seeds) if entro else None}, out),
    ]
    if drawn := series_runs(selection):  # prepared.json is read only for it: no declared series, no fig5 and no note
        series = {lab: declared_series(layout, selection, run, seeds) for lab, run in drawn}
        jobs.append(lambda: figure_5(series, training_plan(layout), seeds, out))
    paths: list[Path] = []
    notes: list[str] = []
    for job in jobs:
        made, why = job()
        paths += made
        notes += why
    if layout.sample_entropy_file.is_file():
        made, why = figure_2c(load_token_signals(layout.sample_entropy_file, _gate_plugin(config, selection)), out)
        paths += made
        notes += why
    else:
        notes.append(f"fig2c skipped: {layout.sample_entropy_file} not found (written by `prepare`)")
    text = "# Figure notes\n\n" + ("".join(f"- {n}\n" for n in notes) if notes else "Every figure was drawn from complete data.\n")
    notes_file = figure_notes_file(out)
    write_text(notes_file, text)
    return paths + [notes_file]
