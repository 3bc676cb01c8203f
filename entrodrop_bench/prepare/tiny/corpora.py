"""Seeded generators of the tiny world's three domains: math word problems, Python functions, general text.

Every generator is a pure function of a `random.Random`, so a world seed fixes every byte. The domains
have structure a ~1M-parameter model can learn to generalize (templated arithmetic with worked steps,
templated function families, category-consistent sentences over a fixed set of entities), not just
memorize.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# Worked steps per problem (weights), operand and value ranges. Sized so a ~0.8M model can learn the
# arithmetic (digits are single tokens) and held-out accuracy lands inside 20-80% (see the sizing notes).
MATH_STEP_WEIGHTS = {1: 0.2, 2: 0.5, 3: 0.3}
MATH_MAX_OPERAND = 9
MATH_MAX_VALUE = 30
MATH_MAX_FACTOR = 5

NAMES = ["Ada", "Ben", "Cora", "Dan", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jade", "Kai", "Lena", "Milo", "Nora", "Omar", "Pia", "Quin", "Rosa", "Sam", "Tara", "Uma", "Vic", "Wes", "Yara", "Zed", "Alma", "Bo", "Cleo", "Dev", "Emi", "Finn", "Gia", "Hugo", "Iris", "Joel", "Kira", "Leo", "Maya", "Nico", "Oona", "Paz", "Remy", "Sia", "Theo", "Uli", "Vera", "Wren", "Xena", "Yuri", "Zoe"]
MALE = set(["Ben", "Dan", "Eli", "Gus", "Ivo", "Kai", "Milo", "Omar", "Quin", "Sam", "Vic", "Wes", "Zed", "Bo", "Dev", "Finn", "Hugo", "Joel", "Leo", "Nico", "Remy", "Theo", "Uli", "Yuri"])
ITEMS = ["apples", "pears", "eggs", "cards", "coins", "shells", "stamps", "books", "pens", "marbles", "stickers", "beads", "cookies", "plums", "rocks", "balls", "cups", "nails", "seeds", "tickets", "buttons", "candles", "leaves", "flowers", "boxes"]


def _pron(name: str) -> str:
    return "He" if name in MALE else "She"


@dataclass(frozen=True)
class MathProblem:
    question: str
    answer: str  # worked solution ending in "#### N" (GSM8K style)
    value: int

    @property
    def text(self) -> str:
        return f"{self.question}\n{self.answer}"

    def record(self) -> dict:
        return {"text": self.text, "question": self.question, "answer": self.answer, "value": self.value}


def _start(rng: random.Random, name: str, item: str) -> tuple[str, str, int]:
    """First sentence and first worked step: a plain count, or a product (bags of k)."""
    if rng.random() < 0.5:
        a = rng.randint(2, MATH_MAX_OPERAND)
        return f"{name} has {a} {item}.", "", a
    a, b = rng.randint(2, min(6, MATH_MAX_FACTOR)), rng.randint(2, MATH_MAX_FACTOR)
    frame = rng.choice(["{n} has {a} bags with {b} {i} in each bag.", "{n} buys {a} packs of {b} {i}."])
    return frame.format(n=name, a=a, b=b, i=item), f"{a} * {b} = {a * b}", a * b


def _step(rng: random.Random, name: str, x: int) -> tuple[str, str, int]:
    """One more event on the running count x: gain, loss or doubling."""
    p = _pron(name)
    kind = rng.choice(["add", "add", "sub", "sub", "mul"])
    if kind == "mul" and x * 2 <= MATH_MAX_VALUE:
        k = 2 if x * 3 > MATH_MAX_VALUE else rng.choice([2, 3])
        word = {2: "twice", 3: "three times"}[k]
        return f"Then {p.lower()} ends up with {word} as many.", f"{x} * {k} = {x * k}", x * k
    if kind == "sub" and x > 2:
        b = rng.randint(1, min(x - 1, MATH_MAX_OPERAND))
        verb = rng.choice(["gives away", "loses", "sells", "uses"])
        return f"{p} {verb} {b}.", f"{x} - {b} = {x - b}", x - b
    b = rng.randint(1, min(MATH_MAX_OPERAND, max(1, MATH_MAX_VALUE - x)))
    verb = rng.choice(["finds", "buys", "gets", "wins"])
    return f"{p} {verb} {b} more.", f"{x} + {b} = {x + b}", x + b


def math_problem(rng: random.Random, step_weights: dict[int, float] | None = None) -> MathProblem:
    """A GSM8K-style word problem; its number of worked steps is drawn from `step_weights` (default: the target's)."""
    weights = step_weights or MATH_STEP_WEIGHTS
    n_steps = rng.choices(list(weights), weights=list(weights.values()))[0]
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    sentence, first, x = _start(rng, name, item)
    sentences, steps = [sentence], [first] if first else []
    while len(steps) < n_steps:
        s, w, x = _step(rng, name, x)
        sentences.append(s)
        steps.append(w)
    question = " ".join(sentences) + f" How many {item} does {name} have now?"
    answer = "\n".join(steps) + f"\n#### {x}"
    return MathProblem(question, answer, x)


# ----------------------------------------------------------------------------------------------- code

@dataclass(frozen=True)
class CodeFunction:
    name: str
    args: tuple[str, ...]
    doc: str
    body: str  # indented function body (the canonical solution)
    inputs: tuple[tuple, ...]  # argument tuples used for tests

    @property
    def signature(self) -> str:
        return f"def {self.name}({', '.join(self.args)}):\n"

    @property
    def prompt(self) -> str:
        return f'{self.signature}    """{self.doc}"""\n'

    def call(self, args: tuple):
        scope: dict = {}
        exec(self.prompt + self.body, scope)  # noqa: S102 - our own generated code
        return scope[self.name](*args)

    def tests(self, inputs: tuple[tuple, ...] | None = None) -> list[str]:
        return [f"assert {self.name}({', '.join(map(repr, a))}) == {self.call(a)!r}" for a in (inputs or self.inputs)]

    @property
    def text(self) -> str:
        return self.prompt + self.body + "\n\n" + "\n".join(self.tests())

    def record(self) -> dict:
        return {"text": self.text, "prompt": self.prompt, "solution": self.body, "entry_point": self.name}


_VERBS = ("get", "compute", "calc", "make", "find")
_NOUNS = ("value", "total", "result", "score", "size", "count", "item", "word", "text", "data", "level", "amount")


def _fname(rng: random.Random, stem: str) -> str:
    return f"{rng.choice(_VERBS)}_{stem}_{rng.choice(_NOUNS)}"


def _ints(rng: random.Random, n: int, lo: int = -9, hi: int = 20) -> tuple[tuple, ...]:
    return tuple((rng.randint(lo, hi),) for _ in range(n))


def _int_pairs(rng: random.Random, n: int) -> tuple[tuple, ...]:
    return tuple((rng.randint(-9, 20), rng.randint(-9, 20)) for _ in range(n))


def _words(rng: random.Random, n: int) -> tuple[tuple, ...]:
    pool = ["cat", "dog", "sun", "tree", "bird", "fish", "moon", "star", "lamp", "rock", "cup", "hat", "red", "blue"]
    return tuple(("".join(rng.sample(pool, rng.randint(1, 2))),) for _ in range(n))


def _lists(rng: random.Random, n: int) -> tuple[tuple, ...]:
    return tuple(([rng.randint(-5, 15) for _ in range(rng.randint(0, 6))],) for _ in range(n))


def code_function(rng: random.Random, n_inputs: int = 4) -> CodeFunction:
    """A small Python function with a docstring, from one of several templated families."""
    k = rng.randint(2, 9)
    family = rng.randrange(12)
    x, y = rng.choice([("x", "y"), ("a", "b"), ("n", "m"), ("p", "q")])
    s = rng.choice(["s", "text", "word"])
    xs = rng.choice(["xs", "nums", "items", "values"])
    if family == 0:
        return CodeFunction(_fname(rng, "plus"), (x,), f"Return {x} plus {k}.", f"    return {x} + {k}\n", _ints(rng, n_inputs))
    if family == 1:
        return CodeFunction(_fname(rng, "times"), (x,), f"Return {x} times {k}.", f"    return {x} * {k}\n", _ints(rng, n_inputs))
    if family == 2:
        return CodeFunction(_fname(rng, "affine"), (x, y), f"Return {k} times {x} plus {y}.", f"    return {k} * {x} + {y}\n", _int_pairs(rng, n_inputs))
    if family == 3:
        return CodeFunction(_fname(rng, "diff"), (x, y), f"Return {x} minus {y}.", f"    return {x} - {y}\n", _int_pairs(rng, n_inputs))
    if family == 4:
        return CodeFunction(_fname(rng, "max"), (x, y), f"Return the larger of {x} and {y}.", f"    if {x} > {y}:\n        return {x}\n    return {y}\n", _int_pairs(rng, n_inputs))
    if family == 5:
        return CodeFunction(_fname(rng, "rev"), (s,), f"Return {s} reversed.", f"    return {s}[::-1]\n", _words(rng, n_inputs))
    if family == 6:
        return CodeFunction(_fname(rng, "upper"), (s,), f"Return {s} in upper case.", f"    return {s}.upper()\n", _words(rng, n_inputs))
    if family == 7:
        return CodeFunction(_fname(rng, "repeat"), (s,), f"Return {s} repeated {k} times.", f"    return {s} * {k}\n", _words(rng, n_inputs))
    if family == 8:
        return CodeFunction(_fname(rng, "sum"), (xs,), f"Return the sum of {xs}.", f"    total = 0\n    for v in {xs}:\n        total += v\n    return total\n", _lists(rng, n_inputs))
    if family == 9:
        return CodeFunction(_fname(rng, "evens"), (xs,), f"Return the even numbers in {xs}.", f"    return [v for v in {xs} if v % 2 == 0]\n", _lists(rng, n_inputs))
    if family == 10:
        return CodeFunction(_fname(rng, "above"), (xs,), f"Return how many numbers in {xs} are greater than {k}.", f"    return sum(1 for v in {xs} if v > {k})\n", _lists(rng, n_inputs))
    return CodeFunction(_fname(rng, "scale"), (xs,), f"Return each number in {xs} times {k}.", f"    return [v * {k} for v in {xs}]\n", _lists(rng, n_inputs))


def code_inputs(rng: random.Random, fn: CodeFunction, n: int) -> tuple[tuple, ...]:
    """Fresh test inputs of the same shape as `fn`'s own (for evalplus's plus_input)."""
    first = fn.inputs[0]
    if len(first) == 2:
        return _int_pairs(rng, n)
    if isinstance(first[0], list):
        return _lists(rng, n)
    if isinstance(first[0], str):
        return _words(rng, n)
    return _ints(rng, n, -50, 50)


# -------------------------------------------------------------------------------------------- general

CATEGORIES: dict[str, dict[str, tuple[str, ...]]] = {
    "fruit": {"adj": ("sweet", "ripe", "juicy"), "act": ("ate it for lunch", "cut it into slices", "put it in a bowl"), "place": ("orchard", "market")},
    "animal": {"adj": ("furry", "wild", "hungry"), "act": ("fed it some grass", "watched it run", "gave it water"), "place": ("farm", "forest")},
    "tool": {"adj": ("heavy", "sharp", "rusty"), "act": ("used it to fix the fence", "hung it on the wall", "cleaned the blade"), "place": ("workshop", "shed")},
    "bird": {"adj": ("noisy", "small", "bright"), "act": ("heard it sing", "saw it fly away", "gave it some seeds"), "place": ("nest", "sky")},
    "instrument": {"adj": ("loud", "old", "tuned"), "act": ("played a song on it", "tuned the strings", "practiced for hours"), "place": ("concert hall", "music room")},
    "vehicle": {"adj": ("fast", "new", "noisy"), "act": ("drove it to town", "filled the tank", "parked it outside"), "place": ("garage", "road")},
    "flower": {"adj": ("pretty", "fragrant", "tall"), "act": ("watered it every day", "smelled the petals", "picked it for a vase"), "place": ("garden", "meadow")},
    "metal": {"adj": ("shiny", "hard", "cold"), "act": ("melted it in a furnace", "polished it", "shaped it into a ring"), "place": ("mine", "forge")},
}
_SYL_A = ["ba", "be", "bi", "bo", "bu", "da", "de", "di", "do", "ka", "ke", "ki", "ko", "la", "le", "li", "lo", "ma", "me", "mi", "mo", "na", "ne", "ni", "no", "ra", "re", "ri", "ro", "sa", "se", "si", "so", "ta", "te", "ti", "to", "va", "ve", "vi", "zo"]
_SYL_B = ["n", "l", "r", "s", "x", "m", "k", "th", "sh", "nd", "rt", "lk"]
PEOPLE = NAMES
TOWNS = ("Belmora", "Cragton", "Dunmere", "Eastvale", "Farrow", "Glenholt", "Harwick", "Ironby", "Jesmond", "Kelby", "Lowmoor", "Marden")


def world_entities(seed: int, per_category: int = 12) -> dict[str, str]:
    """Generated pseudo-word entities and their category: the facts the general corpus keeps repeating."""
    rng = random.Random(f"{seed}:entities")
    entities: dict[str, str] = {}
    for cat in CATEGORIES:
        while sum(1 for c in entities.values() if c == cat) < per_category:
            word = rng.choice(_SYL_A) + rng.choice(_SYL_A) + rng.choice(_SYL_B)
            if word not in entities:
                entities[word] = cat
    return entities


def split_entities(entities: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(replayed, held back): alternate entities of each category. The CPT replay corpus mentions only the
    first half; tiny_general asks only about the second, which the base model learned in pre-training, so
    the benchmark measures what continual pre-training preserves (the paper's general benchmarks)."""
    replayed, held = {}, {}
    for cat in CATEGORIES:
        for i, name in enumerate(sorted(n for n, c in entities.items() if c == cat)):
            (replayed if i % 2 == 0 else held)[name] = cat
    return replayed, held


def town_products(seed: int, entities: dict[str, str]) -> dict[str, str]:
    rng = random.Random(f"{seed}:towns")
    names = sorted(entities)
    return {town: rng.choice(names) for town in TOWNS}


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def general_sentence(rng: random.Random, entities: dict[str, str], towns: dict[str, str]) -> str:
    """One sentence; every fact it states agrees with the world's fixed entity categories and town products."""
    ent = rng.choice(list(entities))
    cat = entities[ent]
    props = CATEGORIES[cat]
    person, other = rng.sample(PEOPLE, 2)
    town = rng.choice(list(towns))
    kind = rng.randrange(10)
    if kind == 0:
        return f"{_article(ent).capitalize()} {ent} is a kind of {cat}."
    if kind == 1:
        return f"{person} said that the {ent} is a kind of {cat}."
    if kind == 2:
        return f"{person} found {_article(ent)} {ent} in the {rng.choice(props['place'])}."
    if kind == 3:
        return f"{person} picked up the {ent} and {rng.choice(props['act'])}."
    if kind == 4:
        return f"The {ent} was {rng.choice(props['adj'])}, like every {cat}."
    if kind == 5:
        return f"In {town}, {person} showed {other} {_article(ent)} {ent}."
    if kind == 6:
        return f"The town of {town} is famous for its {towns[town]}."
    if kind == 7:
        return f"{person} and {other} walked to {town} on a {rng.choice(['sunny', 'rainy', 'cold', 'warm'])} {rng.choice(['morning', 'evening', 'day'])}."
    if kind == 8:
        return f"{person} bought {rng.randint(2, 9)} {ent}s at the market in {town}."
    return f"Every {cat} is {rng.choice(props['adj'])}, and the {ent} is no different."


def general_doc(rng: random.Random, entities: dict[str, str], towns: dict[str, str]) -> str:
    return " ".join(general_sentence(rng, entities, towns) for _ in range(rng.randint(3, 7)))
