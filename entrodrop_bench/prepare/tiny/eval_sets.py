"""Held-out tiny benchmarks in the schemas of the real ones (GSM8K, ARC/HellaSwag-style MC, evalplus HumanEval).

Items are drawn from their own seeded streams and never equal a training document: math questions and
code prompts are deduplicated against every training and pre-training item, and general MC items use a
lead-in phrase that never occurs in the general corpus (their facts do: that is what they measure).
"""

from __future__ import annotations

import random

from entrodrop_bench.prepare.tiny.corpora import (
    CATEGORIES,
    PEOPLE,
    CodeFunction,
    code_function,
    code_inputs,
    math_problem,
)

BENCH_LEAD_INS = ("One day,", "Later that week,", "At dawn,", "After school,")
CODE_BASE_INPUTS = 4
CODE_PLUS_INPUTS = 8


def math_benchmark(rng: random.Random, n: int, exclude: set[str]) -> list[dict]:
    """GSM8K schema: {"question", "answer"}; answer is the worked solution ending in "#### N"."""
    items, seen = [], set(exclude)
    while len(items) < n:
        p = math_problem(rng)
        if p.question in seen:
            continue
        seen.add(p.question)
        items.append({"question": p.question, "answer": p.answer})
    return items


def _distractors(rng: random.Random, cat: str, pick) -> list[str]:
    others = [c for c in CATEGORIES if c != cat]
    return [pick(c) for c in rng.sample(others, 3)]


def general_item(rng: random.Random, entities: dict[str, str]) -> tuple[str, list[str], str]:
    """(context, 4 endings, correct ending): the right ending agrees with the entity's category."""
    ent = rng.choice(sorted(entities))
    cat = entities[ent]
    lead, person, other = rng.choice(BENCH_LEAD_INS), *rng.sample(PEOPLE, 2)
    kind = rng.randrange(3)
    if kind == 0:
        context, right = f"{lead} {person} told {other} that the {ent} is a kind of", f"{cat}."
        wrong = _distractors(rng, cat, lambda c: f"{c}.")
    elif kind == 1:
        context, right = f"{lead} {person} picked up the {ent} and", f"{rng.choice(CATEGORIES[cat]['act'])}."
        wrong = _distractors(rng, cat, lambda c: f"{rng.choice(CATEGORIES[c]['act'])}.")
    else:
        own = set(CATEGORIES[cat]["adj"])
        right = f"{rng.choice(sorted(own))}."
        context = f"{lead} {person} noticed that the {ent} was"
        pool = sorted({a for c in CATEGORIES if c != cat for a in CATEGORIES[c]["adj"]} - own)
        wrong = [f"{a}." for a in rng.sample(pool, 3)]
    return context, [right, *wrong], right


def general_benchmark(rng: random.Random, n: int, entities: dict[str, str], corpus_text: str) -> list[dict]:
    """ARC/HellaSwag-like multiple choice: {"id", "question", "choices": [4], "label"}."""
    items, seen = [], set()
    while len(items) < n:
        context, choices, right = general_item(rng, entities)
        if context in seen or f"{context} {right}" in corpus_text:
            continue
        seen.add(context)
        rng.shuffle(choices)
        items.append({"id": f"tiny_general/{len(items)}", "question": context, "choices": choices, "label": choices.index(right)})
    return items


def _check_fn(fn: CodeFunction, inputs: list[tuple]) -> str:
    lines = [f"    assert candidate({', '.join(map(repr, a))}) == {fn.call(a)!r}" for a in inputs]
    return "def check(candidate):\n" + "\n".join(lines) + "\n"


def code_benchmark(rng: random.Random, n: int, exclude: set[str]) -> list[dict]:
    """evalplus HumanEval schema plus a HumanEval-style `test` string."""
    items, seen = [], set(exclude)
    while len(items) < n:
        fn = code_function(rng, CODE_BASE_INPUTS)
        if fn.prompt in seen:
            continue
        seen.add(fn.prompt)
        plus = list(code_inputs(rng, fn, CODE_PLUS_INPUTS))
        items.append(
            {
                "task_id": f"HumanEval/{len(items)}",
                "prompt": fn.prompt,
                "entry_point": fn.name,
                "canonical_solution": fn.body,
                "base_input": [list(a) for a in fn.inputs],
                "plus_input": [list(a) for a in plus],
                "atol": 0,
                "contract": "",
                "test": _check_fn(fn, [*fn.inputs, *plus]),
            }
        )
    return items


def run_code_item(item: dict) -> None:
    """Execute an item's canonical solution against its own check(); raises AssertionError on failure."""
    scope: dict = {}
    exec(item["prompt"] + item["canonical_solution"] + "\n" + item["test"], scope)  # noqa: S102 - generated here
    scope["check"](scope[item["entry_point"]])
