"""The results page of a leaderboard: one static HTML file, offline (inline CSS, JS and SVG; no server, no CDN).

What it shows, per paper table of each experiment (a section):
- each method's domain and total averages with their 95% intervals (and what each covers: seeds and items, or
  one seed's items only), the difference to the Baseline with its interval, and a mark only where the paired test
  supports a difference: † over seeds and items, ‡ item-level only with one seed (what the marks mean is on the
  page); per table, each difference column's minimum detectable effect, and Table 3's own contrasts (EntroDrop
  against random and high-entropy masking) where the entries carry them;
- the selected checkpoints' target epochs, seeds and measured cost (device hours); a row opens a breakdown:
  per-benchmark scores, checkpoints, cost, the comparison's p-values, and provenance on demand (commit, config
  hash, data hashes, versions); entries built or published from a modified work tree are marked;
- the validation-loss curves of the section's methods as small multiples (inline SVG), the Baseline's drawn in
  each panel for reference.
Filters (preset, backbone, paper table, selection rule, superseded entries) and sorting (click a header) are a
few lines of vanilla JS; everything is rendered here, so the page reads without JavaScript too.

Only `entry_view` reads the leaderboard JSON's entries; the rest works on `EntryView`.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from html import escape

from entrodrop_bench.artifacts import LeaderboardComparison
from entrodrop_bench.provenance import from_modified_tree
from entrodrop_bench.report.comparisons import ALPHA, SCORE_INTERVAL, TEST, significant
from entrodrop_bench.report.statistics import ITEMS_ONLY, MDE_POWER
from entrodrop_bench.report.tables import ITEM_MARK, MARK

TOTAL = "total"
TABLE_TITLES = {"table1": "Table 1: main comparison", "table2": "Table 2: main comparison (code)",
                "table3": "Table 3: which tokens to mask", "table4": "Table 4: masking rate and schedule"}
DASH = "–"


# --------------------------------------------------------------------------- reading entries (accessors)
@dataclass
class Stat:
    """A score or average (x100) and its 95% interval, when the entry has one."""

    mean: float
    std: float
    n: int
    ci95: tuple[float, float] | None
    over: str | None = None
    """What `ci95` covers (`ci_over`): `seeds and items`, `items only` (one seed) or `seeds`; None in older entries."""


@dataclass
class Diff:
    """A method's average minus the Baseline's, paired, with its interval and p-values (raw and Holm)."""

    diff: float
    ci95: tuple[float, float]
    p: float
    p_holm: float
    marked: bool
    """Whether the test supports a difference (`comparisons.significant`)."""
    mark: str
    """The page's mark, as the tables write it: † over seeds and items, ‡ one seed (item-level only), else empty."""
    mde: float | None
    """Minimum detectable effect of this comparison, in points (absent in older entries)."""
    level: str | None
    """`seeds and items` or `items only` (absent in older entries)."""


@dataclass
class Benchmark:
    name: str
    domain: str
    metric: str | None
    harness: str | None
    stat: Stat


@dataclass
class Checkpoint:
    seed: int
    step: int
    epoch: float | None
    val_loss: float | None
    trained_at: str | None


@dataclass
class ContrastView:
    """One of Table 3's contrasts: the entry's method minus `against` on the target domain."""

    name: str
    against: str
    column: str
    seeds: list[int]
    diff: Diff | None


@dataclass
class Curve:
    seed: int
    epochs: list[float]
    losses: list[float]


@dataclass
class EntryView:
    """What the page shows of one leaderboard entry."""

    key: str
    experiment: str
    preset: str
    backbone: str
    name: str
    label: str
    plugin: str
    plugin_version: str | None
    setting: str
    table: str | None  # table1..table4; None for the Baseline (a reference row of every table of its experiment)
    is_baseline: bool
    rule: str
    target_domain: str
    seeds: list[int]
    domains: dict[str, Stat]
    total: Stat
    diffs: dict[str, Diff | None] | None
    baseline: str | None
    benchmarks: list[Benchmark]
    checkpoints: list[Checkpoint]
    cost: dict
    provenance: dict
    budget: dict
    modified_tree: bool
    superseded: str | None
    curves: list[Curve] = field(default_factory=list)
    contrasts: list[ContrastView] = field(default_factory=list)


def _stat(s: dict) -> Stat:
    ci = s.get("ci95")
    return Stat(s["mean"], s["std"], s["n"], (ci[0], ci[1]) if ci else None, s.get("ci_over") if ci else None)


def _diff(d: dict | None) -> Diff | None:
    if d is None:
        return None
    c = LeaderboardComparison.model_validate(d)  # the mark is `significant` of the comparison, as the tables decide it
    return Diff(c.diff, (c.ci95[0], c.ci95[1]), c.p, c.p_holm, significant(c), _mark(c), c.mde, c.level)


def _mark(c: LeaderboardComparison) -> str:
    """As `tables` marks a cell: † over seeds and items (or an older entry without a level), ‡ for one seed's
    item-level comparison (two checkpoints differ, not necessarily two methods)."""
    if not significant(c):
        return ""
    return ITEM_MARK if c.level == ITEMS_ONLY else MARK


def _table_of(entry: dict) -> str | None:
    """The paper table an entry is a row of: the one its Baseline comparison was corrected across, else its
    method's table family."""
    if entry.get("vs_baseline"):
        return entry["vs_baseline"]["table"]
    family = entry["method"]["table"]
    if family == "main":
        return "table2" if entry["selection"]["target_domain"] == "code" else "table1"
    return {"targeting": "table3", "gamma": "table4", "schedule": "table4"}.get(family)


def entry_view(entry: dict, baselines: set[str]) -> EntryView:
    """The one reader of an entry's JSON. `baselines`: the Baseline method names its experiment compares with."""
    method, sel, prov = entry["method"], entry["selection"], entry["provenance"]
    grid = method["config"].get("grid") or {}
    revision = entry["backbone"]["revision"]
    vs = entry.get("vs_baseline")
    is_baseline = (method["name"] in baselines or method["label"] == "Baseline") and not vs
    built = prov.get("git_commit")
    return EntryView(
        key=entry["key"], experiment=entry["experiment"], preset=entry["preset"],
        backbone=entry["backbone"]["id"] + (f"@{revision}" if revision else ""),
        name=method["name"], label=method["label"], plugin=method["plugin"], plugin_version=method["plugin_version"],
        setting=", ".join(f"{k}={method['params'].get(k)}" for k in sorted(grid)),
        table=None if is_baseline else _table_of(entry) or "other", is_baseline=is_baseline,
        rule=sel["rule"], target_domain=sel["target_domain"],
        seeds=list(entry["seeds"]),
        domains={d: _stat(s) for d, s in entry["domain_averages"].items()}, total=_stat(entry["total_average"]),
        diffs=None if not vs else {c: _diff(d) for c, d in vs["columns"].items()},
        baseline=vs["baseline"] if vs else None,
        benchmarks=[Benchmark(b, s["domain"], s["metric"], s["harness"], _stat(s)) for b, s in entry["scores"].items()],
        checkpoints=[Checkpoint(c["seed"], c["step"], c["target_epoch"], c.get("val_loss"), c.get("trained_at_commit"))
                     for c in sel["checkpoints"]],
        cost=entry.get("cost") or {}, budget=entry["budget"],
        provenance={"commit": built, "config_hash": prov["config_hash"], "data_hashes": prov["data_hashes"],
                    "versions": prov["versions"], "date": prov["date"]},
        modified_tree=bool(prov.get("modified_work_tree")) or from_modified_tree(built),
        superseded=(entry.get("superseded") or {}).get("date"),
        curves=[Curve(c["seed"], c["target_epoch"], c["loss"]) for c in entry.get("val_curve") or []],
        contrasts=[ContrastView(c["name"], c["against"], c["column"], list(c["seeds"]), _diff(c["comparison"]))
                   for c in entry.get("contrasts") or []],
    )


def entry_views(leaderboard: dict) -> list[EntryView]:
    entries = leaderboard["entries"]
    baselines = {e["vs_baseline"]["baseline"] for e in entries if e.get("vs_baseline")}
    return [entry_view(e, baselines) for e in entries]


# --------------------------------------------------------------------------- formatting
def _num(x: float | None, decimals: int = 2, signed: bool = False) -> str:
    if x is None or not math.isfinite(x):
        return DASH
    text = f"{x:+.{decimals}f}" if signed else f"{x:.{decimals}f}"
    return text.replace("-", "−")


def _interval(ci: tuple[float, float] | None, signed: bool = False) -> str:
    return "" if ci is None else f"[{_num(ci[0], 2, signed)}, {_num(ci[1], 2, signed)}]"


ITEMS_STAR = "*"
"""After an interval over one seed's items only: it describes that checkpoint, not the method."""


def _stat_interval(stat: Stat) -> str:
    """A score's interval, starred when it covers one seed's items only."""
    ci = _interval(stat.ci95)
    return ci + ITEMS_STAR if ci and stat.over == ITEMS_ONLY else ci


def _over(stat: Stat) -> str:
    """What a score's interval covers, in words."""
    if stat.ci95 is None:
        return "no interval"
    if stat.over is None:
        return "coverage not recorded (an older entry)"
    return "over " + ("items only (one seed: this checkpoint)" if stat.over == ITEMS_ONLY else stat.over)


def _epochs(checkpoints: list[Checkpoint]) -> str:
    """The selected checkpoints' target epochs: one value, or the range across seeds."""
    eps = sorted(c.epoch for c in checkpoints if c.epoch is not None)
    if not eps:
        return DASH
    return f"{eps[0]:.1f}" if eps[0] == eps[-1] or len(eps) == 1 else f"{eps[0]:.1f}–{eps[-1]:.1f}"


def _hours(h: float | None) -> str:
    if h is None:
        return DASH
    return f"{h:.3f}" if h < 0.1 else f"{h:.2f}" if h < 10 else f"{h:,.0f}"


def _sci(x: float | None) -> str:
    return DASH if x is None else f"{x:.3g}"


def _commit(commit: str | None, modified: bool) -> str:
    if not commit:
        return DASH
    short = commit.removesuffix("-dirty")[:12]
    return escape(short) + (' <span class="badge warn">modified tree</span>' if modified else "")


def _attr(x: object) -> str:
    return escape(str(x), quote=True)


# --------------------------------------------------------------------------- sections
@dataclass
class Section:
    experiment: str
    preset: str
    backbone: str
    table: str
    rule: str
    rows: list[EntryView]

    @property
    def domains(self) -> list[str]:
        """Target domain first, then the others as the entries list them."""
        target = self.rows[0].target_domain
        found = [d for r in self.rows for d in r.domains]
        return [target, *dict.fromkeys(d for d in found if d != target)] if target in found else list(dict.fromkeys(found))


def sections(views: list[EntryView]) -> list[Section]:
    """One section per (experiment, preset, backbone, paper table); the Baseline is a reference row of each."""
    groups: dict[tuple, list[EntryView]] = {}
    for v in views:
        if v.table is not None:
            groups.setdefault((v.experiment, v.preset, v.backbone, v.table), []).append(v)
    out = []
    for (exp, preset, backbone, table), rows in sorted(groups.items()):
        base = sorted((v for v in views if v.is_baseline and (v.experiment, v.preset, v.backbone) == (exp, preset, backbone)),
                      key=lambda v: v.superseded is not None)
        out.append(Section(exp, preset, backbone, table, rows[0].rule, base + rows))
    # A Baseline alone (an experiment with no other method) still gets its table.
    shown = {(s.experiment, s.preset, s.backbone) for s in out}
    for v in views:
        if v.is_baseline and (v.experiment, v.preset, v.backbone) not in shown:
            out.append(Section(v.experiment, v.preset, v.backbone, "table1", v.rule, [v]))
    return out


def _filters(v: EntryView, s: Section) -> str:
    return (f'data-preset="{_attr(v.preset)}" data-backbone="{_attr(v.backbone)}" data-table="{_attr(s.table)}" '
            f'data-rule="{_attr(v.rule)}" data-superseded="{"1" if v.superseded else "0"}"')


def _stat_cell(stat: Stat | None) -> str:
    if stat is None:
        return f'<td class="num" data-sort="">{DASH}</td>'
    ci = _stat_interval(stat)
    return (f'<td class="num" data-sort="{stat.mean!r}"><span class="v">{_num(stat.mean)}</span>'
            + (f'<span class="ci" title="95% interval {_attr(_over(stat))}">{ci}</span>' if ci else "") + "</td>")


def _diff_cell(v: EntryView, column: str) -> str:
    if v.diffs is None:
        shown = "ref." if v.is_baseline else DASH
        title = "the Baseline itself" if v.is_baseline else "no paired comparison in this entry"
        return f'<td class="num diff" data-sort="" title="{title}">{shown}</td>'
    d = v.diffs.get(column)
    if d is None:
        return ('<td class="num diff" data-sort="" title="a result it needs lacks per-item outcomes: '
                f'no paired comparison">{DASH}</td>')
    cls = ("up" if d.diff > 0 else "down") if d.marked else "ns"
    mark = f'<span class="mark">{d.mark}</span>' if d.mark else ""
    title = f"p = {d.p:.3g}, Holm-adjusted p = {d.p_holm:.3g}" + (f", MDE {d.mde:.2f}" if d.mde is not None else "") + (
        f", over {d.level}" if d.level else "")
    return (f'<td class="num diff {cls}" data-sort="{d.diff!r}" title="{title}"><span class="v">{_num(d.diff, signed=True)}'
            f'{mark}</span><span class="ci">{_interval(d.ci95, signed=True)}</span></td>')


def _method_cell(v: EntryView) -> str:
    badges = ""
    if v.modified_tree:
        badges += ' <span class="badge warn" title="built or published from a work tree with uncommitted changes">modified tree</span>'
    if v.superseded:
        badges += f' <span class="badge old" title="superseded {_attr(v.superseded)}">superseded</span>'
    setting = f'<span class="setting">{escape(v.setting)}</span>' if v.setting else ""
    return (f'<td class="method" data-sort="{_attr(v.label.lower())}"><button type="button" class="open" '
            f'aria-expanded="false" title="breakdown, cost and provenance">▸</button> '
            f'<span class="label">{escape(v.label)}</span>{badges}{setting}</td>')


def _row(v: EntryView, s: Section, domains: list[str], ncols: int) -> str:
    cells = [_method_cell(v)]
    for d in [*domains, TOTAL]:
        cells.append(_stat_cell(v.total if d == TOTAL else v.domains.get(d)))
        cells.append(_diff_cell(v, d))
    eps = [c.epoch for c in v.checkpoints if c.epoch is not None]
    cells.append(f'<td class="num" data-sort="{min(eps)!r}">{_epochs(v.checkpoints)}</td>' if eps
                 else f'<td class="num" data-sort="">{DASH}</td>')
    cells.append(f'<td class="num wide" data-sort="{len(v.seeds)}">{len(v.seeds)}</td>')
    h = v.cost.get("device_hours")
    cells.append(f'<td class="num" data-sort="{"" if h is None else repr(h)}">{_hours(h)}</td>')
    cls = "entry" + (" superseded" if v.superseded else "") + (" baseline" if v.is_baseline else "")
    return (f'<tbody class="{cls}" data-key="{_attr(v.key)}" {_filters(v, s)}>\n<tr class="main">' + "".join(cells)
            + f'</tr>\n<tr class="detail" hidden><td colspan="{ncols}">{_breakdown(v)}</td></tr>\n</tbody>')


def _section_table(s: Section, index: int) -> str:
    domains = s.domains
    heads = ['<th scope="col" data-kind="text" tabindex="0">Method</th>']
    for d in [*domains, TOTAL]:
        name = "Total" if d == TOTAL else d
        heads.append(f'<th scope="col" data-kind="num" tabindex="0">{escape(name)} avg</th>')
        heads.append(f'<th scope="col" data-kind="num" tabindex="0">Δ {escape(name)}</th>')
    heads += ['<th scope="col" data-kind="num" tabindex="0" title="target epochs at the selected checkpoint(s): the range '
              'across seeds">Epoch</th>',
              '<th scope="col" data-kind="num" tabindex="0" class="wide">Seeds</th>',
              '<th scope="col" data-kind="num" tabindex="0" title="training wall x devices + evaluation wall, summed over '
              'seeds">Device-h</th>']
    ncols = len(heads)
    body = "\n".join(_row(v, s, domains, ncols) for v in s.rows)
    return (f'<table class="board" id="board-{index}">\n<thead><tr>{"".join(heads)}</tr></thead>\n{body}\n'
            f'{_mde_row(s, domains, ncols)}</table>')


def column_mde(s: Section, column: str) -> float | None:
    """A Δ column's minimum detectable effect, as the tables state it: the median over the section's current rows of
    their comparisons' MDEs (a zero MDE, a row identical to the Baseline on every item, carries no information)."""
    found = [d.mde for v in s.rows if not v.superseded and v.diffs and (d := v.diffs.get(column)) and d.mde]
    return statistics.median(found) if found else None


def _mde_row(s: Section, domains: list[str], ncols: int) -> str:
    """The table's footer: each Δ column's MDE (nothing when no entry carries one)."""
    mdes = {d: column_mde(s, d) for d in [*domains, TOTAL]}
    if all(m is None for m in mdes.values()):
        return ""
    title = (f"minimum detectable effect: the true difference vs the Baseline found with {MDE_POWER:.0%} power at "
             f"p < {ALPHA:g} before Holm's correction; median over the table's rows, in points")
    cells = [f'<th scope="row" title="{_attr(title)}">MDE</th>']
    for d in [*domains, TOTAL]:
        m = mdes[d]
        cells += ['<td></td>', f'<td class="num mde">{DASH if m is None else "±" + _num(m)}</td>']
    cells.append(f'<td colspan="{ncols - len(cells)}"></td>')
    return f'<tfoot><tr class="mde">{"".join(cells)}</tr></tfoot>\n'



# --------------------------------------------------------------------------- breakdown
def _kv(rows: list[tuple[str, str]]) -> str:
    return "<dl>" + "".join(f"<dt>{escape(k)}</dt><dd>{v}</dd>" for k, v in rows) + "</dl>"


def _mini(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="mini"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _breakdown(v: EntryView) -> str:
    bench = _mini(["Benchmark", "Domain", "Metric", "Score", "95% interval", "Covers", "Std", "n"],
                  [[escape(b.name), escape(b.domain), escape(f"{b.metric or DASH} ({b.harness or DASH})"),
                    _num(b.stat.mean, 1), _stat_interval(b.stat) or DASH, escape(_over(b.stat)), _num(b.stat.std, 2),
                    str(b.stat.n)]
                   for b in sorted(v.benchmarks, key=lambda b: (b.domain != v.target_domain, b.domain, b.name))])
    ckpts = _mini(["Seed", "Step", "Target epoch", "Val loss", "Trained at"],
                  [[str(c.seed), str(c.step), _num(c.epoch, 1), _num(c.val_loss, 4),
                    _commit(c.trained_at, from_modified_tree(c.trained_at))] for c in v.checkpoints])
    parts = [f'<div class="block"><h4>Benchmarks</h4>{bench}</div>',
             f'<div class="block"><h4>Selected checkpoints ({escape(v.rule)})</h4>{ckpts}</div>']
    if v.diffs:
        comp = _mini(["Column", "Δ vs " + escape(v.baseline or "Baseline"), "95% interval", "p", "Holm p", "MDE",
                      "Over"],
                     [[escape(c), _num(d.diff, 2, True) + d.mark, _interval(d.ci95, True), f"{d.p:.3g}",
                       f"{d.p_holm:.3g}", _num(d.mde), escape(d.level or DASH)] if d else [escape(c), *[DASH] * 6]
                      for c, d in v.diffs.items()])
        parts.append(f'<div class="block"><h4>Comparison with the Baseline ({escape(v.table or "")})</h4>{comp}</div>')
    c = v.cost
    device = c.get("device") or DASH
    if c.get("device_count") and c["device_count"] > 1:
        device = f"{c['device_count']} x {device}"
    train_h = None if c.get("train_wall_s") is None else c["train_wall_s"] / 3600
    eval_h = None if c.get("eval_wall_s") is None else c["eval_wall_s"] / 3600
    parts.append('<div class="block"><h4>Cost (summed over seeds)</h4>' + _kv([
        ("Device hours", _hours(c.get("device_hours"))), ("Device", escape(device)),
        ("Train wall (h)", _hours(train_h)), ("Eval wall (h)", _hours(eval_h)),
        ("Tokens trained", _sci(c.get("tokens_trained"))), ("Train FLOPs", _sci(c.get("train_flops"))),
        ("Token budget", f"{v.budget['token_budget']:,}"), ("Seq len", str(v.budget["seq_len"])),
    ]) + "</div>")
    p = v.provenance
    hashes = ", ".join(f"{escape(k)} {escape(str(h))}" for k, h in p["data_hashes"].items()) or DASH
    versions = ", ".join(f"{escape(k)} {escape(str(x))}" for k, x in p["versions"].items())
    parts.append('<details class="block prov"><summary>Provenance</summary>' + _kv([
        ("Commit", escape(p["commit"] or DASH) + (' <span class="badge warn">built or published from a modified work '
                                                   'tree</span>' if v.modified_tree else "")),
        ("Config hash", escape(p["config_hash"] or DASH)), ("Data hashes", hashes), ("Versions", versions),
        ("Plugin", escape(f"{v.plugin} (version {v.plugin_version or DASH})")),
        ("Built", escape(p["date"])), ("Experiment", escape(v.experiment)), ("Key", escape(v.key)),
        *([("Superseded", escape(v.superseded))] if v.superseded else []),
    ]) + "</details>")
    return '<div class="breakdown">' + "".join(parts) + "</div>"


# --------------------------------------------------------------------------- curves
W, H, PAD_L, PAD_B, PAD_T, PAD_R = 240, 150, 34, 22, 8, 6
SEED_DASH = ["", "5 3", "2 2", "8 3 2 3"]


def _ticks(lo: float, hi: float, n: int = 3) -> list[float]:
    return [lo + (hi - lo) * i / (n - 1) for i in range(n)]


def _path(c: Curve, sx, sy) -> str:
    return "M" + " L".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(c.epochs, c.losses))


def _panel(v: EntryView, base: EntryView | None, xr: tuple[float, float], yr: tuple[float, float], s: Section) -> str:
    (x0, x1), (y0, y1) = xr, yr

    def sx(x: float) -> float:
        return PAD_L + (x - x0) / ((x1 - x0) or 1) * (W - PAD_L - PAD_R)

    def sy(y: float) -> float:
        return H - PAD_B - (y - y0) / ((y1 - y0) or 1) * (H - PAD_B - PAD_T)

    parts = [f'<rect x="{PAD_L}" y="{PAD_T}" width="{W - PAD_L - PAD_R}" height="{H - PAD_B - PAD_T}" class="frame"/>']
    for t in _ticks(y0, y1):
        parts.append(f'<text x="{PAD_L - 3}" y="{sy(t) + 3:.1f}" class="tick" text-anchor="end">{t:.2f}</text>')
    xdec = 0 if x1 - x0 >= 4 else 1  # whole epochs unless the run is short
    for t in _ticks(x0, x1):
        parts.append(f'<text x="{sx(t):.1f}" y="{H - PAD_B + 11}" class="tick" text-anchor="middle">{t:.{xdec}f}</text>')
    if base is not None and base is not v:
        parts += [f'<path d="{_path(c, sx, sy)}" class="ref"/>' for c in base.curves]
    for i, c in enumerate(v.curves):
        dash = SEED_DASH[i % len(SEED_DASH)]
        parts.append(f'<path d="{_path(c, sx, sy)}" class="seed"' + (f' stroke-dasharray="{dash}"' if dash else "")
                     + f'><title>seed {c.seed}</title></path>')
    for ck in v.checkpoints:
        if ck.epoch is not None and ck.val_loss is not None:
            parts.append(f'<circle cx="{sx(ck.epoch):.1f}" cy="{sy(ck.val_loss):.1f}" r="2.6" class="pick">'
                         f'<title>seed {ck.seed}: selected, epoch {ck.epoch:.1f}, val loss {ck.val_loss:.4f}</title></circle>')
    svg = (f'<svg viewBox="0 0 {W} {H}" role="img" aria-label="validation loss of {_attr(v.label)} by target epoch">'
           + "".join(parts) + "</svg>")
    caption = escape(v.label) + (f' <span class="setting">{escape(v.setting)}</span>' if v.setting else "")
    return (f'<figure class="panel" data-key="{_attr(v.key)}" {_filters(v, s)}><figcaption title="{_attr(v.label)} '
            f'{_attr(v.setting)}">{caption}</figcaption>{svg}</figure>')


def _curves(s: Section) -> str:
    drawn = [v for v in s.rows if v.curves]
    if not drawn:
        return ('<p class="note">No validation-loss curves in these entries (built before the leaderboard carried '
                'them; rebuild with `entrodrop-bench leaderboard build CONFIG`).</p>')
    xs = [x for v in drawn for c in v.curves for x in c.epochs]
    ys = [y for v in drawn for c in v.curves for y in c.losses]
    pad = (max(ys) - min(ys)) * 0.05 or 0.01
    xr, yr = (0.0, max(xs)), (min(ys) - pad, max(ys) + pad)
    base = next((v for v in s.rows if v.is_baseline and v.curves and not v.superseded), None)
    panels = "".join(_panel(v, base, xr, yr, s) for v in drawn)
    return ('<div class="curves"><p class="note">Held-out target validation loss (y) against target epochs (x), '
            'every seed (solid, dashed, dotted); grey: the Baseline; dots: the selected checkpoints. Shared axes.</p>'
            f'<div class="grid">{panels}</div></div>')


# --------------------------------------------------------------------------- page
_STYLE = """
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; padding: 1rem 1.2rem;
  max-width: 1400px; color: #1d1d1f; font-size: 14px; line-height: 1.35; }
h1 { font-size: 1.45rem; margin: 0.2rem 0 0.3rem; } h2 { font-size: 1.15rem; margin: 1.6rem 0 0.2rem; }
h4 { margin: 0.2rem 0 0.3rem; font-size: 0.85rem; }
.sub { color: #555; margin: 0 0 0.8rem; }
.legend { background: #f6f7f9; border: 1px solid #e1e4e8; border-radius: 6px; padding: 0.55rem 0.8rem; margin: 0.6rem 0; }
.legend p { margin: 0.2rem 0; }
form.filters { display: flex; flex-wrap: wrap; gap: 0.4rem 1rem; align-items: center; margin: 0.6rem 0; }
form.filters label { font-size: 0.85rem; color: #333; }
form.filters select { font-size: 0.85rem; margin-left: 0.25rem; max-width: 14rem; }
#shown { color: #555; font-size: 0.85rem; }
.meta { color: #555; font-size: 0.85rem; margin: 0 0 0.4rem; overflow-wrap: anywhere; }
table.board { border-collapse: collapse; width: 100%; font-size: 0.84rem; }
table.board th { background: #f1f2f4; cursor: pointer; user-select: none; text-align: right; padding: 0.3rem 0.35rem;
  font-weight: 600; border-bottom: 1px solid #ccc; vertical-align: bottom; }
table.board th:first-child { text-align: left; }
table.board th[aria-sort=ascending]::after { content: " \\25B2"; font-size: 0.7em; }
table.board th[aria-sort=descending]::after { content: " \\25BC"; font-size: 0.7em; }
table.board td { padding: 0.28rem 0.35rem; border-bottom: 1px solid #e6e6e6; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.num .v { display: block; }
td.num .ci { display: block; color: #6a6a6a; font-size: 0.76rem; }
td.diff.ns .v { color: #666; }
td.diff.up .v, .contrasts .up { color: #0a7a2f; font-weight: 600; }
td.diff.down .v, .contrasts .down { color: #b3261e; font-weight: 600; }
.contrasts h3 { font-size: 0.95rem; margin: 0.8rem 0 0.1rem; }
tfoot tr.mde th, tfoot tr.mde td { font-size: 0.76rem; color: #555; border-bottom: none; text-align: right; font-weight: normal; }
.mark { margin-left: 1px; }
td.method { min-width: 9rem; }
td.method .setting, figcaption .setting { display: block; color: #666; font-size: 0.76rem; overflow-wrap: anywhere; }
tbody.baseline td { background: #fafafa; }
tbody.superseded td { color: #888; }
button.open { border: 1px solid #bbb; background: #fff; border-radius: 3px; cursor: pointer; font-size: 0.7rem;
  padding: 0 0.3rem; line-height: 1.3; }
.badge { display: inline-block; font-size: 0.68rem; padding: 0 0.3rem; border-radius: 3px; vertical-align: 1px; }
.badge.warn { background: #fff1cc; color: #7a5200; border: 1px solid #e8c766; }
.badge.old { background: #eee; color: #555; border: 1px solid #ccc; }
tr.detail > td { background: #fbfbfc; padding: 0.5rem 0.6rem; }
.breakdown { display: flex; flex-wrap: wrap; gap: 0.6rem 1.4rem; }
.block { min-width: 0; max-width: 100%; }
table.mini { border-collapse: collapse; font-size: 0.78rem; }
table.mini th, table.mini td { padding: 0.12rem 0.45rem; border-bottom: 1px solid #e6e6e6; text-align: left; }
dl { display: grid; grid-template-columns: max-content minmax(0, 1fr); gap: 0.1rem 0.7rem; margin: 0; font-size: 0.78rem; }
dt { color: #555; } dd { margin: 0; overflow-wrap: anywhere; }
details.prov summary { cursor: pointer; font-weight: 600; font-size: 0.85rem; }
details.prov { flex-basis: 100%; }
.curves .grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(185px, 1fr)); gap: 0.4rem 0.8rem; }
figure.panel { margin: 0; min-width: 0; }
figure.panel figcaption { font-size: 0.78rem; font-weight: 600; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
figure.panel figcaption .setting { display: inline; font-weight: normal; }
figure.panel svg { width: 100%; height: auto; display: block; }
svg .frame { fill: none; stroke: #ccc; } svg .tick { font-size: 9px; fill: #666; }
svg .seed { fill: none; stroke: #1f5fbf; stroke-width: 1.4; } svg .ref { fill: none; stroke: #aaa; stroke-width: 1.1; }
svg .pick { fill: #d9480f; }
.note { color: #555; font-size: 0.8rem; margin: 0.5rem 0 0.3rem; }
section[hidden], tbody[hidden], figure[hidden] { display: none; }
@media (max-width: 900px) {
  body { padding: 0.6rem; font-size: 13px; }
  table.board { font-size: 0.76rem; }
  table.board th, table.board td { padding: 0.22rem 0.2rem; }
  td.num .ci { font-size: 0.68rem; }
  td.method { min-width: 6.5rem; }
  td.num { white-space: normal; }
  .wide { display: none; }
}
"""

_SCRIPT = """
(function () {
  function key(cell, kind) {
    var v = cell.getAttribute('data-sort');
    if (kind === 'num') { var x = parseFloat(v); return isNaN(x) ? null : x; }
    return v === null || v === '' ? null : v.toLowerCase();
  }
  document.querySelectorAll('table.board').forEach(function (table) {
    var heads = table.tHead.rows[0].cells;
    function sortBy(index) {
      var th = heads[index], kind = th.getAttribute('data-kind');
      var dir = th.getAttribute('aria-sort') === 'ascending' ? -1 : 1;
      for (var i = 0; i < heads.length; i++) heads[i].removeAttribute('aria-sort');
      th.setAttribute('aria-sort', dir === 1 ? 'ascending' : 'descending');
      var bodies = Array.prototype.slice.call(table.tBodies);
      bodies.sort(function (a, b) {
        var x = key(a.rows[0].cells[index], kind), y = key(b.rows[0].cells[index], kind);
        if (x === null && y === null) return 0;
        if (x === null) return 1;  // blanks last in both directions
        if (y === null) return -1;
        return x < y ? -dir : x > y ? dir : 0;
      });
      bodies.forEach(function (b) { table.appendChild(b); });
    }
    Array.prototype.forEach.call(heads, function (th, i) {
      th.addEventListener('click', function () { sortBy(i); });
      th.addEventListener('keydown', function (e) { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); sortBy(i); } });
    });
  });
  document.querySelectorAll('button.open').forEach(function (b) {
    b.addEventListener('click', function () {
      var detail = b.closest('tbody').rows[1], open = detail.hidden;
      detail.hidden = !open;
      b.setAttribute('aria-expanded', open ? 'true' : 'false');
      b.textContent = open ? '\\u25BE' : '\\u25B8';
    });
  });
  var form = document.getElementById('filters');
  function apply() {
    var want = {};
    form.querySelectorAll('select').forEach(function (s) { want[s.name] = s.value; });
    var old = form.querySelector('input[name=superseded]');
    var showOld = old ? old.checked : true;
    function ok(el) {
      for (var k in want) if (want[k] !== '' && el.getAttribute('data-' + k) !== want[k]) return false;
      return showOld || el.getAttribute('data-superseded') !== '1';
    }
    var shown = {}, total = {};
    document.querySelectorAll('section.table').forEach(function (sec) {
      var rows = sec.querySelectorAll('tbody.entry'), any = false, compared = 0;
      rows.forEach(function (b) {
        var vis = ok(b), k = b.getAttribute('data-key');
        b.hidden = !vis; total[k] = 1;
        if (vis) shown[k] = 1;
        if (!b.classList.contains('baseline')) { compared++; if (vis) any = true; }
      });
      if (compared === 0) any = rows.length > 0 && !rows[0].hidden;  // a table holding only the Baseline
      sec.querySelectorAll('figure.panel').forEach(function (f) { f.hidden = !ok(f); });
      sec.hidden = !any;
    });
    document.getElementById('shown').textContent =
      'showing ' + Object.keys(shown).length + ' of ' + Object.keys(total).length + ' entries';
  }
  form.addEventListener('change', apply);
  apply();
})();
"""


def _legend() -> str:
    return (
        '<div class="legend">'
        "<p><b>How to read.</b> Scores are ×100. Each method appears at its best grid point and selected checkpoint(s), "
        f"averaged over seeds. Under each value: its {escape(SCORE_INTERVAL)}. <b>{ITEMS_STAR}</b> after an interval: "
        "one seed, so the interval is over the test items only: it describes that checkpoint, not the method (another "
        "training seed can land further away). Hover an interval for what it covers. <b>Δ</b>: the method's average "
        "minus the Baseline's, in points, with the 95% interval of the paired difference.</p>"
        f"<p><b>{MARK}, {ITEM_MARK} and colour</b> mark a difference the test supports: {escape(TEST)}; marked where the "
        f"Holm-adjusted p-value is below {ALPHA:g} (green: above the Baseline, red: below). <b>{MARK}</b>: over training "
        f"seeds and test items, so the methods differ. <b>{ITEM_MARK}</b>: item-level only. With one training seed a row "
        "compares two checkpoints, not two methods: these checkpoints differ on these items; another training seed can "
        f"move a score by more (several training seeds test the methods, marked {MARK}). <b>No mark</b>: the test does "
        "not support a difference at that level, whatever the sign of Δ; the interval is not corrected for the "
        "table's other rows, so it can exclude 0 without a mark. A dash: no paired comparison (a result without "
        "per-item outcomes). Hover a Δ for its p-values and MDE.</p>"
        f"<p><b>MDE</b> (each table's last row): the minimum detectable effect of a Δ column, the true difference vs "
        f"the Baseline found with {MDE_POWER:.0%} power at p &lt; {ALPHA:g} before Holm's correction, at these items "
        "and seeds (median over the table's rows), in points. Smaller differences are likely to go unmarked: no mark "
        "is not evidence of no difference.</p>"
        "<p><b>Epoch</b>: target-domain epochs at the selected checkpoint (a range across seeds). <b>Device-h</b>: "
        "training wall time × devices plus evaluation wall time, summed over seeds. ▸ opens a row: per-benchmark "
        'scores, checkpoints, cost and provenance. <span class="badge warn">modified tree</span>: built or published '
        "from a work tree with uncommitted changes to tracked files.</p></div>"
    )


def _select(name: str, title: str, values: list[str], labels: dict[str, str] | None = None) -> str:
    opts = '<option value="">all</option>' + "".join(
        f'<option value="{_attr(v)}">{escape((labels or {}).get(v, v))}</option>' for v in values)
    return f'<label>{escape(title)}<select name="{name}">{opts}</select></label>'


def _filter_form(views: list[EntryView], secs: list[Section]) -> str:
    tables = sorted({s.table for s in secs})
    old = sum(1 for v in views if v.superseded)
    parts = [_select("preset", "Preset", sorted({v.preset for v in views})),
             _select("backbone", "Backbone", sorted({v.backbone for v in views})),
             _select("table", "Paper table", tables, {t: TABLE_TITLES.get(t, t).split(":")[0] for t in tables}),
             _select("rule", "Selection rule", sorted({v.rule for v in views}))]
    if old:
        parts.append(f'<label><input type="checkbox" name="superseded"> show {old} superseded</label>')
    return f'<form class="filters" id="filters">{"".join(parts)}<span id="shown"></span></form>'


def _section(s: Section, index: int, views: list[EntryView], secs: list[Section]) -> str:
    first = s.rows[0]
    title = TABLE_TITLES.get(s.table, s.table)
    seeds = sorted({len(v.seeds) for v in s.rows})
    meta = (f"experiment {escape(s.experiment)} · preset {escape(s.preset)} · backbone {escape(s.backbone)} · "
            f"selection rule {escape(s.rule)} · target domain {escape(first.target_domain)} · "
            f"seeds per entry {', '.join(map(str, seeds))}")
    return (f'<section class="table" data-table="{_attr(s.table)}" data-preset="{_attr(s.preset)}" '
            f'data-backbone="{_attr(s.backbone)}" data-rule="{_attr(s.rule)}" data-superseded="0">'
            f"<h2>{escape(title)} <small>({escape(s.experiment)})</small></h2><p class=\"meta\">{meta}</p>"
            f"{_section_table(s, index)}{_contrasts(s, views, secs)}{_curves(s)}</section>")


def _contrasts(s: Section, views: list[EntryView], secs: list[Section]) -> str:
    """Table 3's own question, when the entries carry the contrasts: the low-entropy row against the others. Shown
    under the experiment's Table 3 section, though the low-entropy entry itself is a row of Table 1 (its comparison
    with the Baseline is corrected there); without a Table 3 section, under the section that holds that entry."""
    same = [v for v in views if not v.superseded and (v.experiment, v.preset, v.backbone) == (s.experiment, s.preset,
                                                                                                s.backbone)]
    has_table3 = any(x.table == "table3" and (x.experiment, x.preset, x.backbone) == (s.experiment, s.preset, s.backbone)
                     for x in secs)
    holders = same if s.table == "table3" else [] if has_table3 else [v for v in s.rows if not v.superseded]
    found = [(v, c) for v in holders for c in v.contrasts]
    if not found:
        return ""
    label = {v.name: v.label for v in same}
    rows = []
    for v, c in found:
        d = c.diff
        against = escape(label.get(c.against, c.against))
        cells = [escape(c.name), f"{escape(v.label)} − {against}", escape(c.column), str(len(c.seeds))]
        if d is None:
            cells += [DASH] * 6
        else:
            cls = ("up" if d.diff > 0 else "down") if d.marked else "ns"
            cells += [f'<span class="{cls}">{_num(d.diff, 2, True)}{d.mark}</span>', _interval(d.ci95, True),
                      f"{d.p:.3g}", f"{d.p_holm:.3g}", _num(d.mde), escape(d.level or DASH)]
        rows.append(cells)
    table = _mini(["Contrast", "Rows", "Domain", "Seeds", "Δ", "95% interval", "p", "Holm p", "MDE", "Over"], rows)
    return ('<div class="contrasts"><h3>Table 3\'s own contrasts</h3><p class="note">The low-entropy row minus another '
            "row of this table (not the Baseline) on the target domain, by the same test as Δ; Holm's correction "
            f"across these contrasts; marks as above.</p>{table}</div>")


def render(leaderboard: dict) -> str:
    """The whole page for a validated leaderboard document."""
    views = entry_views(leaderboard)
    secs = sections(views)
    body = "\n".join(_section(s, i, views, secs) for i, s in enumerate(secs)) or '<p class="note">No entries yet.</p>'
    sub = (f"{len(views)} entries, updated {escape(leaderboard['updated'])}. "
           "Which method wins, by how much, and is it real: per paper table, against the Baseline.")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        "<title>entrodrop-bench leaderboard</title>\n"
        f"<style>{_STYLE}</style>\n</head>\n<body>\n<h1>entrodrop-bench leaderboard</h1>\n"
        f'<p class="sub">{sub}</p>\n{_legend()}\n{_filter_form(views, secs)}\n{body}\n'
        f"<script>{_SCRIPT}</script>\n</body>\n</html>\n"
    )
