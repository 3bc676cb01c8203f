"""The per-item outcomes of an experiment in one compact file, and the selection's statistics rebuilt from it.

`select` writes `layout.item_outcomes_file` (gzip-compressed JSON lines) beside selection.json: every evaluated
checkpoint of the config's runs with per-item outcomes, so that the intervals, paired comparisons, Table 3's
contrasts and the cross-fitted optimism can be recomputed by anyone without the runs folder
(`entrodrop-bench tables CONFIG --from-items FILE`). The first line is a header, each further line one result:

    {"format": 1, "experiment": "tiny-study", "benchmarks": {"<benchmark>": ["<item id>", ...]}}
    {"run": "plain", "seed": 0, "step": 116, "benchmark": "<benchmark>", "scores": [1.0, 0.0, null, ...]}

`scores` follow the header's item ids of that benchmark (sorted), null where the result has no such item.
The file is written byte for byte the same for the same outcomes (gzip without a timestamp, sorted lines).
"""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

from entrodrop_bench.artifacts import ArtifactError, Selection
from entrodrop_bench.atomic import write_bytes
from entrodrop_bench.config import ExperimentConfig
from entrodrop_bench.paths import Layout
from entrodrop_bench.report.comparisons import Items

FORMAT = 1


def encode(items: Items, experiment: str) -> bytes:
    """The file's bytes for `items` ((run, seed, step) -> benchmark -> item id -> score)."""
    ids: dict[str, set[str]] = {}
    for results in items.values():
        for bench, found in results.items():
            ids.setdefault(bench, set()).update(found)
    order = {b: sorted(v) for b, v in sorted(ids.items())}
    lines = [json.dumps({"format": FORMAT, "experiment": experiment, "benchmarks": order})]
    for (run, seed, step), results in sorted(items.items()):
        for bench, found in sorted(results.items()):
            scores = [found.get(i) for i in order[bench]]
            lines.append(json.dumps({"run": run, "seed": seed, "step": step, "benchmark": bench, "scores": scores}))
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=9) as gz:
        gz.write(("\n".join(lines) + "\n").encode())
    return buf.getvalue()


def write(layout: Layout, items: Items, experiment: str) -> Path:
    write_bytes(layout.item_outcomes_file, encode(items, experiment))
    return layout.item_outcomes_file


def read(path: Path) -> tuple[str, Items]:
    """(experiment, items) from a file `encode` wrote; ArtifactError naming the file and line otherwise."""
    try:
        text = gzip.decompress(Path(path).read_bytes()).decode()
    except FileNotFoundError:
        raise ArtifactError(f"{path} does not exist: `entrodrop-bench select CONFIG` writes it beside "
                            f"selection.json") from None
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path} is not a gzip-compressed per-item outcomes file ({exc})") from None
    lines = text.splitlines()
    header = _line(path, lines, 0)
    if header.get("format") != FORMAT or not isinstance(header.get("benchmarks"), dict):
        raise ArtifactError(f"{path} line 1: expected a header with format {FORMAT} and `benchmarks`, got keys "
                            f"{sorted(header)} (format {header.get('format')!r})")
    order = header["benchmarks"]
    items: Items = {}
    for number in range(1, len(lines)):
        rec = _line(path, lines, number)
        try:
            ids, scores = order[rec["benchmark"]], rec["scores"]
            key = (str(rec["run"]), int(rec["seed"]), int(rec["step"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"{path} line {number + 1}: expected run, seed, step, a benchmark of the header and "
                                f"scores ({exc!r})") from None
        if not isinstance(scores, list) or len(scores) != len(ids):
            raise ArtifactError(f"{path} line {number + 1}: expected {len(ids)} scores (one per item id of "
                                f"{rec['benchmark']} in the header)")
        items.setdefault(key, {})[rec["benchmark"]] = {i: float(x) for i, x in zip(ids, scores) if x is not None}
    return str(header.get("experiment")), items


def _line(path: Path, lines: list[str], index: int) -> dict:
    try:
        rec = json.loads(lines[index])
    except (IndexError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path} line {index + 1} is not a JSON object ({exc})") from None
    if not isinstance(rec, dict):
        raise ArtifactError(f"{path} line {index + 1} is not a JSON object")
    return rec


def rebuilt_selection(config: ExperimentConfig, layout: Layout, path: Path) -> Selection:
    """selection.json (as `select` wrote it, read without its runs folder) with everything that comes from per-item
    outcomes recomputed from the file at `path` (`selection.with_item_statistics`)."""
    from entrodrop_bench.report.selection import with_item_statistics

    experiment, items = read(path)
    selection = Selection.read(layout.selection_file)
    if experiment != selection.experiment or selection.experiment != config.name:
        raise ArtifactError(f"{path} holds the outcomes of experiment {experiment!r}, but {layout.selection_file} is "
                            f"{selection.experiment!r} and the config {config.name!r}")
    return with_item_statistics(selection, items, config.eval.heldout_seed)
