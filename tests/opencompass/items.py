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


# OlympiadBench items in the Hothan/OlympiadBench schema (OE_TO_maths_en_COMP: English, open-ended, maths),
# written for this comparison: numerical, expression, interval and two-answer questions.
def _ob(i: int, question: str, answers: list[str], answer_type: str, multiple: bool = False) -> dict:
    return {"id": 9000 + i, "question": question, "solution": ["(omitted)"], "final_answer": answers,
            "context": None, "is_multiple_answer": multiple, "unit": None, "answer_type": answer_type,
            "error": None, "question_type": "Open-ended", "subfield": "Algebra", "subject": "Math",
            "language": "English", "modality": "Text-only", "difficulty": "Competition"}


OLYMPIAD_ITEMS = [
    _ob(1, "Compute the number of positive divisors of 360.", ["24"], "Numerical"),
    _ob(2, "Find the sum of all real $x$ with $x^2 - 7x + 10 = 0$.", ["7"], "Numerical"),
    _ob(3, "Express $\\sin^2 x + \\cos^2 x + x$ in simplest form.", ["$x+1$"], "Expression"),
    _ob(4, "Find the set of real $x$ with $|x - 1| < 3$.", ["$(-2,4)$"], "Interval"),
    _ob(5, "Compute $\\frac{1}{2} + \\frac{1}{3}$.", ["$\\frac{5}{6}$"], "Numerical"),
    _ob(6, "Compute $\\sqrt{12}\\cdot\\sqrt{3}$.", ["6"], "Numerical"),
    _ob(7, "Find the least prime greater than 100.", ["101"], "Numerical"),
    _ob(8, "Find all real $x$ with $x^2 = 9$.", ["$-3$", "$3$"], "Numerical", multiple=True),
]


def olympiad_generations(answer: str, other: str, parts: list[str]) -> dict[str, str]:
    """OlympiadBench's answer format ("So the final answer is \\boxed{X}") and the other forms a model writes;
    `parts`: every answer of the item (a multi-answer item's complete answer lists them all)."""
    a, o = answer.strip("$"), other.strip("$")
    every = ", ".join(p.strip("$") for p in parts)
    return {
        "gold_all_parts": f"So the final answer is $\\boxed{{{every}}}$.",
        "gold_format": f"Working through it, we find the value. So the final answer is $\\boxed{{{a}}}$.",
        "gold_boxed": f"We find $\\boxed{{{a}}}$.",
        "gold_unboxed": f"The answer is ${a}$.",
        "perturbed": f"So the final answer is $\\boxed{{{a}+1}}$.",
        "wrong": f"So the final answer is $\\boxed{{{o}}}$.",
        "several_gold_last": f"First guess $\\boxed{{{o}}}$. So the final answer is $\\boxed{{{a}}}$.",
        "several_gold_first": f"So the final answer is $\\boxed{{{a}}}$. Or perhaps $\\boxed{{{o}}}$.",
    }


# IFEval items in the google/IFEval schema (key, prompt, instruction_id_list, kwargs), written for this comparison,
# each with a generation that follows its instructions and one that does not.
IFEVAL_ITEMS = [
    {"key": 9001, "prompt": "Describe a sunny day without using any commas.",
     "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}],
     "follows": "The sky is bright and the air is warm.", "breaks": "The sky is bright, and the air is warm."},
    {"key": 9002, "prompt": "Write about rivers in all lowercase letters.",
     "instruction_id_list": ["change_case:english_lowercase"], "kwargs": [{}],
     "follows": "rivers carry water to the sea.", "breaks": "Rivers carry water to the sea."},
    {"key": 9003, "prompt": "Write a short note that ends with the exact phrase 'Is there anything else I can help with?'",
     "instruction_id_list": ["startend:end_checker"], "kwargs": [{"end_phrase": "Is there anything else I can help with?"}],
     "follows": "Here is the note. Is there anything else I can help with?", "breaks": "Here is the note."},
    {"key": 9004, "prompt": "List three fruits as exactly 3 markdown bullet points.",
     "instruction_id_list": ["detectable_format:number_bullet_lists"], "kwargs": [{"num_bullets": 3}],
     "follows": "* apple\n* pear\n* plum", "breaks": "* apple\n* pear"},
    {"key": 9005, "prompt": "Write about owls and include the keywords night and silent.",
     "instruction_id_list": ["keywords:existence"], "kwargs": [{"keywords": ["night", "silent"]}],
     "follows": "Owls hunt at night on silent wings.", "breaks": "Owls hunt in the dark."},
    {"key": 9006, "prompt": "Answer in fewer than 10 words: what is rain?",
     "instruction_id_list": ["length_constraints:number_words"], "kwargs": [{"relation": "less than", "num_words": 10}],
     "follows": "Water falling from clouds.",
     "breaks": "Rain is water that condenses in clouds and falls back down to the ground below."},
    {"key": 9007, "prompt": "Wrap your whole answer in double quotation marks and do not use commas.",
     "instruction_id_list": ["startend:quotation", "punctuation:no_comma"], "kwargs": [{}, {}],
     "follows": "\"Yes it is.\"", "breaks": "\"Yes, it is.\""},
]


def ifeval_reference(item: dict) -> dict:
    return {k: item[k] for k in ("key", "prompt", "instruction_id_list", "kwargs")}


# Multiple-choice items in the hub schemas lm-eval reads (allenai/ai2_arc, baber/piqa), written for this comparison;
# the compared text is the one each side scores for the gold choice (context + answer).
ARC_ITEMS = [
    {"id": "X-1", "question": "Which gas do plants take in for photosynthesis?",
     "choices": {"text": ["oxygen", "carbon dioxide", "nitrogen", "helium"], "label": ["A", "B", "C", "D"]},
     "answerKey": "B"},
    {"id": "X-2", "question": "What causes day and night on Earth?",
     "choices": {"text": ["Earth's rotation", "the Moon's orbit", "clouds", "the seasons"],
                 "label": ["A", "B", "C", "D"]}, "answerKey": "A"},
    {"id": "X-3", "question": "Which material conducts electricity best?",
     "choices": {"text": ["wood", "rubber", "glass", "copper"], "label": ["1", "2", "3", "4"]}, "answerKey": "4"},
    {"id": "X-4", "question": "Water freezes at what temperature in degrees Celsius?",
     "choices": {"text": ["100", "50", "0", "-50"], "label": ["A", "B", "C", "D"]}, "answerKey": "C"},
]
PIQA_ITEMS = [
    {"goal": "To keep bread fresh longer,", "sol1": "store it in a sealed bag.", "sol2": "leave it in the sun.",
     "label": 0},
    {"goal": "How do I dry wet shoes?", "sol1": "Put them in the freezer.",
     "sol2": "Stuff them with newspaper and leave them in a warm room.", "label": 1},
    {"goal": "To open a stuck jar lid,", "sol1": "run the lid under hot water.", "sol2": "put the jar in the fridge.",
     "label": 0},
]


def arc_raw(item: dict) -> dict:
    """An ARC item in AI2's original JSONL layout (what OpenCompass's ARCDataset reads from a local file)."""
    return {"id": item["id"], "answerKey": item["answerKey"],
            "question": {"stem": item["question"],
                         "choices": [{"text": t, "label": la} for t, la in zip(item["choices"]["text"],
                                                                              item["choices"]["label"])]}}


def option_generations(gold: str, text: str, other: str) -> dict[str, str]:
    """The fixed generation set of a lettered question (ARC-C), as a base model continues "Answer:"."""
    return {
        "gold_letter": f" {gold}",
        "gold_letter_newline": f" {gold}\n\n",
        "gold_letter_and_text": f" {gold}. {text}",
        "gold_parenthesised": f" ({gold})",
        "gold_answer_is": f" The answer is {gold}.",
        "gold_then_new_question": f" {gold}\n\nQuestion: What is 2 + 2?\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer: {other}",
        "wrong_letter": f" {other}",
        "several": f" {other} or {gold}",
        "no_letter": " I am not sure.",
    }


# MMLU items in the cais/mmlu schema (question, subject, choices, answer), one subject: 5 dev items (the 5-shot
# exemplars) and 3 test items, written for this comparison.
MMLU_SUBJECT = "anatomy"


def _mmlu(q: str, choices: list[str], answer: int) -> dict:
    return {"question": q, "subject": MMLU_SUBJECT, "choices": choices, "answer": answer}


MMLU_DEV = [
    _mmlu("Which bone is the longest in the human body?", ["femur", "tibia", "humerus", "radius"], 0),
    _mmlu("Which organ pumps blood?", ["lung", "heart", "liver", "kidney"], 1),
    _mmlu("How many chambers does the human heart have?", ["two", "three", "four", "five"], 2),
    _mmlu("Which muscle separates the chest from the abdomen?", ["biceps", "deltoid", "trapezius", "diaphragm"], 3),
    _mmlu("Where is the patella?", ["knee", "elbow", "skull", "spine"], 0),
]
MMLU_TEST = [
    _mmlu("Which organ produces bile?", ["stomach", "pancreas", "liver", "spleen"], 2),
    _mmlu("The smallest bones of the body are in the", ["hand", "ear", "foot", "nose"], 1),
    _mmlu("Which vessel carries blood away from the heart?", ["vein", "venule", "capillary", "artery"], 3),
]


# Code benchmarks: which program each side extracts from one generation (execution is not needed for that). A
# program's key is its entry point's last top-level definition, unparsed (None: unparsable or missing); an
# extraction is "right" when its key is the gold program's.
N_HUMANEVAL_SCORED = 8  # the first N real HumanEval items get the generation set

# MBPP items in evalplus's MBPP+ schema (task_id, prompt, entry_point, canonical_solution) with the original
# test_list OpenCompass's sanitized MBPP prompt shows, written for this comparison.
MBPP_ITEMS = [
    {"task_id": "Mbpp/9001", "entry_point": "shared_elements", "text": "Write a function to find the shared "
     "elements from the given two lists.",
     "test_list": ["assert set(shared_elements((3, 4, 5, 6), (5, 7, 4, 10))) == set((4, 5))",
                   "assert set(shared_elements((1, 2, 3, 4), (5, 4, 3, 7))) == set((3, 4))"],
     "canonical_solution": "def shared_elements(a, b):\n    return tuple(set(a) & set(b))\n"},
    {"task_id": "Mbpp/9002", "entry_point": "is_not_prime", "text": "Write a python function to identify "
     "non-prime numbers.", "test_list": ["assert is_not_prime(2) == False", "assert is_not_prime(10) == True"],
     "canonical_solution": "import math\n\n\ndef is_not_prime(n):\n    if n < 2:\n        return True\n"
                           "    for i in range(2, int(math.sqrt(n)) + 1):\n        if n % i == 0:\n"
                           "            return True\n    return False\n"},
    {"task_id": "Mbpp/9003", "entry_point": "square_sum", "text": "Write a function that returns the sum of the "
     "squares of a list of numbers.", "test_list": ["assert square_sum([1, 2, 3]) == 14"],
     "canonical_solution": "def _square(x):\n    return x * x\n\n\ndef square_sum(xs):\n"
                           "    return sum(_square(x) for x in xs)\n"},
]


def mbpp_prompt(item: dict) -> str:
    """evalplus's MBPP+ prompt: the task and one test in a docstring."""
    return f'"""\n{item["text"]}\n{item["test_list"][0]}\n"""\n'


# LiveCodeBench code_generation_lite items (one functional, with starter code; one stdin), written for this
# comparison; `solution` is the gold program.
LCB_ITEMS = [
    {"question_id": "lcb-9001", "question_title": "Fixed points", "platform": "leetcode",
     "question_content": "Given a list nums, return how many indices i have nums[i] == i.",
     "starter_code": "class Solution:\n    def fixedPoints(self, nums: List[int]) -> int:\n        ",
     "solution": "class Solution:\n\n    def fixedPoints(self, nums: List[int]) -> int:\n"
                 "        return sum((1 for i, x in enumerate(nums) if x == i))"},
    {"question_id": "lcb-9002", "question_title": "Sum of two", "platform": "atcoder",
     "question_content": "Read two integers A and B from standard input and print A + B.", "starter_code": "",
     "solution": "a, b = map(int, input().split())\nprint(a + b)"},
]


def program_key(code: str | None, entry_point: str | None) -> str | None:
    """The entry point's last top-level definition (what a test would call), or the whole module when there is
    no entry point (stdin programs), unparsed; None when the code does not parse or lacks the definition."""
    import ast

    if code is None:
        return None
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return None
    if entry_point is None:
        return ast.unparse(tree) or None
    defs = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == entry_point]
    return ast.unparse(defs[-1]) if defs else None


def _fence(code: str) -> str:
    return f"```python\n{code.rstrip()}\n```"


def code_generations(full: str, body: str | None, wrong: str, usage: str) -> dict[str, str]:
    """The fixed generation set of a code item: `full` the whole gold program, `body` the gold function body a
    base model writes after the prompt (None: not a completion benchmark), `wrong` another program, `usage` a
    call of the entry point."""
    gens = {
        "fenced": _fence(full) + "\n",
        "prose_around_fenced": f"Here is the solution:\n\n{_fence(full)}\n\nIt returns the required value.",
        "several_fenced_gold_first": f"{_fence(full)}\n\nUsage:\n\n{_fence(usage)}\n",
        "several_fenced_gold_last": f"A first try:\n\n{_fence(wrong)}\n\nFixed:\n\n{_fence(full)}\n",
        "no_fence_program": full,
        "wrong_fenced": _fence(wrong) + "\n",
    }
    if body is not None:
        gens["indented_body"] = body
        gens["indented_body_then_test"] = body.rstrip("\n") + f"\n\n\n{usage}\n"
    return gens


# HellaSwag items in the Rowan/hellaswag schema, written for this comparison: 11 train items (OpenCompass's
# 10-shot exemplars are the first 10) and 3 validation items.
def _hs(i: int, activity: str, ctx_a: str, ctx_b: str, endings: list[str], label: int) -> dict:
    return {"ind": i, "activity_label": activity, "ctx_a": ctx_a, "ctx_b": ctx_b, "ctx": f"{ctx_a} {ctx_b}",
            "endings": endings, "source_id": f"x-{i}", "split": "val", "split_type": "indomain", "label": str(label)}


HELLASWAG_TRAIN = [
    _hs(100 + i, act, a, b, ends, lab) for i, (act, a, b, ends, lab) in enumerate([
        ("Baking cookies", "A woman mixes flour and sugar in a bowl.", "she",
         ["adds eggs and stirs.", "throws the bowl away.", "paints the wall.", "drives to work."], 0),
        ("Washing a car", "A man sprays the car with a hose.", "he",
         ["eats the sponge.", "scrubs the door with soap.", "sings on stage.", "reads a book."], 1),
        ("Playing guitar", "A boy holds a guitar on his lap.", "he",
         ["feeds the cat.", "mows the lawn.", "strums a few chords.", "closes the window."], 2),
        ("Running a marathon", "Runners line up at the start.", "the gun",
         ["is painted blue.", "melts in the sun.", "sings loudly.", "fires and they start running."], 3),
        ("Making tea", "A kettle boils on the stove.", "the man",
         ["pours the water over a tea bag.", "plants a tree.", "repairs a bike.", "climbs the roof."], 0),
        ("Skateboarding", "A girl rides a skateboard down a ramp.", "she",
         ["knits a scarf.", "jumps and lands a trick.", "bakes bread.", "writes a letter."], 1),
        ("Cleaning windows", "A man sprays cleaner on a window.", "he",
         ["eats the spray.", "calls a taxi.", "wipes the glass with a cloth.", "swims across."], 2),
        ("Cutting hair", "A barber holds scissors over a customer.", "he",
         ["drinks the shampoo.", "leaves the shop.", "paints the chair.", "trims the hair at the back."], 3),
        ("Painting a fence", "A man dips a brush into paint.", "he",
         ["brushes paint onto the fence.", "throws the fence.", "eats lunch in the can.", "sleeps."], 0),
        ("Walking the dog", "A woman clips a leash to her dog.", "they",
         ["fly to the moon.", "walk down the street.", "cook dinner.", "watch a film on the dog."], 1),
        # An 11th: lm-eval draws n + 1 exemplars when a task names no test split (hellaswag), then drops one.
        ("Reading a book", "A man opens a book on his desk.", "he",
         ["eats the pages.", "throws the desk.", "turns the page and reads.", "paints the lamp."], 2),
    ])]
HELLASWAG_VAL = [
    _hs(1, "Ironing clothes", "A man lays a shirt on an ironing board.", "he",
        ["throws the iron.", "presses the iron over the sleeves.", "eats the shirt.", "plays piano."], 1),
    _hs(2, "Brushing teeth", "A child squeezes toothpaste onto a brush.", "the child",
        ["paints a picture.", "goes swimming.", "brushes the teeth.", "rides a horse."], 2),
    _hs(3, "Planting flowers", "A gardener digs a small hole.", "she",
        ["places a seedling in it and covers the roots.", "fills it with soup.", "sings to the moon.",
         "drives away."], 0),
]


def hellaswag_preprocess(text: str) -> str:
    """lm-eval's (and OpenCompass's hellaswag files') text cleaning: bracketed notes out, double spaces merged."""
    import re

    text = text.strip().replace(" [title]", ". ")
    return re.sub("\\[.*?\\]", "", text).replace("  ", " ")


def hellaswag_query_record(item: dict) -> dict:
    """An item as OpenCompass's hellaswag files hold it (lm-eval's preprocessed query, choices and gold)."""
    ctx = item["ctx_a"] + " " + item["ctx_b"].capitalize()
    return {"query": hellaswag_preprocess(item["activity_label"] + ": " + ctx),
            "choices": [hellaswag_preprocess(e) for e in item["endings"]], "gold": int(item["label"])}
