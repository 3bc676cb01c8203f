"""Results store: validity rules, score cleaning, and resuming after a kill mid-write."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from helpers import eval_result

from entrodrop_bench.config import EvalConfig
from entrodrop_bench.evaluate.store import clean_score, is_valid, load_results, read_result, write_result
from entrodrop_bench.paths import Layout


def test_validity_and_scores(tmp_path):
    rec = eval_result("plain", 0, 4, "gsm8k", 0.5, checkpoint_sha256="a", task_config_hash="t")
    assert is_valid(rec, checkpoint_hash="a", task_config_hash="t")
    assert not is_valid(rec, checkpoint_hash="b", task_config_hash="t")
    assert not is_valid(rec, checkpoint_hash="a", task_config_hash="u")
    assert not is_valid(None, checkpoint_hash="a", task_config_hash="t")
    assert [clean_score(x) for x in (0.5, 1, float("nan"), 1.5, -0.1, None, True, "0.3")] == [0.5, 1.0, None, None, None, None, None, None]
    layout = Layout(tmp_path / "runs", tmp_path / "results")
    write_result(layout, rec)
    assert read_result(layout, "plain", 0, 4, "gsm8k") == rec
    (layout.store_dir("plain", 0, 4) / "notes.json").write_text("not json")
    (layout.eval_work_dir("plain", 0, 4)).mkdir(parents=True)
    (layout.eval_work_dir("plain", 0, 4) / "summary.json").write_text("{}")
    assert [r.benchmark for r in load_results(layout)] == ["gsm8k"]


def test_a_result_of_another_format_is_not_valid_and_is_skipped(tmp_path):
    """The evaluator re-evaluates (and overwrites) what this version cannot read; the report lists it as missing."""
    layout = Layout(tmp_path / "runs", tmp_path / "results")
    path = write_result(layout, eval_result("plain", 0, 4, "gsm8k", 0.5, checkpoint_sha256="a", task_config_hash="t"))
    path.write_text(json.dumps({**json.loads(path.read_text()), "format_version": 2}))
    assert read_result(layout, "plain", 0, 4, "gsm8k") is None and load_results(layout) == []


def test_killed_mid_write_resumes_without_double_counting(mini_config, mini_assets, tmp_path):
    from test_eval_lm_eval import make_checkpoint, tiny_benchmark_files

    from entrodrop_bench.evaluate.stage import evaluate_experiment

    files = tiny_benchmark_files(tmp_path / "bench")
    world = {k: str(files[k]) for k in ("tiny_math", "tiny_general")}
    config = mini_config().model_copy(update={"eval": EvalConfig(lm_eval_tasks=["tiny_math", "tiny_general"],
                                                                 batch_size=4, limit=3, max_gen_toks=8)})
    layout = Layout.from_config(config)
    make_checkpoint(mini_assets["model"], layout)
    cfg = tmp_path / "cfg.json"
    cfg.write_text(config.model_dump_json())
    script = (
        "import json\nfrom pathlib import Path\nfrom entrodrop_bench.config import ExperimentConfig\n"
        "from entrodrop_bench.paths import Layout\nfrom entrodrop_bench.evaluate.stage import evaluate_experiment\n"
        f"c = ExperimentConfig.model_validate_json(Path({str(cfg)!r}).read_text())\n"
        f"w = {{k: Path(v) for k, v in {world!r}.items()}}\n"
        "evaluate_experiment(c, Layout.from_config(c), world_benchmarks=w, progress=False)\n"
    )
    env = {**os.environ, "ENTRODROP_BENCH_FAULT": "before-replace:tiny_general.json"}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert [r.benchmark for r in load_results(layout)] == ["tiny_math"]
    summary = evaluate_experiment(config, layout, world_benchmarks={k: files[k] for k in world}, progress=False)
    assert (summary["evaluated"], summary["skipped"]) == (1, 1)
    store = layout.store_dir("plain", 0, 4)
    assert sorted(p.name for p in store.iterdir() if p.is_file() and p.suffix == ".json") == ["tiny_general.json", "tiny_math.json"]
    assert not [p for p in store.iterdir() if p.name.endswith(".tmp")]
    assert len(load_results(layout)) == 2 and read_result(layout, "plain", 0, 4, "tiny_math").score is not None
