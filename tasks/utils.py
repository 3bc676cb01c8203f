"""Prompt builders, answer extraction and answer checking for the project's own lm-eval tasks.

Referenced from the YAMLs in this folder as `!function utils.<name>`; lm-eval imports this file
from the YAML's directory. Open-ended maths answers are extracted and compared by `math_verify`
(lm-eval's `math` extra; the checker lm-eval's own maths tasks and OpenCompass's MATH evaluator use);
GSM8K and SVAMP are scored as OpenCompass scores them (last number of the generation).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

# --------------------------------------------------------------------------- SVAMP
SVAMP_HUB = "ChilleD/SVAMP"


def svamp_dataset(data_files: dict | None = None, **_metadata):
    """The full SVAMP set (1,000 problems) as a one-split DatasetDict {"test": ...}.

    The hub copy (ChilleD/SVAMP) splits the 1,000 problems into train (700) and test (300); the paper
    (and OpenCompass, which reads the original SVAMP.json) evaluates all 1,000, so both splits are read
    and concatenated. `data_files` (set by eval.data_overrides.svamp) reads a local file instead: the
    original SVAMP.json (a JSON list) or JSONL, fields ID, Body, Question, Equation, Answer, Type.
    """
    import datasets

    if data_files:
        files = data_files if isinstance(data_files, dict) else {"test": data_files}
        return datasets.DatasetDict({"test": _read_svamp_files(list(files.values()))})
    hub = datasets.load_dataset(SVAMP_HUB)
    both = datasets.concatenate_datasets([hub[name] for name in ("train", "test") if name in hub])
    return datasets.DatasetDict({"test": both})


def _read_svamp_files(paths: list) -> datasets.Dataset:  # noqa: F821 - imported lazily
    """A JSON list (the original SVAMP.json) or JSON lines; each record keeps the original fields."""
    import json
    from pathlib import Path

    import datasets

    records: list[dict] = []
    for path in paths:
        text = Path(path).read_text(encoding="utf-8")
        rows = json.loads(text) if text.lstrip().startswith("[") else [json.loads(x) for x in text.splitlines() if x.strip()]
        records += [{k: (str(v) if k != "Answer" else float(v)) for k, v in row.items()} for row in rows]
    return datasets.Dataset.from_list(records)


def svamp_process_docs(dataset):
    """SVAMP: the question is Body + " " + Question; the gold answer is the numeric Answer field."""

    def fix(doc: dict) -> dict:
        body, question = str(doc["Body"]).strip(), str(doc["Question"]).strip()
        return {**doc, "question": f"{body} {question}", "gold": str(int(float(doc["Answer"])))}  # OpenCompass's gold

    return dataset.map(fix)


def svamp_process_results(doc: dict, results: list[str]) -> dict[str, int]:
    """OpenCompass's SVAMP score (its GSM8K rule): the last number of the generation before any new "Question:"
    equals the gold Answer (as an integer, within 1e-6). As there, thousands separators are not read: a model
    writing "1,414" scores as "414" (68 of the 1,000 gold answers are 1,000 or more)."""
    return {"exact_match": int(oc_number_equal(oc_last_number(results[0]), str(doc["gold"])))}


# --------------------------------------------------------------------------- GSM8K (OpenCompass's format)
GSM8K_HUB = ("openai/gsm8k", "main")
# OpenCompass's gsm8k_gen_17d0dc exemplars are these GSM8K train items (indices in the train split), in this order.
GSM8K_OC_EXEMPLARS = (7364, 1708, 669, 6724)
_CALCULATOR = re.compile(r"<<[^>]*>>")
# OpenCompass's prediction rule (gsm8k_postprocess): the last integer or decimal, commas not part of a number.
_OC_NUMBER = re.compile(r"\-?\d+\.\d+|\-?\d+")


def gsm8k_question(question: str) -> str:
    return f"Question: {question}\nLet's think step by step\nAnswer:"


def gsm8k_cot_answer(answer: str) -> str:
    """A GSM8K train solution as OpenCompass's exemplars write it: no <<calc>> annotations, "The answer is N"."""
    steps, final = answer.split("####")
    return f"{_CALCULATOR.sub('', steps).rstrip()}\nThe answer is {final.strip()}\n"


def gsm8k_fewshot_prefix(train: list[dict]) -> str:
    """The four exemplar turns, each turn followed by the "\n" that joins a base model's prompt turns."""
    turns = []
    for index in GSM8K_OC_EXEMPLARS:
        if index >= len(train):
            raise ValueError(f"gsm8k: the train split has {len(train)} items; exemplar {index} is missing "
                             "(expected the full 7,473-item GSM8K train split)")
        turns += [gsm8k_question(train[index]["question"]), gsm8k_cot_answer(train[index]["answer"])]
    return "".join(t + "\n" for t in turns)


def gsm8k_dataset(data_files: dict | None = None, **_metadata):
    """GSM8K test with each item's full OpenCompass prompt (`prompt`) and gold number (`gold`).

    Offline (`data_files`, from eval.data_overrides.gsm8k): the test file, and the exemplars from the train file
    beside it (`test` replaced by `train` in its name); else the hub's openai/gsm8k.
    """
    import datasets

    if data_files:
        test_path = Path(next(iter(data_files.values())) if isinstance(data_files, dict) else data_files)
        train_path = test_path.with_name(test_path.name.replace("test", "train"))
        if "test" not in test_path.name or not train_path.is_file():
            raise FileNotFoundError(f"gsm8k: the few-shot exemplars come from GSM8K's train split: expected "
                                    f"{train_path.name if 'test' in test_path.name else 'gsm8k_train.jsonl'} beside "
                                    f"{test_path} (the test file's name with 'test' replaced by 'train')")
        test, train = _read_jsonl(test_path), _read_jsonl(train_path)
    else:
        hub = datasets.load_dataset(*GSM8K_HUB)
        test, train = list(hub["test"]), list(hub["train"])
    prefix = gsm8k_fewshot_prefix(train)
    rows = [{**row, "prompt": prefix + gsm8k_question(row["question"]),
             "gold": row["answer"].split("####")[-1].strip().replace(",", "")} for row in test]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def oc_last_number(text: str) -> str | None:
    """OpenCompass's GSM8K/SVAMP prediction: the last number of the text before any new "Question:"."""
    found = _OC_NUMBER.findall(text.split("Question:")[0])
    return found[-1] if found else None


def oc_number_equal(pred: str | None, gold: str) -> bool:
    """OpenCompass's Gsm8kEvaluator check: the same string, or within 1e-6 of the gold taken as an integer."""
    if pred is None:
        return False
    try:
        return pred == gold or abs(float(pred) - int(gold)) < 1e-6
    except ValueError:
        return False


def gsm8k_process_results(doc: dict, results: list[str]) -> dict[str, int]:
    return {"exact_match": int(oc_number_equal(oc_last_number(results[0]), str(doc["gold"])))}


# --------------------------------------------------------------------------- open-ended maths
def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (or \\fbox{...}), braces balanced; None when absent."""
    idx = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if idx < 0:
        return None
    rest = text[idx:]
    if rest.startswith("\\boxed ") and "{" not in rest.split(" ", 1)[1][:1]:
        return rest.split(" ", 1)[1].split("$")[0].strip()
    start = rest.find("{")
    if start < 0:
        return None
    depth = 0
    for i, ch in enumerate(rest[start:], start):
        depth += ch == "{"
        depth -= ch == "}"
        if depth == 0:
            return rest[start + 1 : i].strip()
    return None


def _parse_gold(gold: str) -> list:
    """A gold answer as math_verify objects: LaTeX when it is (or can be wrapped as) math, else plain."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    text = gold.strip()
    wrapped = text if "$" in text or "\\(" in text or "\\[" in text else f"${text}$"
    return parse(wrapped, extraction_config=[LatexExtractionConfig(), ExprExtractionConfig()])


def _parse_prediction(text: str) -> list:
    """The answer of a generation: math_verify's extraction (\\boxed{} first, then "final answer is",
    then the last LaTeX or plain expression), exactly as lm-eval's maths tasks call it."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    return parse(text, extraction_config=[LatexExtractionConfig(), ExprExtractionConfig()])


def math_equal(pred: str, gold: str) -> bool:
    """Two answers (LaTeX or plain) are equal by math_verify: numerically, symbolically, as sets/intervals."""
    from math_verify import verify

    p = pred.strip()
    if not p:
        return False
    return bool(verify(_parse_gold(gold), _parse_gold(p)))


def extract_math_answer(text: str) -> str:
    """The answer string of a generation (math_verify's extraction; the raw text when it finds none)."""
    parsed = _parse_prediction(text)
    return str(parsed[-1]) if parsed else text.strip()


def _gold_answers(doc: dict) -> list[str]:
    gold = doc.get("final_answer", doc.get("answer"))
    if isinstance(gold, list):
        return [str(g) for g in gold]
    return [str(gold)]


def math_process_results(doc: dict, results: list[str]) -> dict[str, int]:
    """exact_match = 1 when math_verify finds the generation's answer equal to the gold answer."""
    from math_verify import verify

    golds = _gold_answers(doc)
    # OlympiadBench lists the answers of a multi-part question: all must appear in the last \\boxed{}, in order.
    if len(golds) > 1:
        boxed = last_boxed(results[0]) or ""
        parts = [x.strip() for x in boxed.split(",")]
        ok = len(parts) == len(golds) and all(math_equal(a, b) for a, b in zip(parts, golds))
    else:
        ok = bool(verify(_parse_gold(golds[0]), _parse_prediction(results[0])))
    return {"exact_match": int(ok)}


def olympiad_process_docs(dataset):
    """Keep English, open-ended, maths questions that have a final answer (the OE_TO_maths_en_COMP config)."""

    def keep(doc: dict) -> bool:
        lang = str(doc.get("language", "English"))
        subject = str(doc.get("subject", doc.get("subfield", "Math")))
        answer_type = doc.get("answer_type")
        return lang.lower().startswith("en") and "phys" not in subject.lower() and bool(_gold_answers(doc)[0]) \
            and answer_type != "Proof"

    return dataset.filter(keep)


def tiny_math_target(doc: dict) -> str:
    return str(doc["answer"]).split("####")[-1].strip()


# --------------------------------------------------------------------------- ARC-Challenge (lettered, generative)
OPTIONS = "ABCD"
_ANSWER_IS = re.compile(r"answer is:?\s*\(?([A-D])\b", re.I)
_STANDALONE = re.compile(r"(?:^|[\s(*])([A-D])(?=[\s.,:;)*]|$)")


def arc_process_docs(dataset):
    """Questions with exactly four options (as OpenCompass's ARC loader keeps), as textA-D and the gold letter."""

    def fix(doc: dict) -> dict:
        texts, labels = doc["choices"]["text"], doc["choices"]["label"]
        return {**doc, **{f"text{o}": t for o, t in zip(OPTIONS, texts)},
                "gold": OPTIONS[labels.index(doc["answerKey"])]}

    return dataset.filter(lambda d: len(d["choices"]["text"]) == 4).map(fix)


def option_letter(text: str) -> str | None:
    """The option a generation answers: "answer is X" first, else the first standalone letter A-D (before any new
    "Question:"); None when it names none."""
    text = text.split("Question:")[0]
    found = _ANSWER_IS.search(text) or _STANDALONE.search(text)
    return found.group(1) if found else None


def arc_process_results(doc: dict, results: list[str]) -> dict[str, int]:
    return {"exact_match": int(option_letter(results[0]) == doc["gold"])}
