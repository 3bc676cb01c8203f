"""Evaluation stage through real lm-eval on a tiny real checkpoint: tasks, store, idempotency, invalidation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import write_manifest

from entrodrop_bench.artifacts import EvalResult
from entrodrop_bench.paths import Layout


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def tiny_benchmark_files(root: Path) -> dict[str, Path]:
    """Small fixtures in the tiny world's schemas plus SVAMP / College Math / OlympiadBench schemas."""
    root.mkdir(parents=True, exist_ok=True)
    math = [{"question": f"Ada has {a} pens. She buys {b} more. How many pens does Ada have now?",
             "answer": f"{a} + {b} = {a + b}\n#### {a + b}"} for a, b in [(3, 4), (5, 2), (7, 8), (2, 9), (6, 6), (4, 1)]]
    general = [{"id": f"g{i}", "question": f"The {w} was", "choices": ["quiet.", "bright.", "old.", "new."], "label": i % 4}
               for i, w in enumerate(["river", "stone", "market", "winter", "song", "garden"])]
    svamp = [{"ID": f"chal-{i}", "Body": f"There are {a} apples in a box.", "Question": f"If {b} are eaten, how many remain?",
              "Equation": f"( {a} - {b} )", "Answer": float(a - b), "Type": "Subtraction"} for i, (a, b) in enumerate([(9, 4), (8, 3), (7, 7), (12, 5)])]
    college = [{"question": "Compute $\\int_0^1 2x\\,dx$.", "answer": "1"},
               {"question": "What is $\\frac{1}{2}+\\frac{1}{3}$?", "answer": "\\frac{5}{6}"},
               {"question": "Simplify $(x+1)^2-(x-1)^2$.", "answer": "4x"}]
    olympiad = [{"id": 1, "question": "Find all real $x$ with $x^2=4$.", "final_answer": ["$-2,2$"], "language": "English",
                 "subject": "Math", "answer_type": "Numerical"},
                {"id": 2, "question": "Compute $\\sqrt{2}\\cdot\\sqrt{8}$.", "final_answer": ["$4$"], "language": "English",
                 "subject": "Math", "answer_type": "Numerical"}]
    files = {"tiny_math": write_jsonl(root / "tiny_math.jsonl", math),
             "tiny_general": write_jsonl(root / "tiny_general.jsonl", general),
             "college_math": write_jsonl(root / "college_math.jsonl", college),
             "olympiadbench": write_jsonl(root / "olympiadbench.jsonl", olympiad)}
    files["svamp"] = root / "SVAMP.json"
    files["svamp"].write_text(json.dumps(svamp))
    return files


def make_checkpoint(model_dir: Path, layout: Layout, run: str = "plain", seed: int = 0, step: int = 4) -> Path:
    """A checkpoint folder in the training stage's on-disk format (HF model + tokenizer + manifest written last)."""
    ckpt = layout.checkpoint_dir(run, seed, step)
    shutil.copytree(model_dir, ckpt)
    write_manifest(ckpt, run=run, seed=seed, step=step, total_steps=8, target_epoch=step / 2, val_loss={"overall": 1.0})
    return ckpt


@pytest.fixture
def eval_setup(mini_config, mini_assets, tmp_path):
    files = tiny_benchmark_files(tmp_path / "bench")

    def make(tasks: list[str], **eval_overrides):
        from entrodrop_bench.config import EvalConfig

        ev = EvalConfig(**{"lm_eval_tasks": tasks, "batch_size": 4, "limit": 4, "max_gen_toks": 12,
                           "data_overrides": {k: str(v) for k, v in files.items() if k in tasks and not k.startswith("tiny_")},
                           **eval_overrides})
        config = mini_config().model_copy(update={"eval": ev})
        return config, Layout.from_config(config)

    world = {k: files[k] for k in ("tiny_math", "tiny_general")}
    return make, world, files


def test_tiny_checkpoint_through_lm_eval_and_store_idempotency(eval_setup, mini_assets, monkeypatch):
    from entrodrop_bench.evaluate import stage as evaluation
    from entrodrop_bench.evaluate.stage import evaluate_experiment
    from entrodrop_bench.evaluate.store import load_results

    make, world, files = eval_setup
    config, layout = make(["tiny_math", "tiny_general", "svamp"])
    make_checkpoint(mini_assets["model"], layout, step=4)
    make_checkpoint(mini_assets["model"], layout, step=8)
    summary = evaluate_experiment(config, layout, world_benchmarks=world, progress=False)
    assert (summary["evaluated"], summary["skipped"], summary["failed"]) == (6, 0, 0), summary

    results = load_results(layout)
    assert len(results) == 6
    for r in results:
        assert r.harness == "lm-eval" and r.format_version == 1
        assert r.primary_metric in r.metrics and 0.0 <= r.score <= 1.0
        prov = r.provenance
        assert len(prov.checkpoint_sha256) == 64 and prov.task_config_hash and prov.limit == 4
        assert prov.versions["lm_eval"] == "0.4.13" and prov.wall_time_s > 0
        assert prov.num_fewshot == 0 and prov.lm_eval_seeds["fewshot_seed"] == 1234
    by = {(r.step, r.benchmark): r for r in results}
    for r in results:  # per-item outcomes: lm-eval's doc ids, the same on every checkpoint, averaging to the score
        assert r.items is not None and r.items.ids == ["0", "1", "2", "3"], (r.benchmark, r.items)
        assert sum(r.items.scores) / len(r.items.scores) == pytest.approx(r.score, abs=1e-9)
        assert r.items.ids == by[(8, r.benchmark)].items.ids
    assert by[(4, "tiny_general")].primary_metric == "acc,none" and "acc_norm,none" in by[(4, "tiny_general")].metrics
    assert by[(4, "tiny_math")].primary_metric == "exact_match,strict-match"
    assert by[(4, "tiny_math")].target_epoch == 2.0 and by[(4, "tiny_math")].method == "plain"
    # One request cache per checkpoint, inside that checkpoint's work dir.
    for step in (4, 8):
        caches = list((layout.eval_work_dir("plain", 0, step) / "lm_cache").glob("*.db"))
        assert len(caches) == 1
    # Nothing but <benchmark>.json files at the store level (selection globs them).
    assert sorted(p.name for p in layout.store_dir("plain", 0, 4).glob("*.json")) == \
        ["svamp.json", "tiny_general.json", "tiny_math.json"]

    # Second run: nothing to do, and the model is never loaded.
    def boom(self):
        raise AssertionError("model loaded although every result is valid")

    monkeypatch.setattr(evaluation._Loaded, "model_and_tokenizer", boom)
    again = evaluate_experiment(config, layout, world_benchmarks=world, progress=False)
    assert (again["evaluated"], again["skipped"]) == (0, 6)
    # A result written before items were kept stays valid for its score...
    old = EvalResult.path(layout, "plain", 0, 4, "svamp")
    old.write_text(json.dumps({k: v for k, v in json.loads(old.read_text()).items() if k != "items"}))
    assert EvalResult.read(old).items is None
    assert evaluate_experiment(config, layout, world_benchmarks=world, progress=False)["skipped"] == 6
    monkeypatch.undo()
    # ...and is re-evaluated, alone, once a statistic needs items.
    needs, _ = make(["tiny_math", "tiny_general", "svamp"], per_item=True)
    redo = evaluate_experiment(needs, layout, world_benchmarks=world, progress=False)
    assert (redo["evaluated"], redo["skipped"]) == (1, 5) and EvalResult.read(old).items is not None

    # A changed task input (the svamp data file) invalidates only svamp, on every checkpoint.
    files["svamp"].write_text(json.dumps(json.loads(files["svamp"].read_text())[:3]))
    mtimes = {p: p.stat().st_mtime_ns for p in layout.runs_dir.glob("store/*/*/*/*.json")}
    third = evaluate_experiment(config, layout, world_benchmarks=world, progress=False)
    assert (third["evaluated"], third["skipped"]) == (2, 4)
    changed = {p.stem for p in mtimes if p.stat().st_mtime_ns != mtimes[p]}
    assert changed == {"svamp"}

    # Changed weights in one checkpoint invalidate only that checkpoint's results.
    import torch
    from safetensors.torch import load_file, save_file

    weights = layout.checkpoint_dir("plain", 0, 8) / "model.safetensors"
    tensors = load_file(weights)
    name = next(iter(tensors))
    tensors[name] = tensors[name] + torch.ones_like(tensors[name])
    save_file(tensors, weights, metadata={"format": "pt"})
    fourth = evaluate_experiment(config, layout, world_benchmarks=world, progress=False)
    assert (fourth["evaluated"], fourth["skipped"]) == (3, 3)


def test_interrupted_result_is_redone_and_corrupt_file_ignored(eval_setup, mini_assets):
    from entrodrop_bench.evaluate.stage import evaluate_experiment

    make, world, _ = eval_setup
    config, layout = make(["tiny_general"])
    make_checkpoint(mini_assets["model"], layout, step=4)
    assert evaluate_experiment(config, layout, world_benchmarks=world, progress=False)["evaluated"] == 1
    result = layout.result_file("plain", 0, 4, "tiny_general")
    result.write_text('{"format_version": 1, "provenance": ')  # a torn write from some older tool
    summary = evaluate_experiment(config, layout, world_benchmarks=world, progress=False)
    assert (summary["evaluated"], summary["skipped"]) == (1, 0)
    assert EvalResult.read(result).score is not None


def test_missing_world_file_and_bad_override_fail_before_compute(eval_setup, mini_assets, tmp_path):
    from entrodrop_bench.errors import UserError
    from entrodrop_bench.evaluate.stage import evaluate_experiment

    make, _, _ = eval_setup
    config, layout = make(["tiny_math"])
    make_checkpoint(mini_assets["model"], layout)
    with pytest.raises(UserError, match="tiny_math"):
        evaluate_experiment(config, layout, world_benchmarks=None, progress=False)
    config, _ = make(["mmlu"])
    config.eval.data_overrides["mmlu"] = str(tmp_path / "bench" / "tiny_general.jsonl")
    with pytest.raises(UserError, match="group"):  # a group cannot take one override file
        evaluate_experiment(config, layout, progress=False)
    config, _ = make(["humaneval"])
    with pytest.raises(UserError, match="humaneval"):
        evaluate_experiment(config, layout, progress=False)
    assert not list(layout.runs_dir.glob("store/*/*/*/*.json"))


def test_two_processes_do_not_duplicate_work(eval_setup, mini_assets, tmp_path):
    """Two concurrent eval processes on the same store: the per-checkpoint lock makes the second skip."""
    import subprocess
    import sys

    make, world, _ = eval_setup
    config, layout = make(["tiny_general"])
    make_checkpoint(mini_assets["model"], layout)
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(config.model_dump_json())
    script = (
        "import json,sys\nfrom pathlib import Path\nfrom entrodrop_bench.config import ExperimentConfig\n"
        "from entrodrop_bench.paths import Layout\nfrom entrodrop_bench.evaluate.stage import evaluate_experiment\n"
        f"c=ExperimentConfig.model_validate_json(Path({str(cfg_file)!r}).read_text())\n"
        f"w={{k: Path(v) for k, v in {json.dumps({k: str(v) for k, v in world.items()})}.items()}}\n"
        "print(json.dumps(evaluate_experiment(c, Layout.from_config(c), world_benchmarks=w, progress=False)))\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [json.loads(p.communicate(timeout=300)[0].strip().splitlines()[-1]) for p in procs]
    assert sorted(o["evaluated"] for o in outs) == [0, 1]
    assert sorted(o["skipped"] for o in outs) == [0, 1]


def test_item_outcomes_read_the_primary_metrics_filter_only():
    from entrodrop_bench.evaluate.lm_eval_runner import item_outcomes

    samples = {"gsm8k": [{"doc_id": d, "filter": f, "exact_match": float(f == "strict-match" and d == 1)}
                         for d in (0, 1, 2) for f in ("strict-match", "flexible-extract")]}
    assert item_outcomes(samples, "gsm8k", "exact_match,strict-match") == {"ids": ["0", "1", "2"],
                                                                          "scores": [0.0, 1.0, 0.0]}
    assert item_outcomes(samples, "gsm8k", "exact_match,flexible-extract")["scores"] == [0.0, 0.0, 0.0]
    # A group: ids carry the subtask, since doc ids restart in each one.
    group = {"mmlu_b": [{"doc_id": 0, "filter": "none", "acc": True}], "mmlu_a": [{"doc_id": 0, "filter": "none", "acc": 0}]}
    assert item_outcomes(group, "mmlu", "acc,none") == {"ids": ["mmlu_a/0", "mmlu_b/0"], "scores": [0.0, 1.0]}
    assert item_outcomes(samples, "gsm8k", "acc,none") is None and item_outcomes(samples, "gsm8k", "pass@1") is None


def test_items_that_do_not_average_to_the_score_are_refused():
    from entrodrop_bench.evaluate.stage import _item_outcomes

    assert _item_outcomes("b", {"ids": ["a", "b"], "scores": [1.0, 0.0]}, 0.5).ids == ["a", "b"]
    with pytest.raises(RuntimeError, match="mean of 2 per-item scores"):
        _item_outcomes("b", {"ids": ["a", "b"], "scores": [1.0, 1.0]}, 0.5)
    with pytest.raises(RuntimeError, match="repeat an item id"):
        _item_outcomes("b", {"ids": ["a", "a"], "scores": [1.0, 0.0]}, 0.5)
