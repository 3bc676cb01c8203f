"""What `entrodrop-bench benchmarks CONFIG` shows: each configured benchmark's harness, data source, item
count, primary metric and whether its data is available offline, without loading any model or dataset.

Item counts: a local file (config `eval.data_overrides`, or the tiny world's file) is counted; otherwise
the published size of the full evaluated split is shown (the numbers in tasks/README.md's parity table).
Offline: a local file that exists, or the dataset in the hub or datasets cache (the preflight's own check,
`sources.in_local_cache`).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from entrodrop_bench.evaluate.benchmarks import (
    EVALPLUS_DATASETS,
    GROUP_TASKS,
    LIVECODEBENCH,
    builtin_task_yaml,
    effective_max_gen_toks,
    harness_of,
    local_task_yaml,
    task_yaml_field,
)

# Published sizes of the evaluated split (see tasks/README.md for the sources).
FULL_SIZES = {
    "svamp": 1000, "gsm8k": 1319, "minerva_math": 5000, "hendrycks_math": 5000, "minerva_math500": 500,
    "college_math": 2818, "olympiadbench": 674, "hellaswag": 10042, "arc_challenge": 299, "arc_easy": 2376,
    "piqa": 1838, "mmlu": 14042, "ifeval": 541, "humaneval": 164, "mbpp": 378, "livecodebench": 400,
}
# Hub sources of benchmarks whose task YAML is not enough to say it (groups, code benchmarks).
HUB_SOURCES = {
    "mmlu": "cais/mmlu (57 subjects, test)",
    "minerva_math": "EleutherAI/hendrycks_math (7 subjects, test)",
    "hendrycks_math": "EleutherAI/hendrycks_math (7 subjects, test)",
    "humaneval": "evalplus/humanevalplus (local evalplus-schema file)",
    "mbpp": "evalplus/mbppplus (local evalplus-schema file)",
    "livecodebench": "livecodebench/code_generation_lite release_v1 (local test.jsonl)",
}


def hub_source(benchmark: str) -> str:
    """The hub dataset (and config, split) the benchmark reads when no local file is given."""
    if benchmark in HUB_SOURCES:
        return HUB_SOURCES[benchmark]
    yaml_path = local_task_yaml(benchmark) or builtin_task_yaml(benchmark)
    path = task_yaml_field(yaml_path, "dataset_path")
    if path is None:
        return "unknown"
    name = task_yaml_field(yaml_path, "dataset_name")
    split = task_yaml_field(yaml_path, "test_split") or task_yaml_field(yaml_path, "validation_split")
    if benchmark == "svamp":  # utils.svamp_dataset reads both hub splits: the full 1,000
        split = "train+test"
    return f"{path}{f' [{name}]' if name else ''} ({split})"


def count_items(path: Path) -> int | None:
    """Records in a JSON list, a JSONL or a .jsonl.gz file."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as fh:
            text = fh.read()
        if text.lstrip().startswith("["):
            return len(json.loads(text))
        return sum(1 for line in text.splitlines() if line.strip())
    except (OSError, ValueError):
        return None


def describe(config, layout) -> list[dict]:
    """One row per configured benchmark: name, harness, source, items, metric, max_gen_toks, offline."""
    from entrodrop_bench.evaluate.benchmarks import PRIMARY_METRIC, check_benchmarks, primary_metric

    ev = config.eval
    check_benchmarks(ev.lm_eval_tasks, ev.evalplus_datasets)  # an unknown name: a clear error, not a row
    rows = []
    for bench in dict.fromkeys(ev.lm_eval_tasks + ev.evalplus_datasets):
        yaml_path = local_task_yaml(bench) or (builtin_task_yaml(bench) if harness_of(bench) == "lm-eval" else None)
        generates = harness_of(bench) != "lm-eval" or task_yaml_field(yaml_path, "output_type") == "generate_until" \
            or bench in ("minerva_math", "hendrycks_math")
        row = {"benchmark": bench, "harness": harness_of(bench),
               "metric": PRIMARY_METRIC.get(bench) or primary_metric(bench, {}) or "first of acc_norm/acc/exact_match",
               "max_gen_toks": effective_max_gen_toks(bench, ev.max_gen_toks) if generates else "-"}
        local: Path | None = None
        if bench in ev.data_overrides:
            local = Path(ev.data_overrides[bench])
        elif bench.startswith("tiny_"):
            from entrodrop_bench.prepare.tiny.world import TinyWorld

            local = TinyWorld(layout.world_dir).benchmark_file(bench)
        if local is not None:
            n = count_items(local) if local.is_file() else None
            row.update(source=f"local file {local}", items=n,
                       offline="yes" if local.is_file() else
                       ("built by `prepare`" if bench.startswith("tiny_") else "no: file missing"))
        else:
            from entrodrop_bench.sources import benchmark_dataset, in_local_cache

            source = hub_source(bench)
            dataset = benchmark_dataset(bench)
            cached = dataset is not None and in_local_cache(dataset, "dataset")
            needs_file = bench in EVALPLUS_DATASETS or bench in LIVECODEBENCH
            row.update(source=source, items=FULL_SIZES.get(bench),
                       offline="no: set eval.data_overrides" if needs_file else
                       ("yes (HF cache)" if cached else "no: needs the hub, or eval.data_overrides"))
        if bench in GROUP_TASKS and local is None:
            row["source"] += " [group: override per subtask]"
        rows.append(row)
    return rows


def format_rows(rows: list[dict]) -> str:
    """A plain-text table (fixed-width columns) of `describe`'s rows."""
    cols = ("benchmark", "harness", "source", "items", "metric", "max_gen_toks", "offline")
    cells = [[str(r.get(c) if r.get(c) is not None else "?") for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)
