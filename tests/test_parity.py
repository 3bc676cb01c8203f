"""Benchmarks scored as the paper's evaluator (OpenCompass) and the benchmarks' own harnesses score them.

One test per parity finding (tasks/README.md, "Parity with OpenCompass"): the full SVAMP set, evalplus's MBPP
stop strings, LiveCodeBench's base-model prompt, IFEval's generation length and offline NLTK data,
math_verify answer checking, lm-eval's task hash in provenance, the CollegeMath hub id; plus the
`benchmarks` command. Real data from ../shared/benchmarks where it exists (skipped when absent).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import load_module_from_file
from test_eval_real_data import SHARED, GoldLM, needs_shared, score

from entrodrop_bench.evaluate.lm_eval_runner import run_lm_eval

REPO = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- SVAMP: all 1,000 problems
def _svamp_records() -> list[dict]:
    return json.loads((SHARED / "SVAMP.json").read_text())


@needs_shared
def test_svamp_from_the_hub_reads_all_1000_problems(tmp_path, monkeypatch):
    """ChilleD/SVAMP splits SVAMP into train (700) + test (300); the task must evaluate all 1,000."""
    import datasets

    records = _svamp_records()
    hub = datasets.DatasetDict({"train": datasets.Dataset.from_list(records[:700]),
                                "test": datasets.Dataset.from_list(records[700:])})
    asked: list[str] = []

    def fake_hub(path, *args, **kwargs):
        asked.append(path)
        return hub

    monkeypatch.setattr(datasets, "load_dataset", fake_hub)
    out = run_lm_eval(GoldLM(lambda d: f" {d['Body']} The answer is {d['Answer']}."), "svamp", None,
                      work_dir=tmp_path, cache_key="hub", batch_size=16, limit=None, num_fewshot=None, max_gen_toks=32)
    assert asked == ["ChilleD/SVAMP"]
    assert out["n_samples"]["effective"] == 1000 and out["metrics"]["exact_match,none"] == 1.0


@needs_shared
def test_svamp_original_file_gold_100_shuffled_near_chance_opencompass_rule(tmp_path):
    """The original SVAMP.json through the override; scored by OpenCompass's rule (last number, 1e-6)."""
    records = _svamp_records()
    data = SHARED / "SVAMP.json"
    # A chain of thought whose last number is the answer (OpenCompass's exemplar style), then a new question.
    gold = score(tmp_path, "svamp", data, lambda d: f" {d['Equation']} = {d['Answer']}. The answer is {d['Answer']}."
                                                    "\nQuestion: 7 + 8 = 15")
    assert gold["exact_match,none"] == 1.0
    values = [r["Answer"] for r in records]
    random.Random(1).shuffle(values)
    wrong = {r["ID"]: v for r, v in zip(records, values)}
    m = score(tmp_path / "w", "svamp", data, lambda d: f" The answer is {wrong[d['ID']]}.")
    assert m["exact_match,none"] < 0.1
    # "answer is X" is no longer preferred over the last number (OpenCompass takes the last number).
    m = score(tmp_path / "last", "svamp", data, lambda d: f" The answer is {d['Answer']}, not {d['Answer'] + 1}.")
    assert m["exact_match,none"] == 0.0


# --------------------------------------------------------------------------- MBPP: evalplus's stop strings
def mbpp_problems() -> list[dict]:
    """MBPP-style problems in evalplus's MBPP+ schema: a docstring prompt with one test, solved by code that
    starts with an import or a helper before the entry point (ids outside MBPP's range: no special oracles)."""
    def problem(i: int, text: str, test: str, entry: str, solution: str, inputs: list) -> dict:
        return {"task_id": f"Mbpp/{900 + i}", "prompt": f'"""\n{text}\n{test}\n"""\n', "entry_point": entry,
                "canonical_solution": solution, "base_input": inputs, "plus_input": [], "atol": 0, "contract": ""}

    return [
        problem(1, "Write a python function to identify non-prime numbers.", "assert is_not_prime(2) == False",
                "is_not_prime",
                "import math\ndef is_not_prime(n):\n    if n < 2:\n        return True\n"
                "    for i in range(2, int(math.sqrt(n)) + 1):\n        if n % i == 0:\n            return True\n"
                "    return False\n", [[2], [10], [35], [37]]),
        problem(2, "Write a function to find the n largest integers from a given list of numbers, returned in "
                   "descending order.", "assert heap_queue_largest([25, 35, 22, 85, 14], 2) == [85, 35]",
                "heap_queue_largest",
                "import heapq as hq\ndef heap_queue_largest(nums, n):\n    return hq.nlargest(n, nums)\n",
                [[[25, 35, 22, 85, 14, 65, 75, 22, 58], 3], [[1, 2, 3], 1]]),
        problem(3, "Write a function to count the vowels of a string.", "assert count_vowels('python') == 1",
                "count_vowels",
                "def is_vowel(ch):\n    return ch.lower() in 'aeiou'\n\n\ndef count_vowels(s):\n"
                "    return sum(1 for ch in s if is_vowel(ch))\n", [["python"], ["AEIOU and y"], [""]]),
    ]


def test_mbpp_stops_keep_imports_and_helpers():
    from entrodrop_bench.evaluate.evalplus_runner import _truncate, stop_sequences

    for p in mbpp_problems():
        generated = p["canonical_solution"] + f"\nassert {p['entry_point']}(1) is not None\n\"\"\"\nmore text"
        assert _truncate(generated, stop_sequences("mbpp")).rstrip() == p["canonical_solution"].rstrip()
    assert stop_sequences("mbpp")[-2:] == ('\n"""', "\nassert")
    # HumanEval keeps evalplus's HumanEval list; the tiny world's tiny_code keeps the function-end list.
    assert "\nimport " in stop_sequences("humaneval") and "\n#" in stop_sequences("tiny_code")


def test_mbpp_solutions_with_imports_and_helpers_pass_through_evalplus(tmp_path, monkeypatch):
    """The harness path: generation (its output fixed here) cut at MBPP's stops, sanitized, run by evalplus."""
    from entrodrop_bench.evaluate import evalplus_runner, sandbox

    if sandbox.isolation_level() not in sandbox.LEVELS:
        pytest.skip(f"no usable sandbox here (`{sandbox.isolation_level()}`): apt-get install bubblewrap")

    problems = mbpp_problems()
    data = tmp_path / "mbpp.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in problems))
    by_prompt = {p["prompt"]: p for p in problems}

    def generate(model, tokenizer, prompts, *, batch_size, max_new_tokens, stop):
        raw = [by_prompt[q]["canonical_solution"] + "\nassert True\n" for q in prompts]
        return [evalplus_runner._truncate(text, stop) for text in raw]

    monkeypatch.setattr(evalplus_runner, "generate", generate)
    out = evalplus_runner.run_evalplus(None, None, "mbpp", data, work_dir=tmp_path / "w", batch_size=4, limit=None,
                                       max_gen_toks=64, cache_dir=tmp_path / "cache",
                                       allow_weak=sandbox.isolation_level() != "bwrap")  # the machine's level, as a config may
    assert out["n_tasks"] == 3 and out["pass@1"] == 1.0, out


# --------------------------------------------------------------------------- LiveCodeBench: base-model prompt
FUNC_EXAMPLE = {"question": "Return the larger of a and b.\n", "sample_code": "class Solution:\n    def bigger(self, a: int, b: int) -> int:\n        ",
                "answer": "class Solution:\n    def bigger(self, a: int, b: int) -> int:\n        return max(a, b)"}
STDIN_EXAMPLE = {"question": "Read a line and print it reversed.\n", "answer": "print(input()[::-1])"}


def test_livecodebench_prompt_matches_its_base_model_template(tmp_path):
    from test_eval_livecodebench import lcb_rows

    from entrodrop_bench.evaluate import livecodebench as lcb

    data = tmp_path / "test.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in lcb_rows()))
    # LiveCodeBench's few-shot files (lcb_runner/prompts/few_shot_examples/generation/) beside the data.
    (tmp_path / "func.json").write_text(json.dumps([FUNC_EXAMPLE, {"question": "unused", "sample_code": "", "answer": ""}]))
    (tmp_path / "stdin.json").write_text(json.dumps([STDIN_EXAMPLE]))
    exemplars, source = lcb.load_exemplars(data)
    assert source == "livecodebench"
    stdin_problem, _, functional = lcb.read_problems(data)
    # GenericBase: "### Question\n{q}\n\n" [+ "### Starter Code\n{code}\n\n"] + "### Answer\n\n" + answer [+ "\n\n"].
    assert lcb.prompt(stdin_problem, exemplars) == (
        "### Question\nRead a line and print it reversed.\n\n\n"
        "### Answer\n\nprint(input()[::-1])\n\n"
        "### Question\nRead two integers A and B and print A+B.\n\n"
        "### Answer\n\n")
    assert lcb.prompt(functional, exemplars) == (
        "### Question\nReturn the larger of a and b.\n\n\n"
        "### Starter Code\nclass Solution:\n    def bigger(self, a: int, b: int) -> int:\n        \n\n"
        "### Answer\n\nclass Solution:\n    def bigger(self, a: int, b: int) -> int:\n        return max(a, b)\n\n"
        "### Question\nReturn the sum of the k largest numbers.\n\n"
        "### Starter Code\nclass Solution:\n    def maxSum(self, nums: List[int], k: int) -> int:\n        \n\n"
        "### Answer\n\n")
    # Base-model extraction: the completion up to the "###" stop, stripped; no starter code prepended.
    assert lcb.extract_code(functional, "\nclass Solution:\n    pass\n\n### Question\nnext") == "class Solution:\n    pass"
    assert lcb.STOP == ("###",)
    assert "May 2023 and March 2024" in " ".join(lcb.__doc__.split())
    # Without LiveCodeBench's files: the same template around the project's own example, and it says so.
    assert lcb.load_exemplars(tmp_path / "elsewhere" / "test.jsonl")[1] == "project"


# --------------------------------------------------------------------------- IFEval: 1,280 tokens, offline NLTK
IFEVAL_DOCS = [
    {"key": 1, "prompt": "Describe a river in fewer than 3 sentences.",
     "instruction_id_list": ["length_constraints:number_sentences"],
     "kwargs": [{"relation": "less than", "num_sentences": 3}]},
    {"key": 2, "prompt": "Write about a stone in at least 4 sentences.",
     "instruction_id_list": ["length_constraints:number_sentences"],
     "kwargs": [{"relation": "at least", "num_sentences": 4}]},
]
IFEVAL_ANSWERS = {1: "The river runs fast. Mr. Smith watched it.",
                  2: "The stone is grey. It is cold. Dr. Jones found it. It sits by the road."}


def test_ifeval_keeps_its_1280_tokens_and_runs_offline(tmp_path):
    from entrodrop_bench.evaluate.benchmarks import effective_max_gen_toks
    from entrodrop_bench.evaluate.nltk_data import ensure_punkt_tab

    assert effective_max_gen_toks("ifeval", 1024) == 1280
    assert effective_max_gen_toks("gsm8k", 1024) == 1024 and effective_max_gen_toks("tiny_math", 48) == 48
    ensure_punkt_tab()
    data = tmp_path / "ifeval.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in IFEVAL_DOCS))
    seen: list[dict] = []

    class Recording(GoldLM):
        def generate_until(self, requests, disable_tqdm: bool = False):
            seen.extend(r.args[1] for r in requests)
            return super().generate_until(requests)

    good = run_lm_eval(Recording(lambda d: IFEVAL_ANSWERS[d["key"]]), "ifeval", data, work_dir=tmp_path / "g",
                       cache_key="g", batch_size=2, limit=None, num_fewshot=None,
                       max_gen_toks=effective_max_gen_toks("ifeval", 1024))
    assert good["metrics"]["prompt_level_strict_acc,none"] == 1.0
    assert {s["max_gen_toks"] for s in seen} == {1280}
    swapped = run_lm_eval(GoldLM(lambda d: IFEVAL_ANSWERS[3 - d["key"]]), "ifeval", data, work_dir=tmp_path / "w",
                          cache_key="w", batch_size=2, limit=None, num_fewshot=None, max_gen_toks=1280)
    assert swapped["metrics"]["prompt_level_strict_acc,none"] == 0.0


def test_setup_script_writes_punkt_tab_that_nltk_loads_offline(tmp_path):
    """`make setup`'s step, into a fresh NLTK_DATA; ifeval's sentence counter then works with no network."""
    env = {**os.environ, "NLTK_DATA": str(tmp_path / "nltk"), "HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, "-m", "entrodrop_bench.evaluate.nltk_data"], env=env, check=True,
                   capture_output=True, timeout=120)
    code = ("import nltk\nnltk.download = lambda *a, **k: (_ for _ in ()).throw(SystemExit('network used'))\n"
            "from lm_eval.tasks.ifeval import instructions_util as u\n"
            "print(u.count_sentences('Mr. Smith went to Washington. He arrived at 5 p.m. on Monday. Then he left!'))\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-800:]
    assert out.stdout.strip().splitlines()[-1] == "3"


# --------------------------------------------------------------------------- math_verify answer checking
@needs_shared
def test_math_verify_scores_real_gold_answers_100_and_shuffled_near_0(tmp_path):
    """GSM8K's real solutions, written as boxed answers, through college_math's extraction and check."""
    rows = [json.loads(line) for line in (SHARED / "gsm8k_test.jsonl").read_text().splitlines()][:300]
    data = tmp_path / "college.jsonl"
    data.write_text("".join(json.dumps({"question": r["question"], "answer": r["answer"].split("####")[-1].strip()})
                            + "\n" for r in rows))
    steps = {r["question"]: r["answer"].split("####")[0] for r in rows}

    def solution(doc: dict, answer: str) -> str:
        return f" {steps[doc['question']]}So the final answer is $\\boxed{{{answer}}}$."

    m = score(tmp_path, "college_math", data, lambda d: solution(d, d["answer"]))
    assert m["exact_match,none"] == 1.0
    answers = [r["answer"].split("####")[-1].strip() for r in rows]
    random.Random(0).shuffle(answers)
    wrong = {r["question"]: a for r, a in zip(rows, answers)}
    m = score(tmp_path / "w", "college_math", data, lambda d: solution(d, wrong[d["question"]]))
    assert m["exact_match,none"] < 0.05


@pytest.fixture
def utils_tasks():
    """tasks/utils.py, loaded from its file as lm-eval loads a task folder's helpers."""
    return load_module_from_file("tasks/utils.py", "tasks_utils")


def test_math_verify_equivalences_the_hand_written_checker_missed(utils_tasks):
    doc = {"answer": "\\frac{1}{2}"}
    assert utils_tasks.math_process_results(doc, ["Thus $x = \\boxed{0.5}$."])["exact_match"] == 1
    assert utils_tasks.math_process_results({"answer": "[1, 3)"}, ["The set is $\\boxed{[1,3)}$"])["exact_match"] == 1
    assert utils_tasks.math_process_results({"answer": "[1, 3)"}, ["The set is $\\boxed{(1,3]}$"])["exact_match"] == 0
    assert utils_tasks.math_process_results({"answer": "2\\sqrt{2}"}, ["so \\boxed{\\sqrt{8}}"])["exact_match"] == 1


# --------------------------------------------------------------------------- provenance: lm-eval's task hash
def test_result_carries_lm_evals_own_task_hash(tmp_path, monkeypatch):
    """The hash equals what lm-eval's EvaluationTracker writes as task_hashes for the same run."""
    import lm_eval
    from lm_eval.loggers import EvaluationTracker
    from test_eval_lm_eval import tiny_benchmark_files

    files = tiny_benchmark_files(tmp_path / "bench")
    captured: dict = {}
    original = lm_eval.simple_evaluate

    def capture(*args, **kwargs):
        captured.update(original(*args, **kwargs))
        return captured

    monkeypatch.setattr(lm_eval, "simple_evaluate", capture)
    out = run_lm_eval(GoldLM(lambda d: d["answer"]), "tiny_math", files["tiny_math"], work_dir=tmp_path / "w",
                      cache_key="h", batch_size=4, limit=None, num_fewshot=None, max_gen_toks=16)
    tracker = EvaluationTracker(output_path=str(tmp_path / "tracker"))
    results = {k: v for k, v in captured.items() if k != "samples"}
    tracker.save_results_aggregated(results=results, samples=captured["samples"])
    assert out["task_hash"] is not None and len(out["task_hash"]) == 64
    assert out["task_hash"] == results["task_hashes"]["tiny_math"]


# --------------------------------------------------------------------------- CollegeMath hub id
def test_college_math_reads_the_copy_public_evaluators_use():
    from entrodrop_bench.catalog import hub_source

    assert hub_source("college_math") == "di-zhang-fdu/College_Math_Test (test)"
    assert "qq8933/College_Math_Test" in (REPO / "tasks" / "college_math.yaml").read_text()  # the documented alternative


# --------------------------------------------------------------------------- `entrodrop-bench benchmarks`
def test_benchmarks_command_lists_every_benchmark(capsys):
    from entrodrop_bench.cli import main

    overrides = []
    if SHARED is not None:
        overrides = [f"eval.data_overrides.svamp={SHARED / 'SVAMP.json'}"]
    assert main(["benchmarks", "configs/qwen3-0.6b-math.yaml", *overrides, "--json"]) == 0
    rows = {r["benchmark"]: r for r in json.loads(capsys.readouterr().out)}
    assert list(rows) == ["svamp", "gsm8k", "minerva_math", "college_math", "olympiadbench", "hellaswag",
                          "arc_challenge", "piqa", "mmlu", "ifeval"]
    assert rows["ifeval"]["max_gen_toks"] == 1280 and rows["hellaswag"]["max_gen_toks"] == "-"
    assert rows["gsm8k"]["items"] == 1319 and rows["gsm8k"]["metric"] == "exact_match,none"
    assert rows["gsm8k"]["offline"].startswith("no")
    if SHARED is not None:
        assert rows["svamp"]["items"] == 1000 and rows["svamp"]["offline"] == "yes"
    assert main(["benchmarks", "configs/qwen3-0.6b-code.yaml"]) == 0
    text = capsys.readouterr().out
    for name in ("humaneval", "mbpp", "livecodebench", "ifeval"):
        assert f"\n{name} " in text
    assert "release_v1" in text
