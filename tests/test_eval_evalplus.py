"""Code benchmarks: generation by the harness, evalplus evaluation in the sandbox, results in the store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from entrodrop_bench.config import EvalConfig
from entrodrop_bench.paths import Layout


def code_problems() -> list[dict]:
    """Three tiny problems in evalplus's HumanEval schema (as the tiny world writes tiny_code)."""
    def problem(i: int, name: str, args: str, doc: str, body: str, inputs: list, plus: list) -> dict:
        return {"task_id": f"tiny/{i}", "prompt": f'def {name}({args}):\n    """{doc}"""\n', "entry_point": name,
                "canonical_solution": body, "base_input": inputs, "plus_input": plus, "atol": 0, "contract": ""}

    return [
        problem(0, "add_two", "x", "Return x plus two.", "    return x + 2\n", [[1], [5]], [[-3], [100]]),
        problem(1, "count_a", "s", "Count letters a in s.", "    return s.count('a')\n", [["banana"], [""]], [["aaa"]]),
        problem(2, "first_or_zero", "xs", "First item, or 0 when empty.", "    return xs[0] if xs else 0\n",
                [[[4, 5]], [[]]], [[[9]]]),
    ]


@pytest.fixture
def code_file(tmp_path) -> Path:
    path = tmp_path / "tiny_code.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in code_problems()))
    return path


def test_sanitize_and_truncate_generation():
    from entrodrop_bench.evaluation.evalplus_runner import _truncate, make_samples

    assert _truncate("    return x + 2\n\ndef other():\n    pass") == "    return x + 2\n"
    assert _truncate("    return 1\nprint(add_two(3))") == "    return 1"
    p = code_problems()[0]
    sample = make_samples([p], ["    return x + 2\n\nimport os\nos.system('true')\n"])[0]
    assert "def add_two" in sample["solution"] and "os.system" not in sample["solution"]


def test_hostile_solutions_fail_and_canonical_still_pass(code_file, tmp_path):
    """Hostile code inside evalplus's own test processes: contained by the sandbox around evalplus."""
    from entrodrop_bench.evaluation.evalplus_runner import evaluate_samples
    from entrodrop_bench.evaluation.sandbox import isolation_level

    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    probs = code_problems()
    hostile_delete = probs[1]["prompt"] + (
        f"    import io, posix\n    posix.unlink({str(victim)!r})\n    io.open({str(victim)!r} + '.x', 'w').write('x')\n"
        "    return s.count('a')\n")
    hostile_loop = probs[2]["prompt"] + "    while True:\n        pass\n"
    samples = [{"task_id": probs[0]["task_id"], "solution": probs[0]["prompt"] + probs[0]["canonical_solution"]},
               {"task_id": probs[1]["task_id"], "solution": hostile_delete},
               {"task_id": probs[2]["task_id"], "solution": hostile_loop}]
    out = evaluate_samples(code_file, samples, tmp_path / "work", cache_dir=tmp_path / "cache")
    assert out["per_task"]["tiny/0"] == {"base": "pass", "plus": "pass"}
    assert out["per_task"]["tiny/1"]["base"] == "fail" and out["per_task"]["tiny/2"]["base"] != "pass"
    assert out["pass@1"] == pytest.approx(1 / 3)
    if isolation_level() == "bwrap":  # the documented fallbacks do not protect the file system
        assert victim.read_text() == "keep me" and not Path(f"{victim}.x").exists()
    # A second run in the same folder re-evaluates (no stale `_eval_results.json` reuse, no Y/N prompt).
    samples[2] = {"task_id": probs[2]["task_id"], "solution": probs[2]["prompt"] + probs[2]["canonical_solution"]}
    assert evaluate_samples(code_file, samples, tmp_path / "work", cache_dir=tmp_path / "cache")["pass@1"] == pytest.approx(2 / 3)


def test_tiny_checkpoint_through_evalplus_into_store(mini_config, mini_assets, code_file, monkeypatch):
    from test_eval_lm_eval import make_checkpoint

    from entrodrop_bench import evaluation
    from entrodrop_bench.evaluation import evaluate_experiment, load_results

    ev = EvalConfig(evalplus_datasets=["tiny_code"], batch_size=4, limit=2, max_gen_toks=16)
    config = mini_config().model_copy(update={"eval": ev})
    layout = Layout.from_config(config)
    make_checkpoint(mini_assets["model"], layout, step=4)
    world = {"tiny_code": code_file}
    summary = evaluate_experiment(config, layout, world_benchmarks=world, progress=False)
    assert (summary["evaluated"], summary["failed"]) == (1, 0), summary
    (result,) = load_results(layout)
    assert result["harness"] == "evalplus" and result["primary_metric"] == "pass@1"
    assert 0.0 <= result["score"] <= 1.0 and "base_pass@1" in result["metrics"]
    assert result["provenance"]["n_samples"] == 2  # limit: a 2-task subset file, samples cover every task
    samples = layout.eval_work_dir("plain", 0, 4) / "evalplus" / "tiny_code" / "eval" / "samples.jsonl"
    assert [json.loads(line)["task_id"] for line in samples.read_text().splitlines()] == ["tiny/0", "tiny/1"]

    monkeypatch.setattr(evaluation._Loaded, "model_and_tokenizer", lambda self: (_ for _ in ()).throw(AssertionError))
    again = evaluate_experiment(config, layout, world_benchmarks=world, progress=False)
    assert (again["evaluated"], again["skipped"]) == (0, 1)
