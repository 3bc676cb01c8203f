"""The items and the fixed generation set that the OpenCompass comparison scores on both sides.

Standard library only: imported by the oracle script inside `.venv-opencompass` (OpenCompass's own code) and by
the main environment's test (this harness's code). Real items come from ../shared/benchmarks (GSM8K, SVAMP,
HumanEval); MATH items are written here in the real hendrycks_math schema (problem, level, type, solution).
"""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

N_REAL = 60  # real items per benchmark (the first N of the file: enough to cover every answer shape seen)
SHARED = next((p for p in (Path(__file__).resolve().parents[3] / "shared" / "benchmarks",
                           Path("/work/shared/benchmarks")) if p.is_dir()), None)

# MATH items in the hendrycks_math schema, written for this comparison (answers of the shapes MATH has:
# integers, fractions, radicals, negative numbers, intervals, text, several answers).
MATH_ITEMS = [
    {"problem": "What is $3 + 4 \\cdot 2$?", "level": "Level 1", "type": "Prealgebra",
     "solution": "Multiplication first: $4 \\cdot 2 = 8$, so $3 + 8 = \\boxed{11}$."},
    {"problem": "Simplify $\\frac{6}{8}$.", "level": "Level 1", "type": "Prealgebra",
     "solution": "Dividing both by 2 gives $\\boxed{\\frac{3}{4}}$."},
    {"problem": "What is $\\sqrt{50}$ in simplest radical form?", "level": "Level 2", "type": "Algebra",
     "solution": "$\\sqrt{50} = \\sqrt{25 \\cdot 2} = \\boxed{5\\sqrt{2}}$."},
    {"problem": "Solve $2x + 10 = 4$.", "level": "Level 1", "type": "Algebra",
     "solution": "$2x = -6$, so $x = \\boxed{-3}$."},
    {"problem": "For which $x$ is $x^2 < 4$? Give an interval.", "level": "Level 2", "type": "Algebra",
     "solution": "Exactly when $-2 < x < 2$: $\\boxed{(-2,2)}$."},
    {"problem": "What is $1000 \\cdot 12$?", "level": "Level 1", "type": "Prealgebra",
     "solution": "$1000 \\cdot 12 = \\boxed{12000}$."},
    {"problem": "What is $0.5 + 0.25$?", "level": "Level 1", "type": "Prealgebra",
     "solution": "$0.5 + 0.25 = \\boxed{0.75}$."},
    {"problem": "How many degrees are in each interior angle of a regular hexagon?", "level": "Level 2",
     "type": "Geometry", "solution": "The angles sum to $720^\\circ$, so each is $\\boxed{120^\\circ}$."},
    {"problem": "What is the probability of heads in one fair coin toss?", "level": "Level 1",
     "type": "Counting & Probability", "solution": "One of two outcomes: $\\boxed{\\dfrac{1}{2}}$."},
    {"problem": "Find all roots of $x^2 - 5x + 6 = 0$.", "level": "Level 2", "type": "Algebra",
     "solution": "$(x-2)(x-3) = 0$, so the roots are $\\boxed{2, 3}$."},
    {"problem": "Compute $\\binom{5}{2}$.", "level": "Level 1", "type": "Counting & Probability",
     "solution": "$\\binom{5}{2} = \\frac{5 \\cdot 4}{2} = \\boxed{10}$."},
    {"problem": "What is $\\pi$ times the square of the radius of a circle of radius 3?", "level": "Level 1",
     "type": "Geometry", "solution": "The area is $\\boxed{9\\pi}$."},
]


def gsm8k_items() -> list[dict]:
    return _jsonl(SHARED / "gsm8k_test.jsonl")[:N_REAL]


def gsm8k_train() -> list[dict]:
    return _jsonl(SHARED / "gsm8k_train.jsonl")


def svamp_items() -> list[dict]:
    rows = json.loads((SHARED / "SVAMP.json").read_text())
    # The first N plus every answer of 1,000 or more (where thousands separators matter).
    return rows[:N_REAL] + [r for r in rows[N_REAL:] if float(r["Answer"]) >= 1000][:20]


def humaneval_items() -> list[dict]:
    with gzip.open(SHARED / "HumanEval.jsonl.gz", "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def gsm8k_gold(item: dict) -> str:
    return item["answer"].split("####")[-1].strip().replace(",", "")


def svamp_gold(item: dict) -> str:
    return str(int(float(item["Answer"])))


def number_generations(gold: str, other: str) -> dict[str, str]:
    """The fixed generation set of a number-answer benchmark (GSM8K, SVAMP), written in the prompt's format
    (the exemplars' "The answer is N")."""
    g = int(gold)
    return {
        "gold": f"Working it out step by step gives {g}.\nThe answer is {g}\n",
        "gold_then_new_question": f"So the total is {g}.\nThe answer is {g}\n\nQuestion: What is 2 + 3?\nAnswer: 5",
        "gold_decimal": f"The answer is {g}.0",
        "gold_thousands": f"The answer is {g:,}",
        "gold_boxed": f"The answer is $\\boxed{{{g}}}$.",
        "gold_dollar": f"She makes ${g} every day.",
        "perturbed": f"The answer is {g + 1}",
        "wrong": f"The answer is {other}",
        "several_gold_last": f"It could be {g + 2}, but checking again the answer is {g}",
        "several_gold_first": f"The answer is {g}. Or maybe {g + 2}.",
        "no_number": "I cannot tell.",
    }


def math_answer(solution: str) -> str:
    """The content of the solution's last \\boxed{} (how both sides read MATH's gold answer)."""
    idx = solution.rfind("\\boxed{")
    depth, out = 0, []
    for ch in solution[idx + len("\\boxed"):]:
        depth += ch == "{"
        depth -= ch == "}"
        out.append(ch)
        if depth == 0:
            break
    return "".join(out)[1:-1]


def math_generations(answer: str, other: str) -> dict[str, str]:
    """The fixed generation set of MATH, in the Minerva exemplars' format ("Final Answer: The final answer is
    X. I hope it is correct.") and the other forms a model writes."""
    return {
        "gold_minerva": f"We compute it.\nFinal Answer: The final answer is ${answer}$. I hope it is correct.",
        "gold_boxed": f"We compute it, giving $\\boxed{{{answer}}}$.",
        "gold_boxed_and_minerva": f"So $\\boxed{{{answer}}}$.\nFinal Answer: The final answer is ${answer}$. "
                                  "I hope it is correct.",
        "gold_unboxed": f"The answer is ${answer}$.",
        "perturbed": f"Final Answer: The final answer is ${answer}+1$. I hope it is correct.",
        "wrong": f"Final Answer: The final answer is ${other}$. I hope it is correct.",
        "wrong_boxed": f"So $\\boxed{{{other}}}$.",
        "several": f"Final Answer: The final answer is ${other}$ or ${answer}$. I hope it is correct.",
        "gold_then_new_problem": f"Final Answer: The final answer is ${answer}$. I hope it is correct.\n\n"
                                 "Problem:\nWhat is $1+1$?",
    }


def others(golds: list[str], seed: int = 0) -> list[str]:
    """For each item, another item's gold that differs from its own (the "wrong" generation)."""
    rng = random.Random(seed)
    out = []
    for g in golds:
        choices = [x for x in golds if x != g]
        out.append(rng.choice(choices))
    return out
