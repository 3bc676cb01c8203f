"""Gold answers through the real tasks' prompts, filters and metrics score 100%; wrong ones score ~0.

A tiny lm-eval LM returns each document's gold answer (or a shuffled one) as its generation, so the
task YAMLs, answer extraction and metrics are exercised exactly as in a real evaluation. Real-data tests
use ../shared/benchmarks and skip when it is absent.
"""

from __future__ import annotations

import gzip
import json
import random
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from lm_eval.api.model import LM

from entrodrop_bench.evaluate.lm_eval_runner import run_lm_eval

REPO = Path(__file__).resolve().parent.parent
SHARED = next((p for p in (REPO.parent / "shared" / "benchmarks", Path("/work/shared/benchmarks")) if p.is_dir()), None)
needs_shared = pytest.mark.skipif(SHARED is None, reason="../shared/benchmarks is absent")


class GoldLM(LM):
    """Generates `answer(doc)` for each request; for multiple choice, prefers choice `doc['label']`."""

    def __init__(self, answer: Callable[[dict], str]):
        super().__init__()
        self.answer = answer

    def generate_until(self, requests, disable_tqdm: bool = False):
        return [self.answer(r.doc) for r in requests]

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        return [(0.0 if r.idx == r.doc["label"] else -5.0, False) for r in requests]

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        return [0.0 for _ in requests]


def score(tmp_path: Path, benchmark: str, data: Path, answer: Callable[[dict], str], **kw) -> dict:
    out = run_lm_eval(GoldLM(answer), benchmark, data, work_dir=tmp_path / benchmark, cache_key="gold", batch_size=8,
                      limit=kw.get("limit"), num_fewshot=kw.get("num_fewshot"), max_gen_toks=64)
    return out["metrics"]


def shuffled(records: list[dict], key: str, seed: int = 0) -> dict[str, str]:
    """question -> another record's `key` (a derangement-ish permutation)."""
    values = [r[key] for r in records]
    random.Random(seed).shuffle(values)
    return {r["question"]: v for r, v in zip(records, values)}


# --------------------------------------------------------------------------- fixtures in our schemas
def test_tiny_tasks_gold_and_wrong(tmp_path):
    from test_eval_lm_eval import tiny_benchmark_files

    files = tiny_benchmark_files(tmp_path / "bench")
    assert score(tmp_path, "tiny_math", files["tiny_math"], lambda d: d["answer"])["exact_match,strict-match"] == 1.0
    assert score(tmp_path / "w", "tiny_math", files["tiny_math"], lambda d: "1 + 1 = 2\n#### 999")["exact_match,strict-match"] == 0.0
    m = score(tmp_path, "tiny_general", files["tiny_general"], lambda d: "")
    assert m["acc,none"] == 1.0 and m["acc_norm,none"] == 1.0


def test_open_ended_math_extraction_and_equivalence(tmp_path):
    from test_eval_lm_eval import tiny_benchmark_files

    files = tiny_benchmark_files(tmp_path / "bench")
    # Same values written differently: \dfrac, a trailing sentence, a symbolic form, "answer is" fallback.
    college = {"1": "Integrating gives $x^2$ from 0 to 1, so the answer is 1.",
               "\\frac{5}{6}": "The sum is $\\boxed{\\dfrac{5}{6}}$.",
               "4x": "Expanding, we get \\boxed{2x + 2x}"}
    m = score(tmp_path, "college_math", files["college_math"], lambda d: college[d["answer"]])
    assert m["exact_match,none"] == 1.0
    m = score(tmp_path / "w", "college_math", files["college_math"], lambda d: "\\boxed{7}")
    assert m["exact_match,none"] == 0.0
    olymp = {"$-2,2$": "So $x=\\pm 2$, i.e. \\boxed{-2, 2}", "$4$": "We get $\\sqrt{16}=\\boxed{4}$"}
    assert score(tmp_path, "olympiadbench", files["olympiadbench"], lambda d: olymp[d["final_answer"][0]])["exact_match,none"] == 1.0
    assert score(tmp_path / "w", "olympiadbench", files["olympiadbench"], lambda d: "\\boxed{2}")["exact_match,none"] == 0.0


# --------------------------------------------------------------------------- real data
def cot_answer(doc: dict, final: str | None = None) -> str:
    """A GSM8K solution written as the prompt's exemplars answer: worked steps, then "The answer is N"."""
    steps, gold = doc["answer"].split("####")
    return " " + re.sub(r"<<[^>]*>>", "", steps).strip() + f"\nThe answer is {final or gold.strip().replace(',', '')}\n"


@needs_shared
def test_gsm8k_gold_solutions_score_100_shuffled_near_0(tmp_path):
    """The real path: OpenCompass's 4-shot prompt from the local test + train files; gold in the exemplars'
    format scores 100%, another item's answer ~0."""
    data = SHARED / "gsm8k_test.jsonl"
    records = [json.loads(line) for line in data.read_text().splitlines()]
    m = score(tmp_path, "gsm8k", data, cot_answer)
    assert m["exact_match,none"] == 1.0
    wrong = {r["question"]: w.split("####")[-1].strip().replace(",", "") for r, w in
             zip(records, shuffled(records, "answer").values())}
    m = score(tmp_path / "w", "gsm8k", data, lambda d: cot_answer(d, wrong[d["question"]]))
    assert m["exact_match,none"] < 0.05


@needs_shared
def test_humaneval_canonical_pass_and_empty_fail_through_evalplus(tmp_path):
    from entrodrop_bench.evaluate import sandbox
    from entrodrop_bench.evaluate.evalplus_runner import evaluate_samples, humaneval_to_evalplus

    level = sandbox.isolation_level()
    if level not in sandbox.LEVELS:
        pytest.skip(f"no usable sandbox here (`{level}`): apt-get install bubblewrap")
    weak_ok = level != "bwrap"  # as a config accepting the fallback would

    with gzip.open(SHARED / "HumanEval.jsonl.gz", "rt") as fh:
        raw = [json.loads(line) for line in fh]
    problems = humaneval_to_evalplus(raw)
    assert len(problems) >= 150  # tasks whose tests call the candidate with literal arguments
    data = tmp_path / "humaneval.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in problems))
    good = evaluate_samples(data, [{"task_id": p["task_id"], "solution": p["prompt"] + p["canonical_solution"]}
                                   for p in problems], tmp_path / "good", cache_dir=tmp_path / "cache",
                            allow_weak=weak_ok)
    assert good["n_tasks"] == len(problems) and good["pass@1"] == 1.0 and good["base_pass@1"] == 1.0
    empty = evaluate_samples(data, [{"task_id": p["task_id"], "solution": p["prompt"]} for p in problems],
                             tmp_path / "empty", cache_dir=tmp_path / "cache", allow_weak=weak_ok)
    assert empty["pass@1"] == 0.0


def test_builtin_multiple_choice_task_on_local_file(tmp_path):
    """A built-in multiple-choice task (arc_easy) runs offline from a local file."""
    rows = [{"id": f"q{i}", "question": f"Which number is {i}?", "answerKey": "ABCD"[i % 4],
             "choices": {"text": ["zero", "one", "two", "three"], "label": ["A", "B", "C", "D"]}} for i in range(4)]
    data = tmp_path / "arc_test.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))

    class ArcGold(GoldLM):
        def loglikelihood(self, requests, disable_tqdm: bool = False):
            return [(0.0 if "ABCD"[r.idx] == r.doc["answerKey"] else -5.0, False) for r in requests]

    out = run_lm_eval(ArcGold(lambda d: ""), "arc_easy", data, work_dir=tmp_path / "w", cache_key="gold",
                      batch_size=4, limit=None, num_fewshot=0, max_gen_toks=8)
    assert out["metrics"]["acc,none"] == 1.0 and out["metrics"]["acc_norm,none"] == 1.0


def test_fewshot_split_from_sibling_file_or_evaluated_split(tmp_path):
    from entrodrop_bench.evaluate.lm_eval_runner import _local_splits

    splits = {"training_split": "train", "fewshot_split": "train", "test_split": "test"}
    test = tmp_path / "gsm8k_test.jsonl"
    test.write_text("{}\n")
    alone = _local_splits(splits, test)
    assert alone["dataset_kwargs"]["data_files"] == {"test": str(test)} and alone["fewshot_split"] == "test"
    (tmp_path / "gsm8k_train.jsonl").write_text("{}\n")
    both = _local_splits(splits, test)
    assert both["dataset_kwargs"]["data_files"]["train"] == str(tmp_path / "gsm8k_train.jsonl")
    assert "fewshot_split" not in both


@needs_shared
def test_gsm8k_four_cot_exemplars_come_from_the_train_file(tmp_path):
    """With the sibling gsm8k_train.jsonl, gsm8k runs offline with OpenCompass's four exemplars (GSM8K train items,
    no calculator annotations, "The answer is N"), each prompt ending in the question's "Answer:"."""
    data = SHARED / "gsm8k_test.jsonl"
    seen: list[str] = []

    class Recording(GoldLM):
        def generate_until(self, requests, disable_tqdm: bool = False):
            seen.extend(r.args[0] for r in requests)
            return super().generate_until(requests)

    out = run_lm_eval(Recording(cot_answer), "gsm8k", data, work_dir=tmp_path, cache_key="g", batch_size=8, limit=20,
                      num_fewshot=None, max_gen_toks=64)
    assert out["metrics"]["exact_match,none"] == 1.0
    train_questions = {json.loads(line)["question"] for line in (SHARED / "gsm8k_train.jsonl").read_text().splitlines()}
    shots = seen[0].split("Question: ")[1:]
    assert len(shots) == 5 and all(s.split("\nLet's think")[0] in train_questions for s in shots[:4])
    assert seen[0].count("The answer is ") == 4 and "<<" not in seen[0] and "####" not in seen[0]
    assert seen[0].endswith("\nLet's think step by step\nAnswer:")


def test_gsm8k_needs_its_train_file_offline(tmp_path):
    data = tmp_path / "gsm8k_test.jsonl"
    data.write_text(json.dumps({"question": "1+1?", "answer": "2\n#### 2"}) + "\n")
    with pytest.raises(Exception, match="gsm8k_train.jsonl"):
        score(tmp_path, "gsm8k", data, lambda d: " 2")


def test_math_from_a_local_file_gold_100_shuffled_0(tmp_path):
    """MATH (lm-eval's Minerva task) from a local file in the hendrycks_math schema: gold written in the Minerva
    exemplars' format scores 100% on the primary metric, another item's answer 0."""
    import sys

    sys.path.insert(0, str(REPO / "tests" / "opencompass"))
    from items import MATH_ITEMS, math_answer, others

    data = tmp_path / "algebra_test.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in MATH_ITEMS))
    answers = {r["problem"]: math_answer(r["solution"]) for r in MATH_ITEMS}
    wrong = dict(zip(answers, others(list(answers.values()))))
    fmt = "We work it out.\nFinal Answer: The final answer is ${}$. I hope it is correct."
    m = score(tmp_path, "minerva_math_algebra", data, lambda d: fmt.format(answers[d["problem"]]))
    assert m["math_verify,none"] == 1.0 and m["exact_match,none"] >= 0.9
    m = score(tmp_path / "w", "minerva_math_algebra", data, lambda d: fmt.format(wrong[d["problem"]]))
    assert m["math_verify,none"] == 0.0


class ChoiceLM(GoldLM):
    """Prefers the choice `pick(doc)` (the gold one, or a wrong one) among a multiple-choice item's options."""

    def __init__(self, pick: Callable[[dict], int]):
        super().__init__(lambda d: "")
        self.pick = pick

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        return [(0.0 if r.idx == self.pick(r.doc) else -5.0, False) for r in requests]


def _items():
    import sys

    sys.path.insert(0, str(REPO / "tests" / "opencompass"))
    import items

    return items


def test_olympiadbench_and_ifeval_from_local_files_gold_100_wrong_0(tmp_path):
    """The real path from local files in the hub schemas: OlympiadBench answers in the prompt's \\boxed{} format
    (every part of a multi-answer item), IFEval responses that follow or break their instructions."""
    items = _items()
    data = tmp_path / "olympiad.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in items.OLYMPIAD_ITEMS))
    answer = {r["question"]: ", ".join(a.strip("$") for a in r["final_answer"]) for r in items.OLYMPIAD_ITEMS}
    wrong = dict(zip(answer, items.others(list(answer.values()))))
    assert score(tmp_path, "olympiadbench", data, lambda d: f" So $\\boxed{{{answer[d['question']]}}}$.")["exact_match,none"] == 1.0
    assert score(tmp_path / "w", "olympiadbench", data, lambda d: f" So $\\boxed{{{wrong[d['question']]}}}$.")["exact_match,none"] == 0.0
    data = tmp_path / "ifeval.jsonl"
    data.write_text("".join(json.dumps(items.ifeval_reference(r)) + "\n" for r in items.IFEVAL_ITEMS))
    by_key = {r["key"]: r for r in items.IFEVAL_ITEMS}
    m = score(tmp_path, "ifeval", data, lambda d: by_key[d["key"]]["follows"])
    assert m["prompt_level_strict_acc,none"] == 1.0
    m = score(tmp_path / "w", "ifeval", data, lambda d: by_key[d["key"]]["breaks"])
    assert m["prompt_level_strict_acc,none"] == 0.0


@pytest.mark.parametrize("bench", ["piqa", "arc_easy"])
def test_multiple_choice_from_local_files_gold_100_wrong_0(tmp_path, bench):
    items = _items()
    rows, gold = ((items.PIQA_ITEMS, lambda d: d["label"]) if bench == "piqa" else
                  (items.ARC_ITEMS, lambda d: d["choices"]["label"].index(d["answerKey"])))
    data = tmp_path / f"{bench}_test.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))

    def run(pick, where):
        out = run_lm_eval(ChoiceLM(pick), bench, data, work_dir=tmp_path / where, cache_key=None, batch_size=4,
                          limit=None, num_fewshot=0, max_gen_toks=8)
        return out["metrics"]["acc_norm,none"]

    assert run(gold, "gold") == 1.0 and run(lambda d: 1 - gold(d) if bench == "piqa" else (gold(d) + 1) % 4, "w") == 0.0


def test_arc_challenge_lettered_answers_from_a_local_file(tmp_path):
    """ARC-C in OpenCompass's generative format: the gold letter as a base model writes it after "Answer:" scores
    100%, another letter 0; four-option questions only."""
    items = _items()
    rows = items.ARC_ITEMS + [{**items.ARC_ITEMS[0], "id": "X-5", "choices": {"text": ["a", "b", "c"],
                                                                              "label": ["A", "B", "C"]}}]
    data = tmp_path / "arc_test.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    gold = {r["id"]: "ABCD"[r["choices"]["label"].index(r["answerKey"])] for r in items.ARC_ITEMS}
    texts = {r["id"]: r["choices"]["text"][r["choices"]["label"].index(r["answerKey"])] for r in items.ARC_ITEMS}
    out = run_lm_eval(GoldLM(lambda d: f" {gold[d['id']]}. {texts[d['id']]}\n\n"), "arc_challenge", data,
                      work_dir=tmp_path / "g", cache_key=None, batch_size=4, limit=None, num_fewshot=None, max_gen_toks=8)
    assert out["metrics"]["exact_match,none"] == 1.0 and out["n_samples"]["effective"] == 4
    wrong = score(tmp_path / "w", "arc_challenge", data, lambda d: f" {'BCDA'['ABCD'.index(gold[d['id']])]}")
    assert wrong["exact_match,none"] == 0.0


@needs_shared
def test_humaneval_through_the_generation_path_gold_100_shuffled_near_0(tmp_path):
    """The harness's real code path (prompt building, prompt + completion, sanitize, evalplus in the sandbox) with a
    scripted generator answering evalplus's stripped prompt by the problem's canonical body (or another's)."""
    from entrodrop_bench.evaluate import sandbox
    from entrodrop_bench.evaluate.evalplus_runner import humaneval_to_evalplus, run_evalplus

    level = sandbox.isolation_level()
    if level not in sandbox.LEVELS:
        pytest.skip(f"no usable sandbox here (`{level}`): apt-get install bubblewrap")
    with gzip.open(SHARED / "HumanEval.jsonl.gz", "rt") as fh:
        problems = humaneval_to_evalplus([json.loads(line) for line in fh])[:30]
    data = tmp_path / "humaneval.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in problems))
    by_prompt = {p["prompt"].strip() + "\n": p for p in problems}
    bodies = [p["canonical_solution"] for p in problems]
    other = dict(zip((p["task_id"] for p in problems), bodies[1:] + bodies[:1]))

    def run(answer, where):
        def generator(prompts, *, max_new_tokens, stop):
            assert all(p in by_prompt for p in prompts), "prompts must be evalplus's prompt.strip() + newline"
            return [answer(by_prompt[p]) for p in prompts]

        return run_evalplus(None, None, "humaneval", data, work_dir=tmp_path / where, batch_size=8, limit=None,
                            max_gen_toks=256, cache_dir=tmp_path / "cache", allow_weak=level != "bwrap",
                            generator=generator)

    assert run(lambda p: p["canonical_solution"], "gold")["pass@1"] == 1.0
    assert run(lambda p: other[p["task_id"]], "shuffled")["pass@1"] < 0.1


def test_hellaswag_and_mmlu_from_local_files_with_their_shots(tmp_path):
    """HellaSwag (10-shot in the real presets) and an MMLU subject (5-shot from its dev file beside the test file),
    from local files in the hub schemas: the gold choice scores 100%, another choice 0."""
    items = _items()
    swag = [{"ind": i, "activity_label": "Cooking", "ctx_a": f"A cook picks up pan {i}.", "ctx_b": "she",
             "ctx": f"A cook picks up pan {i}. she", "endings": ["puts it on the stove.", "flies away.", "sings.",
                                                                   "melts."], "source_id": "x", "split": "val",
             "split_type": "indomain", "label": str(i % 4)} for i in range(12)]
    (tmp_path / "swag").mkdir()
    data = tmp_path / "swag" / "hellaswag_validation.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in swag))
    (tmp_path / "swag" / "hellaswag_train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in swag))
    (tmp_path / "mmlu").mkdir()
    mmlu = tmp_path / "mmlu" / "mmlu_anatomy_test.jsonl"
    mmlu.write_text("".join(json.dumps(r) + "\n" for r in items.MMLU_TEST))
    for split in ("dev", "validation"):
        (tmp_path / "mmlu" / f"mmlu_anatomy_{split}.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in items.MMLU_DEV))
    cases = [("hellaswag", data, 10, lambda d: int(d["label"]), "acc_norm,none"),
             ("mmlu_anatomy", mmlu, 5, lambda d: d["answer"], "acc,none")]
    for bench, path, shots, gold, metric in cases:
        for name, pick, want in (("gold", gold, 1.0), ("wrong", lambda d, g=gold: (g(d) + 1) % 4, 0.0)):
            out = run_lm_eval(ChoiceLM(pick), bench, path, work_dir=tmp_path / f"{bench}-{name}", cache_key=None,
                              batch_size=8, limit=None, num_fewshot=shots, max_gen_toks=8)
            assert out["metrics"][metric] == want and out["n_shot"] == shots, (bench, name, out["metrics"])


@needs_shared
def test_gsm8k_from_the_hub_reads_test_and_its_train_exemplars(tmp_path, monkeypatch):
    """Without a local file, gsm8k reads openai/gsm8k (main): the test split evaluated, the train split for the
    exemplars (the hub stands in here, from the shared files)."""
    import datasets

    splits = {s: datasets.Dataset.from_list([json.loads(x) for x in (SHARED / f"gsm8k_{s}.jsonl").read_text().splitlines()])
              for s in ("train", "test")}
    asked: list[tuple] = []

    def fake_hub(*args, **kwargs):
        asked.append(args)
        return datasets.DatasetDict(splits)

    monkeypatch.setattr(datasets, "load_dataset", fake_hub)
    out = run_lm_eval(GoldLM(cot_answer), "gsm8k", None, work_dir=tmp_path, cache_key=None, batch_size=16, limit=50,
                      num_fewshot=None, max_gen_toks=32)
    assert asked == [("openai/gsm8k", "main")] and out["metrics"]["exact_match,none"] == 1.0
