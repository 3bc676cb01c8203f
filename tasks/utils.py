"""Prompt builders, answer extraction and answer checking for the project's own lm-eval tasks.

Referenced from the YAMLs in this folder as `!function utils.<name>`; lm-eval imports this file
from the YAML's directory. Kept dependency-light: sympy (lm-eval's `math` extra) only for symbolic
equivalence, imported lazily.
"""

from __future__ import annotations

import contextlib
import math
import re
import signal
import threading

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


# --------------------------------------------------------------------------- SVAMP
def svamp_process_docs(dataset):
    """SVAMP: the question is Body + " " + Question; the gold answer is the numeric Answer field."""

    def fix(doc: dict) -> dict:
        body, question = str(doc["Body"]).strip(), str(doc["Question"]).strip()
        return {**doc, "question": f"{body} {question}", "gold": _format_number(float(doc["Answer"]))}

    return dataset.map(fix)


def _format_number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def parse_number(text: str) -> float | None:
    """A number from a model answer: after '####' or 'answer is' when present, else the last number."""
    for marker in ("####", "answer is", "Answer:"):
        if marker in text:
            tail = text.split(marker)[-1]
            m = _NUMBER.search(tail)
            if m:
                return _to_float(m.group(0))
    found = _NUMBER.findall(text)
    return _to_float(found[-1]) if found else None


def _to_float(token: str) -> float | None:
    try:
        return float(token.replace(",", ""))
    except ValueError:
        return None


def numbers_match(pred: float | None, gold: float, rel_tol: float = 1e-4) -> bool:
    return pred is not None and math.isclose(pred, gold, rel_tol=rel_tol, abs_tol=1e-6)


def svamp_process_results(doc: dict, results: list[str]) -> dict[str, int]:
    """exact_match = 1 when the extracted number equals the gold Answer (relative tolerance 1e-4)."""
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


def extract_math_answer(text: str) -> str:
    """\\boxed{} first; then 'final answer is X' / 'answer is X'; then '#### X'; then the last number."""
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    for pattern in (r"[Ff]inal [Aa]nswer(?: is|:)\s*(.+)", r"[Aa]nswer is\s*(.+)", r"####\s*(.+)"):
        m = re.search(pattern, text)
        if m:
            return m.group(1).strip().split("\n")[0].rstrip(".").strip().strip("$").strip()
    found = _NUMBER.findall(text)
    return found[-1] if found else text.strip()


_STRIP = [r"\left", r"\right", r"\!", r"\,", r"\;", r"\:", r"\displaystyle", "$", r"^\circ", r"^{\circ}", r"\%", "%"]


def normalize_answer(ans: str) -> str:
    s = str(ans).strip()
    for token in _STRIP:
        s = s.replace(token, "")
    s = re.sub(r"\\text\{\s*([^}]*)\}", r"\1", s)
    s = re.sub(r"\\(?:d|t)frac", r"\\frac", s)
    s = s.replace(" ", "").rstrip(".")
    if s.startswith(("x=", "y=", "k=", "n=")) and "," not in s:
        s = s[2:]
    return s


def _to_sympy(s: str):
    import sympy
    from sympy.parsing.sympy_parser import (
        convert_xor,
        implicit_multiplication_application,
        parse_expr,
        standard_transformations,
    )

    t = re.sub(r"\\frac\{([^{}]*)\}\{([^{}]*)\}", r"((\1)/(\2))", s)
    t = re.sub(r"\\sqrt\{([^{}]*)\}", r"sqrt(\1)", t)
    t = t.replace("\\pi", "pi").replace("\\cdot", "*").replace("\\times", "*").replace("{", "(").replace("}", ")")
    if "\\" in t:
        raise ValueError(f"unsupported LaTeX in {s!r}")
    return sympy.simplify(parse_expr(t, transformations=(*standard_transformations, implicit_multiplication_application,
                                                         convert_xor)))


def math_equal(pred: str, gold: str) -> bool:
    """Equal as normalized strings, as numbers, element-wise for tuples, or symbolically (sympy)."""
    p, g = normalize_answer(pred), normalize_answer(gold)
    if not p:
        return False
    if p == g:
        return True
    pn, gn = _to_float(p), _to_float(g)
    if pn is not None and gn is not None:
        return math.isclose(pn, gn, rel_tol=1e-4, abs_tol=1e-8)
    if "," in g and p.count(",") == g.count(","):
        return all(math_equal(a, b) for a, b in zip(p.strip("()[]").split(","), g.strip("()[]").split(",")))
    if max(len(p), len(g)) > 80 or p.count("^") > 2:  # power towers and essays would stall sympy
        return False
    try:
        with _time_limit(2.0):
            import sympy

            return bool(sympy.simplify(_to_sympy(p) - _to_sympy(g)) == 0)
    except Exception:  # noqa: BLE001 - any unparsable (or too slow) answer is simply not equal
        return False


@contextlib.contextmanager
def _time_limit(seconds: float):
    """Abort a symbolic check that takes too long (main thread only; elsewhere no limit)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def fire(signum, frame):
        raise TimeoutError("symbolic equivalence check took too long")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _gold_answers(doc: dict) -> list[str]:
    gold = doc.get("final_answer", doc.get("answer"))
    if isinstance(gold, list):
        return [str(g) for g in gold]
    return [str(gold)]


def math_process_results(doc: dict, results: list[str]) -> dict[str, int]:
    """exact_match = 1 when the extracted answer equals any gold answer (see math_equal)."""
    pred = extract_math_answer(results[0])
    golds = _gold_answers(doc)
    # OlympiadBench lists several answers of a multi-part question: all must appear, in order.
    if len(golds) > 1:
        parts = [x.strip() for x in pred.split(",")]
        ok = len(parts) == len(golds) and all(math_equal(a, b) for a, b in zip(parts, golds))
    else:
        ok = math_equal(pred, golds[0])
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
