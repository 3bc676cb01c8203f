"""LiveCodeBench v1 (code generation) adapter: LiveCodeBench's base-model prompt, greedy generation, tests in
the sandbox, pass@1.

Dataset: hub `livecodebench/code_generation_lite`, version tag `release_v1`: 400 problems released between
May 2023 and March 2024 (LeetCode, AtCoder, Codeforces). In that repository `test.jsonl` is exactly
release_v1 (later releases add test2.jsonl, ...). To run it offline, download that file once and point the
config at it:

    eval:
      evalplus_datasets: [livecodebench]            # code benchmarks share this list
      data_overrides: {livecodebench: /data/lcb/test.jsonl}

Schema, one problem per line: question_title, question_content, platform, question_id, contest_id,
contest_date, starter_code, difficulty, public_test_cases (JSON string: [{"input", "output",
"testtype": "stdin"|"functional"}]), private_test_cases (the same as JSON, or base64(zlib(pickle(JSON
string))) as published), metadata (JSON string; functional problems name their method in "func_name").

Prompt: LiveCodeBench's own template for base models (`lcb_runner/prompts/code_generation.py`, the
GenericBase style): one solved example, then the problem, as "### Question\n<text>\n\n" + (problems with
starter code: "### Starter Code\n<code>\n\n") + "### Answer\n\n" + <solution>; the example is the first
entry of LiveCodeBench's `few_shot_examples/generation/func.json` (starter-code problems) or `stdin.json`
(the others). Put those two files beside the data file (or in `few_shot_examples/generation/` beside it)
to get LiveCodeBench's exact prompt; without them a project-written example of the same shape is used
and the result's provenance says so (`lcb_exemplar`). Generation stops at "###" (LiveCodeBench's stop for
base models) and the program is the stripped completion, as LiveCodeBench extracts base-model code.

Tests: `stdin` problems run the program once per test with the input on stdin and compare whitespace-split
tokens (numbers within 1e-6); `functional` (LeetCode) problems call `Solution().<func_name>(*args)` with one
JSON value per input line and compare to the JSON output. A problem passes when all public and private
tests pass; every program runs through `sandbox.run_sandboxed`.
"""

from __future__ import annotations

import base64
import io
import json
import os
import pickle
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from entrodrop_bench.atomic import write_text
from entrodrop_bench.errors import DataError
from entrodrop_bench.evaluate.sandbox import Limits, run_python
from entrodrop_bench.paths import CodeEvalDir

DATASET_ID = "livecodebench/code_generation_lite"
RELEASE = "release_v1"
TEST_TIMEOUT_S = 6.0
PREAMBLE = ("from typing import *\nimport math, collections, heapq, itertools, bisect, functools, re, string, sys\n"
            "from collections import *\nfrom functools import *\nfrom itertools import *\nfrom heapq import *\n")
REQUIRED = ("question_id", "question_content", "starter_code", "public_test_cases", "private_test_cases", "metadata")


class _StringsOnly(pickle.Unpickler):
    """The published private tests are a pickled str: refuse anything that would import code."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a test-case blob")


def decode_tests(blob: str) -> list[dict]:
    if not blob:
        return []
    try:
        return json.loads(blob)
    except json.JSONDecodeError:
        raw = zlib.decompress(base64.b64decode(blob.encode()))
        return json.loads(_StringsOnly(io.BytesIO(raw)).load())


def read_problems(path: Path) -> list[dict]:
    try:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"LiveCodeBench file {path}: cannot read it as JSON lines ({exc})") from None
    problems = []
    for i, row in enumerate(rows):
        missing = [k for k in REQUIRED if k not in row]
        if missing:
            raise DataError(f"LiveCodeBench file {path}, line {i + 1}: missing fields {missing} (expected the "
                            f"{DATASET_ID} {RELEASE} schema, see entrodrop_bench/evaluate/livecodebench.py)")
        meta = row["metadata"] if isinstance(row["metadata"], dict) else json.loads(row["metadata"] or "{}")
        tests = decode_tests(row["public_test_cases"]) + decode_tests(row["private_test_cases"])
        problems.append({**row, "metadata": meta, "tests": tests})
    if not problems:
        raise DataError(f"LiveCodeBench file {path} is empty")
    return problems


STOP = ("###",)
EXEMPLAR_FILES = {"functional": "func.json", "stdin": "stdin.json"}
# Project-written examples in LiveCodeBench's few-shot schema, used only when its own files are absent.
PROJECT_EXEMPLARS = {
    "functional": {
        "question": "Given an integer array nums, return the number of indices i with nums[i] equal to i.\n\n"
                    "Example 1:\n\nInput: nums = [0,2,2,5]\nOutput: 2\n\nConstraints:\n\n"
                    "1 <= nums.length <= 100\n0 <= nums[i] <= 100\n",
        "sample_code": "class Solution:\n    def fixedPoints(self, nums: List[int]) -> int:\n        ",
        "answer": "class Solution:\n    def fixedPoints(self, nums: List[int]) -> int:\n"
                  "        return sum(1 for i, x in enumerate(nums) if x == i)",
    },
    "stdin": {
        "question": "You are given N integers. Print the difference between the largest and the smallest.\n\n"
                    "-----Input-----\n\nThe first line contains N (1 <= N <= 100). The second line contains "
                    "N integers between -1000 and 1000.\n\n-----Output-----\n\nPrint one integer.\n\n"
                    "-----Example-----\nInput\n3\n4 -1 7\n\nOutput\n8\n",
        "answer": "n = int(input())\nvalues = list(map(int, input().split()))\nprint(max(values) - min(values))",
    },
}


def load_exemplars(data: Path | None) -> tuple[dict[str, dict], str]:
    """(the one-shot example per problem kind, where it came from): LiveCodeBench's own few-shot files
    when they sit beside the data file (or in few_shot_examples/generation/ there), else the project's."""
    if data is not None:
        for folder in (data.parent, data.parent / "few_shot_examples" / "generation"):
            files = {kind: folder / name for kind, name in EXEMPLAR_FILES.items()}
            if all(f.is_file() for f in files.values()):
                try:
                    return {kind: json.loads(f.read_text())[0] for kind, f in files.items()}, "livecodebench"
                except (OSError, json.JSONDecodeError, IndexError, KeyError) as exc:
                    raise DataError(f"LiveCodeBench few-shot files in {folder}: cannot read them ({exc})") from None
    return PROJECT_EXEMPLARS, "project"


def prompt(problem: dict, exemplars: dict[str, dict] | None = None) -> str:
    """LiveCodeBench's base-model prompt: one solved example of the same kind, then the problem."""
    exemplars = exemplars or PROJECT_EXEMPLARS
    has_starter = bool(problem["starter_code"])
    example = exemplars["functional" if has_starter else "stdin"]

    def block(question: str, starter: str, answer: str) -> str:
        text = f"### Question\n{question}\n\n"
        if has_starter:  # the section follows the evaluated problem's kind, for the example too
            text += f"### Starter Code\n{starter}\n\n"
        return text + "### Answer\n\n" + answer + ("\n\n" if answer else "")

    return (block(example["question"], example.get("sample_code", ""), example["answer"])
            + block(problem["question_content"], problem["starter_code"], ""))


def extract_code(problem: dict, completion: str) -> str:
    """The program: the completion up to LiveCodeBench's stop ("###"), stripped (its base-model extraction)."""
    for stop in STOP:
        completion = completion.split(stop)[0]
    return completion.strip()


def _tokens_equal(got: str, want: str) -> bool:
    a, b = got.split(), want.split()
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if x == y:
            continue
        try:
            if abs(float(x) - float(y)) > 1e-6:
                return False
        except ValueError:
            return False
    return True


# The tested program's module-level prints go to stderr; the harness's driver writes one tagged JSON line per
# case (the returned value, never a verdict) to a duplicate of the original stdout. The program can write there
# too, but all it can put there is values: the expected outputs never enter the sandbox, and the comparison
# (`_judge_functional`) runs here, in the harness.
_DRIVER_HEAD = "import os as _os\n_RESULT = _os.fdopen(_os.dup(1), 'w')\n_os.dup2(2, 1)\n"


def _functional_driver(code: str, func: str, tests: list[dict]) -> str:
    """The program for a functional problem: the solution, then one call per test on its inputs only."""
    from entrodrop_bench.evaluate._literal import SOURCE

    cases = [[json.loads(line) for line in t["input"].split("\n") if line.strip()] for t in tests]
    return (_DRIVER_HEAD + "def _literal_module():\n    ns = {'__name__': '_literal'}\n"
            f"    exec({SOURCE.split('SOURCE = ')[0]!r}, ns)\n    return ns\n_L = _literal_module()\n"
            + PREAMBLE + code + "\n\nimport json as _json\n"
            f"for _args in _json.loads({json.dumps(json.dumps(cases))}):\n"
            "    try:\n"
            f"        _line = ['ok', _L['encode'](Solution().{func}(*_args))]\n"
            "    except BaseException as _e:\n"
            "        _line = ['error', type(_e).__name__]\n"
            "    _RESULT.write(_json.dumps(_line) + '\\n')\n    _RESULT.flush()\n"
            "    if _line[0] == 'error':\n        break\n")


def _judge_functional(stdout: str, tests: list[dict]) -> tuple[bool, str]:
    """(passed, reason): every test's returned value, decoded as plain data, equals its expected output."""
    from entrodrop_bench.evaluate._literal import NotPlain, decode

    lines = stdout.splitlines()
    for i, test in enumerate(tests):
        if i >= len(lines):
            return False, f"test {i}: no result"
        try:
            kind, value = json.loads(lines[i])
            got = decode(value) if kind == "ok" else None
        except (ValueError, TypeError, NotPlain):
            return False, f"test {i}: unreadable result"
        if kind != "ok":
            return False, f"test {i}: raised {str(value)[:80]}"
        if isinstance(got, tuple):
            got = list(got)
        if got != json.loads(test["output"]):
            return False, f"test {i}: wrong answer"
    return True, "ok"


def _failure(r, i: int | None = None) -> str:
    """Why a run failed: timeout (the wall clock or the CPU limit), output limit, or error."""
    where = f"test {i}: " if i is not None else ""
    if r.timed_out:
        return where + "timeout"
    if r.output_limited:
        return where + "output limit"
    return where + "error"


def check_problem(problem: dict, code: str, *, timeout_s: float = TEST_TIMEOUT_S, allow_weak: bool = False) -> dict:
    """Run every test of one problem in the sandbox; {"passed": bool, "reason": str}. The verdict is decided
    here from the program's outputs, compared with expected outputs the program never sees."""
    tests = problem["tests"]
    if not tests:
        return {"passed": False, "reason": "no tests"}
    if tests[0].get("testtype") == "functional":
        func = problem["metadata"].get("func_name")
        if not func or not str(func).isidentifier():
            return {"passed": False, "reason": "functional problem without a valid metadata.func_name"}
        wall = timeout_s * max(1, len(tests) // 4)
        r = run_python(_functional_driver(code, func, tests), limits=Limits(wall_s=wall, cpu_s=int(wall) + 1),
                       allow_weak=allow_weak)
        if r.timed_out:
            return {"passed": False, "reason": "timeout"}
        passed, reason = _judge_functional(r.stdout, tests)
        if not passed and not r.ok:
            reason = f"{_failure(r)}: {reason}; {r.stderr[-200:]}"
        return {"passed": passed, "reason": reason}
    for i, test in enumerate(tests):
        r = run_python(PREAMBLE + code, stdin=test["input"], limits=Limits(wall_s=timeout_s, cpu_s=int(timeout_s) + 1),
                       allow_weak=allow_weak)
        if not r.ok:
            return {"passed": False, "reason": _failure(r, i)}
        if not _tokens_equal(r.stdout, test["output"]):
            return {"passed": False, "reason": f"test {i}: wrong answer"}
    return {"passed": True, "reason": "ok"}


def score_solutions(problems: list[dict], codes: list[str], *, parallel: int | None = None,
                    allow_weak: bool = False) -> dict:
    """pass@1 (greedy: one solution per problem) with per-problem verdicts and `items` (question ids, 0/1)."""
    with ThreadPoolExecutor(max_workers=parallel or os.cpu_count() or 1) as pool:
        verdicts = list(pool.map(lambda pc: check_problem(*pc, allow_weak=allow_weak), zip(problems, codes)))
    per_task = {p["question_id"]: v for p, v in zip(problems, verdicts)}
    n = len(problems)
    items = {"ids": [str(p["question_id"]) for p in problems], "scores": [float(bool(v["passed"])) for v in verdicts]}
    return {"pass@1": sum(v["passed"] for v in verdicts) / n, "n_tasks": n, "per_task": per_task, "items": items}


def run_livecodebench(model: Any, tokenizer: Any, data: Path | None, *, work_dir: Path, batch_size: int,
                      limit: int | None, max_gen_toks: int, allow_weak: bool = False,
                      generator: Callable[..., list[str]] | None = None) -> dict:
    """Generate greedily for each problem, extract the code, run the tests in the sandbox. `generator` (the vLLM
    backend's, see `evalplus_runner.Generator`) replaces HF generation on `model`."""
    from entrodrop_bench.evaluate.evalplus_runner import generate
    from entrodrop_bench.evaluate.sandbox import require_isolation

    level = require_isolation(allow_weak, "LiveCodeBench's generated programs")  # before any generation
    if data is None:
        raise DataError(f"livecodebench needs a local {DATASET_ID} ({RELEASE}) file: set eval.data_overrides.livecodebench")
    problems = read_problems(data)[: limit or None]
    exemplars, source = load_exemplars(data)
    prompts = [prompt(p, exemplars) for p in problems]
    if generator is not None:
        completions = generator(prompts, max_new_tokens=max_gen_toks, stop=STOP)
    else:
        completions = generate(model, tokenizer, prompts, batch_size=batch_size, max_new_tokens=max_gen_toks, stop=STOP)
    codes = [extract_code(p, c) for p, c in zip(problems, completions)]
    work_dir.mkdir(parents=True, exist_ok=True)
    write_text(CodeEvalDir(work_dir).samples_file, "".join(json.dumps({"question_id": p["question_id"], "code": c}) + "\n"
                                                    for p, c in zip(problems, codes)))
    return {**score_solutions(problems, codes, allow_weak=allow_weak), "isolation": level, "lcb_exemplar": source}
