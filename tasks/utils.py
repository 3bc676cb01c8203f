"""Prompt builders, answer extraction and answer checking for the project's own lm-eval tasks.

Referenced from the YAMLs in this folder as `!function utils.<name>`; lm-eval imports this file
from the YAML's directory. Open-ended maths answers are extracted and compared by `math_verify`
(lm-eval's `math` extra; the checker lm-eval's own maths tasks and OpenCompass's MATH evaluator use);
SVAMP is scored as OpenCompass scores it (last number of the generation).
"""

from __future__ import annotations

import math
import re

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


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
        return {**doc, "question": f"{body} {question}", "gold": _format_number(float(doc["Answer"]))}

    return dataset.map(fix)


def _format_number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def parse_number(text: str) -> float | None:
    """The last number of a model answer, thousands separators removed (OpenCompass's SVAMP/GSM8K rule).

    Text after a new "Question:" (the model starting another problem) is ignored, as OpenCompass does.
    """
    found = _NUMBER.findall(text.split("Question:")[0])
    return _to_float(found[-1]) if found else None


def _to_float(token: str) -> float | None:
    try:
        return float(token.replace(",", ""))
    except ValueError:
        return None


def numbers_match(pred: float | None, gold: float, abs_tol: float = 1e-6) -> bool:
    return pred is not None and math.isclose(pred, gold, rel_tol=0.0, abs_tol=abs_tol)


def svamp_process_results(doc: dict, results: list[str]) -> dict[str, int]:
    """exact_match = 1 when the last number of the generation equals the gold Answer (within 1e-6)."""
    return {"exact_match": int(numbers_match(parse_number(results[0]), float(doc["gold"])))}


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
