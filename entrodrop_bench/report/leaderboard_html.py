"""Static, self-contained leaderboard page: one HTML file, a table sortable by any column.

No server, no CDN: rows are rendered here (readable without JavaScript) and a few lines of vanilla JS
sort them when a header is clicked (numbers numerically, blanks last, click again to reverse).
"""

from __future__ import annotations

from html import escape

COLUMNS = [
    # (header, kind) ; kind "num" sorts numerically, "text" alphabetically
    ("Preset", "text"),
    ("Backbone", "text"),
    ("Method", "text"),
    ("Table", "text"),
    ("Setting", "text"),
    ("Target domain", "text"),
    ("Target avg", "num"),
    ("vs plain (%)", "num"),
    ("General avg", "num"),
    ("Total avg", "num"),
    ("Seeds", "num"),
    ("Checkpoint", "text"),
    ("Rule", "text"),
    ("Tokens trained", "num"),
    ("Train FLOPs", "num"),
    ("Train time (h)", "num"),
    ("Eval time (h)", "num"),
    ("Device", "text"),
    ("Device-h", "num"),
    ("Commit", "text"),
    ("Date", "text"),
]

_SCRIPT = """
(function () {
  var table = document.getElementById('leaderboard');
  var heads = table.tHead.rows[0].cells;
  function key(cell, kind) {
    var v = cell.getAttribute('data-sort');
    if (kind === 'num') { var x = parseFloat(v); return isNaN(x) ? null : x; }
    return v === null || v === '' ? null : v.toLowerCase();
  }
  function sortBy(index) {
    var th = heads[index], kind = th.getAttribute('data-kind');
    var dir = th.getAttribute('aria-sort') === 'ascending' ? -1 : 1;
    for (var i = 0; i < heads.length; i++) heads[i].removeAttribute('aria-sort');
    th.setAttribute('aria-sort', dir === 1 ? 'ascending' : 'descending');
    var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a.cells[index], kind), y = key(b.cells[index], kind);
      if (x === null && y === null) return 0;
      if (x === null) return 1;  // blanks last in both directions
      if (y === null) return -1;
      return x < y ? -dir : x > y ? dir : 0;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  for (var i = 0; i < heads.length; i++) {
    (function (i) {
      heads[i].addEventListener('click', function () { sortBy(i); });
      heads[i].addEventListener('keydown', function (e) { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); sortBy(i); } });
    })(i);
  }
})();
"""

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; font-size: 0.9rem; }
th, td { border-bottom: 1px solid #ddd; padding: 0.35rem 0.6rem; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { cursor: pointer; background: #f4f4f4; user-select: none; }
th[aria-sort=ascending]::after { content: " \\25B2"; }
th[aria-sort=descending]::after { content: " \\25BC"; }
caption { text-align: left; margin-bottom: 0.6rem; color: #555; }
"""


def _fmt(x: float | None, decimals: int = 2, signed: bool = False) -> tuple[str, str]:
    """(shown text, sort value)."""
    if x is None:
        return "–", ""
    return (f"{x:+.{decimals}f}" if signed else f"{x:.{decimals}f}"), repr(float(x))


def _with_interval(summary: dict | None) -> tuple[str, str]:
    """`46.00 [40.12, 51.88]` (sorted by the mean); the mean alone when the entry has no interval."""
    text, sort = _fmt(summary and summary["mean"])
    if summary and summary.get("ci95"):
        text += f" [{summary['ci95'][0]:.2f}, {summary['ci95'][1]:.2f}]"
        if summary.get("ci_over") == "items only":
            text += "*"
    return text, sort


def _sci(x: float | None) -> tuple[str, str]:
    return ("–", "") if x is None else (f"{x:.3g}", repr(float(x)))


def _cost_cells(entry: dict) -> list[tuple[str, str]]:
    """Tokens, FLOPs, train and eval hours, device, device hours; blanks for an entry without a measured cost."""
    cost = entry.get("cost") or {}
    device = cost.get("device")
    if device and (cost.get("device_count") or 1) > 1:
        device = f"{cost['device_count']} x {device}"

    def h(seconds: float | None) -> tuple[str, str]:
        return _fmt(None if seconds is None else seconds / 3600, 3)

    return [_sci(cost.get("tokens_trained")), _sci(cost.get("train_flops")), h(cost.get("train_wall_s")),
            h(cost.get("eval_wall_s")), (device or "–", device or ""), _fmt(cost.get("device_hours"), 3)]


def _cells(entry: dict) -> list[tuple[str, str]]:
    target = entry["selection"]["target_domain"]
    doms = entry["domain_averages"]
    tgt, gen = doms.get(target), doms.get("general")
    params = entry["method"]["params"]
    grid = entry["method"]["config"].get("grid") or {}
    setting = ", ".join(f"{k}={params.get(k)}" for k in sorted(grid))
    ckpts = entry["selection"]["checkpoints"]
    ckpt = "; ".join(f"step {c['step']}" + ("" if c["target_epoch"] is None else f" (ep {c['target_epoch']:g})") for c in ckpts)
    backbone = entry["backbone"]["id"] + (f"@{entry['backbone']['revision']}" if entry["backbone"]["revision"] else "")
    commit = entry["provenance"]["git_commit"] or ""
    seeds = len(entry["seeds"])
    return [
        (entry["preset"], entry["preset"]),
        (backbone, backbone),
        (entry["method"]["label"], entry["method"]["label"]),
        (entry["method"]["table"], entry["method"]["table"]),
        (setting or "–", setting),
        (target, target),
        _with_interval(tgt),
        _fmt(entry["relative_to_plain_pct"].get(target), signed=True),
        _with_interval(gen),
        _with_interval(entry["total_average"]),
        (str(seeds), str(seeds)),
        (ckpt, str(ckpts[0]["step"])),
        (entry["selection"]["rule"], entry["selection"]["rule"]),
        *_cost_cells(entry),
        (commit[:12], commit),
        (entry["provenance"]["date"][:10], entry["provenance"]["date"]),
    ]


def render(leaderboard: dict) -> str:
    """The whole page for a validated leaderboard document."""
    head = "".join(
        f'<th scope="col" tabindex="0" data-kind="{kind}">{escape(name)}</th>' for name, kind in COLUMNS
    )
    rows = []
    for entry in leaderboard["entries"]:
        tds = []
        for (shown, sort), (_, kind) in zip(_cells(entry), COLUMNS):
            cls = ' class="num"' if kind == "num" else ""
            tds.append(f'<td{cls} data-sort="{escape(sort)}">{escape(shown)}</td>')
        rows.append(f'<tr data-key="{escape(entry["key"])}">' + "".join(tds) + "</tr>")
    caption = (
        f"{len(leaderboard['entries'])} entries, updated {escape(leaderboard['updated'])}. Scores x100; "
        "each method at its best grid point and selected checkpoint; cost measured, summed over seeds. "
        "[lo, hi]: 95% interval over training seeds and test items; * one seed: over items only, so it describes "
        "that checkpoint, not the method (another seed can land further away). Click a column header to sort."
    )
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<title>entrodrop-bench leaderboard</title>\n"
        f"<style>{_STYLE}</style>\n</head>\n<body>\n<h1>entrodrop-bench leaderboard</h1>\n"
        f'<table id="leaderboard">\n<caption>{caption}</caption>\n<thead><tr>{head}</tr></thead>\n<tbody>\n'
        + "\n".join(rows)
        + f"\n</tbody>\n</table>\n<script>{_SCRIPT}</script>\n</body>\n</html>\n"
    )
