"""LiveCodeBench v1 adapter on a tiny local fixture in the published schema (incl. compressed private tests)."""

from __future__ import annotations

import base64
import json
import pickle
import zlib
from pathlib import Path

import pytest

from entrodrop_bench.config import EvalConfig
from entrodrop_bench.evaluate import livecodebench as lcb
from entrodrop_bench.evaluate import sandbox
from entrodrop_bench.paths import Layout

LEVEL = sandbox.isolation_level()
WEAK_OK = LEVEL != "bwrap"  # runs at the level this machine has, as a config accepting it would
needs_sandbox = pytest.mark.skipif(LEVEL not in sandbox.LEVELS,
                                   reason=f"no usable sandbox here (`{LEVEL}`): apt-get install bubblewrap")


def _compress(tests: list[dict]) -> str:
    return base64.b64encode(zlib.compress(pickle.dumps(json.dumps(tests)))).decode()


def lcb_rows() -> list[dict]:
    base = {"platform": "atcoder", "contest_id": "abc300", "contest_date": "2023-05-01T00:00:00", "difficulty": "easy"}
    return [
        {**base, "question_id": "abc300_a", "question_title": "Sum", "starter_code": "", "metadata": "{}",
         "question_content": "Read two integers A and B and print A+B.",
         "public_test_cases": json.dumps([{"input": "1 2\n", "output": "3\n", "testtype": "stdin"}]),
         "private_test_cases": _compress([{"input": "10 -4\n", "output": "6\n", "testtype": "stdin"}])},
        {**base, "question_id": "abc300_b", "question_title": "Halve", "starter_code": "", "metadata": "{}",
         "question_content": "Read N and print N/2 as a decimal.",
         "public_test_cases": json.dumps([{"input": "3\n", "output": "1.5\n", "testtype": "stdin"}]),
         "private_test_cases": json.dumps([{"input": "5\n", "output": "2.500000\n", "testtype": "stdin"}])},
        {**base, "platform": "leetcode", "question_id": "2999", "question_title": "Max pair sum",
         "starter_code": "class Solution:\n    def maxSum(self, nums: List[int], k: int) -> int:\n        ",
         "metadata": json.dumps({"func_name": "maxSum"}),
         "question_content": "Return the sum of the k largest numbers.",
         "public_test_cases": json.dumps([{"input": "[1, 5, 3]\n2", "output": "8", "testtype": "functional"}]),
         "private_test_cases": _compress([{"input": "[7]\n1", "output": "7", "testtype": "functional"}])},
    ]


@pytest.fixture
def lcb_file(tmp_path) -> Path:
    path = tmp_path / "test.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lcb_rows()))
    return path


GOOD = {"abc300_a": "a, b = map(int, input().split())\nprint(a + b)\n",
        "abc300_b": "print(int(input()) / 2)\n",
        "2999": "class Solution:\n    def maxSum(self, nums: List[int], k: int) -> int:\n        return sum(sorted(nums)[-k:])\n"}


def test_schema_and_compressed_private_tests(lcb_file):
    problems = lcb.read_problems(lcb_file)
    assert [len(p["tests"]) for p in problems] == [2, 2, 2]
    assert problems[2]["metadata"]["func_name"] == "maxSum"
    assert lcb.prompt(problems[2]).endswith("### Starter Code\n" + problems[2]["starter_code"] + "\n\n### Answer\n\n")


@needs_sandbox
def test_correct_pass_wrong_and_hostile_fail(lcb_file, tmp_path):
    problems = lcb.read_problems(lcb_file)
    good = [lcb.extract_code(p, "\n" + GOOD[p["question_id"]] + "\n### Question\ntrailing prose") for p in problems]
    out = lcb.score_solutions(problems, good, allow_weak=WEAK_OK)
    assert out["pass@1"] == 1.0, out["per_task"]
    assert out["items"] == {"ids": [p["question_id"] for p in problems], "scores": [1.0] * len(problems)}
    victim = tmp_path / "keep.txt"
    victim.write_text("keep")
    bad = ["print(4)\n",  # wrong answer on the private test only
           f"import os\nos.remove({str(victim)!r})\n",
           lcb.extract_code(problems[2], "class Solution:\n    def maxSum(self, nums, k):\n        while True:\n            pass\n")]
    out = lcb.score_solutions(problems, bad, allow_weak=WEAK_OK)
    assert out["pass@1"] == 0.0
    if LEVEL == "bwrap":  # the documented fallbacks do not protect the file system
        assert victim.read_text() == "keep"


def test_refuses_pickled_code_in_test_blob():
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    blob = base64.b64encode(zlib.compress(pickle.dumps(Evil()))).decode()
    with pytest.raises(pickle.UnpicklingError):
        lcb.decode_tests(blob)


@needs_sandbox
def test_tiny_checkpoint_through_livecodebench(mini_config, mini_assets, lcb_file):
    from test_eval_lm_eval import make_checkpoint

    from entrodrop_bench.evaluate.stage import evaluate_experiment
    from entrodrop_bench.evaluate.store import load_results

    ev = EvalConfig(evalplus_datasets=["livecodebench"], data_overrides={"livecodebench": str(lcb_file)},
                    batch_size=4, max_gen_toks=8, allow_weak_isolation=WEAK_OK)
    config = mini_config().model_copy(update={"eval": ev})
    layout = Layout.from_config(config)
    make_checkpoint(mini_assets["model"], layout)
    assert evaluate_experiment(config, layout, progress=False)["evaluated"] == 1
    (result,) = load_results(layout)
    assert result.benchmark == "livecodebench" and result.primary_metric == "pass@1"
    assert result.score == 0.0 and result.provenance.n_samples == 3
    assert result.items.ids == [p["question_id"] for p in lcb.read_problems(lcb_file)] and result.items.scores == [0.0] * 3
    assert result.provenance.sandbox == LEVEL


# --------------------------------------------------------------------------- forging and clocks
# Forging programs written by someone who read this repository: each tries to make a wrong solution pass.
FORGE_FUNCTIONAL = {
    # The old driver printed ALL_PASSED after its checks: print it first and leave before they run.
    "pass marker then exit": "import os\nprint('ALL_PASSED', flush=True)\nos._exit(0)\n",
    # Write to the driver's result descriptor (fd 1's duplicate): claim the expected values of the public test.
    "write result descriptor": ("import os, json\nfor fd in range(3, 20):\n    try:\n"
                                "        os.write(fd, b'[\"ok\", [\"i\", \"8\"]]\\n[\"ok\", [\"i\", \"8\"]]\\n')\n"
                                "    except OSError:\n        pass\nos._exit(0)\n"),
    # An object equal to everything, as the return value.
    "equal to everything": ("class _Any:\n    def __eq__(self, o):\n        return True\n    def __ne__(self, o):\n"
                            "        return False\nclass Solution:\n    def maxSum(self, nums, k):\n        return _Any()\n"),
    # An int subclass equal to everything.
    "int subclass": ("class _I(int):\n    def __eq__(self, o):\n        return True\n    def __ne__(self, o):\n"
                     "        return False\n    __hash__ = int.__hash__\nclass Solution:\n    def maxSum(self, nums, k):\n"
                     "        return _I(0)\n"),
    # Read the expected outputs from the driver's own data (there are none in the sandbox: only inputs).
    "read driver data": ("import sys\nclass Solution:\n    def maxSum(self, nums, k):\n"
                         "        g = sys._getframe(1).f_globals\n"
                         "        return [v for v in g.values() if isinstance(v, list)][0]\n"),
}


@needs_sandbox
@pytest.mark.parametrize("name", sorted(FORGE_FUNCTIONAL))
def test_forging_functional_program_scores_zero(lcb_file, name):
    problem = lcb.read_problems(lcb_file)[2]
    assert not lcb.check_problem(problem, FORGE_FUNCTIONAL[name], allow_weak=WEAK_OK)["passed"]


FORGE_STDIN = {
    "expected of the public test": "print(3)\n",  # right on the public test only
    "pass marker": "import os\nprint('ALL_PASSED')\nos._exit(0)\n",
    "write every descriptor": ("import os\nfor fd in range(1, 20):\n    try:\n        os.write(fd, b'3\\n')\n"
                               "    except OSError:\n        pass\n"),
}


@needs_sandbox
@pytest.mark.parametrize("name", sorted(FORGE_STDIN))
def test_forging_stdin_program_scores_zero(lcb_file, name):
    problem = lcb.read_problems(lcb_file)[0]
    assert not lcb.check_problem(problem, FORGE_STDIN[name], allow_weak=WEAK_OK)["passed"]


def _stdin_problem(size: int) -> dict:
    return {"question_id": "big", "metadata": {}, "starter_code": "",
            "tests": [{"input": "1\n" + "x" * size + "\n", "output": "1\n", "testtype": "stdin"}]}


@needs_sandbox
@pytest.mark.parametrize("code", ["import time\ntime.sleep(60)\n",  # never reads, never writes
                                  "import sys, time\nwhile True:\n    sys.stdout.write('y')\n    time.sleep(0.001)\n",
                                  "import sys, time\nwhile True:\n    sys.stdin.read(1)\n    time.sleep(0.01)\n"])
def test_every_wait_is_bounded_by_the_wall_clock_and_reported_as_timeout(code):
    """A stdin test far larger than a pipe buffer, given to a program that never reads (or writes forever):
    the harness returns after the wall clock plus a small margin, and says `timeout`."""
    import time

    tic = time.monotonic()
    verdict = lcb.check_problem(_stdin_problem(8 << 20), code, timeout_s=2.0, allow_weak=WEAK_OK)
    assert time.monotonic() - tic < 2.0 + 3.0
    assert verdict == {"passed": False, "reason": "test 0: timeout"}


@needs_sandbox
def test_functional_program_that_never_returns_is_a_timeout(lcb_file):
    problem = lcb.read_problems(lcb_file)[2]
    code = "import time\nclass Solution:\n    def maxSum(self, nums, k):\n        time.sleep(60)\n"
    assert lcb.check_problem(problem, code, timeout_s=2.0, allow_weak=WEAK_OK) == {"passed": False, "reason": "timeout"}


@needs_sandbox
def test_writing_past_the_file_limit_is_an_output_limit(lcb_file):
    problem = lcb.read_problems(lcb_file)[0]
    code = "import sys\nwhile True:\n    sys.stdout.write('y' * 65536)\n"
    assert lcb.check_problem(problem, code, allow_weak=WEAK_OK) == {"passed": False, "reason": "test 0: output limit"}
