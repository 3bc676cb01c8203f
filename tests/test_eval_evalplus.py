"""Code benchmarks: generation by the harness, evalplus evaluation in the sandbox, results in the store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from helpers import eval_result

from entrodrop_bench.config import EvalConfig
from entrodrop_bench.evaluate import sandbox
from entrodrop_bench.paths import Layout

LEVEL = sandbox.isolation_level()
# Code evaluation runs at the level this machine has: bubblewrap, or (accepted here, as a config may) a weak one.
WEAK_OK = LEVEL != "bwrap"
pytestmark = pytest.mark.skipif(LEVEL not in sandbox.LEVELS,
                                reason=f"no usable sandbox here (`{LEVEL}`): apt-get install bubblewrap")


def code_problems() -> list[dict]:
    """Three tiny problems in evalplus's HumanEval schema (as the tiny world writes tiny_code)."""
    def problem(i: int, name: str, args: str, doc: str, body: str, inputs: list, plus: list) -> dict:
        return {"task_id": f"tiny/{i}", "prompt": f'def {name}({args}):\n    """{doc}"""\n', "entry_point": name,
                "canonical_solution": body, "base_input": inputs, "plus_input": plus, "atol": 0, "contract": ""}

    return [
        problem(0, "add_two", "x", "Return x plus two.", "    return x + 2\n", [[1], [5]], [[-3], [100]]),
        problem(1, "count_a", "s", "Count letters a in s.", "    return s.count('a')\n", [["banana"], [""]], [["aaa"]]),
        problem(2, "first_or_zero", "xs", "First item, or 0 when empty.", "    return xs[0] if xs else 0\n",
                [[[4, 5]], [[]]], [[[9]]]),
    ]


@pytest.fixture
def code_file(tmp_path) -> Path:
    path = tmp_path / "tiny_code.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in code_problems()))
    return path


def test_sanitize_and_truncate_generation():
    from entrodrop_bench.evaluate.evalplus_runner import _truncate, make_samples

    assert _truncate("    return x + 2\n\ndef other():\n    pass") == "    return x + 2\n"
    assert _truncate("    return 1\nprint(add_two(3))") == "    return 1"
    p = code_problems()[0]
    sample = make_samples([p], ["    return x + 2\n\nimport os\nos.system('true')\n"])[0]
    assert "def add_two" in sample["solution"] and "os.system" not in sample["solution"]


def test_hostile_solutions_fail_and_canonical_still_pass(code_file, tmp_path):
    """Hostile code inside evalplus's own test processes: contained by the sandbox around evalplus."""
    from entrodrop_bench.evaluate.evalplus_runner import evaluate_samples
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    probs = code_problems()
    hostile_delete = probs[1]["prompt"] + (
        f"    import io, posix\n    posix.unlink({str(victim)!r})\n    io.open({str(victim)!r} + '.x', 'w').write('x')\n"
        "    return s.count('a')\n")
    hostile_loop = probs[2]["prompt"] + "    while True:\n        pass\n"
    samples = [{"task_id": probs[0]["task_id"], "solution": probs[0]["prompt"] + probs[0]["canonical_solution"]},
               {"task_id": probs[1]["task_id"], "solution": hostile_delete},
               {"task_id": probs[2]["task_id"], "solution": hostile_loop}]
    out = evaluate_samples(code_file, samples, tmp_path / "work", cache_dir=tmp_path / "cache", allow_weak=WEAK_OK)
    assert out["per_task"]["tiny/0"] == {"base": "pass", "plus": "pass"}
    assert out["per_task"]["tiny/1"]["base"] == "fail" and out["per_task"]["tiny/2"]["base"] != "pass"
    assert out["pass@1"] == pytest.approx(1 / 3)
    assert out["items"] == {"ids": ["tiny/0", "tiny/1", "tiny/2"], "scores": [1.0, 0.0, 0.0]}
    if LEVEL == "bwrap":  # the documented fallbacks do not protect the file system
        assert victim.read_text() == "keep me" and not Path(f"{victim}.x").exists()
    # A second run in the same folder re-evaluates (no stale `_eval_results.json` reuse, no Y/N prompt).
    samples[2] = {"task_id": probs[2]["task_id"], "solution": probs[2]["prompt"] + probs[2]["canonical_solution"]}
    again = evaluate_samples(code_file, samples, tmp_path / "work", cache_dir=tmp_path / "cache", allow_weak=WEAK_OK)
    assert again["pass@1"] == pytest.approx(2 / 3)


def test_tiny_checkpoint_through_evalplus_into_store(mini_config, mini_assets, code_file, monkeypatch):
    from test_eval_lm_eval import make_checkpoint

    from entrodrop_bench.evaluate import stage as evaluation
    from entrodrop_bench.evaluate.stage import evaluate_experiment
    from entrodrop_bench.evaluate.store import load_results

    ev = EvalConfig(evalplus_datasets=["tiny_code"], batch_size=4, limit=2, max_gen_toks=16,
                    allow_weak_isolation=WEAK_OK)
    config = mini_config().model_copy(update={"eval": ev})
    layout = Layout.from_config(config)
    make_checkpoint(mini_assets["model"], layout, step=4)
    world = {"tiny_code": code_file}
    summary = evaluate_experiment(config, layout, world_benchmarks=world, progress=False)
    assert (summary["evaluated"], summary["failed"]) == (1, 0), summary
    (result,) = load_results(layout)
    assert result.harness == "evalplus" and result.primary_metric == "pass@1"
    assert 0.0 <= result.score <= 1.0 and "base_pass@1" in result.metrics
    assert result.provenance.n_samples == 2  # limit: a 2-task subset file, samples cover every task
    assert result.items.ids == ["tiny/0", "tiny/1"] and set(result.items.scores) <= {0.0, 1.0}
    assert sum(result.items.scores) / 2 == pytest.approx(result.score)
    assert result.provenance.sandbox == LEVEL and len(result.provenance.ground_truth_sha256) == 64
    samples = layout.eval_work_dir("plain", 0, 4) / "evalplus" / "tiny_code" / "eval" / "samples.jsonl"
    assert [json.loads(line)["task_id"] for line in samples.read_text().splitlines()] == ["tiny/0", "tiny/1"]

    monkeypatch.setattr(evaluation._Loaded, "model_and_tokenizer", lambda self: (_ for _ in ()).throw(AssertionError))
    again = evaluate_experiment(config, layout, world_benchmarks=world, progress=False)
    assert (again["evaluated"], again["skipped"]) == (0, 1)


# --------------------------------------------------------------------------- round two (issue 10)
def _canonical(probs: list[dict]) -> list[dict]:
    return [{"task_id": p["task_id"], "solution": p["prompt"] + p["canonical_solution"]} for p in probs]


def test_planted_symlinks_and_a_killed_child_touch_nothing_outside(code_file, tmp_path):
    """A solution leaves links named like the harness's files in its folder, then kills the evalplus child."""
    from entrodrop_bench.evaluate.evalplus_runner import evaluate_samples

    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    work = tmp_path / "work"
    probs = code_problems()
    names = ["evalplus.log", "problems.jsonl", "samples.jsonl", "summary.json", "samples_eval_results.json",
             "dataset.jsonl", "evalplus-ground-truth.log"]
    hostile = probs[0]["prompt"] + (
        "    import os, posix, signal\n"  # evalplus nulls os.killpg, os.unlink and open; posix and io are left
        f"    for n in {names!r}:\n"
        "        for d in ('.', os.environ.get('HOME', '.'), os.environ.get('XDG_CACHE_HOME', '.')):\n"
        "            try:\n"
        f"                os.symlink({str(victim)!r}, os.path.join(d, n))\n"
        "            except OSError:\n"
        "                pass\n"
        "    posix.killpg(0, signal.SIGKILL)\n")
    samples = [{"task_id": probs[0]["task_id"], "solution": hostile}, *_canonical(probs)[1:]]
    with pytest.raises(RuntimeError, match="evalplus (run|evaluation|judge) failed"):
        evaluate_samples(code_file, samples, work, cache_dir=tmp_path / "cache", allow_weak=WEAK_OK)
    assert victim.read_text() == "keep me"
    assert not [p for p in tmp_path.rglob("*") if p.is_symlink()]
    assert (work / "evalplus.log").is_file() and not (work / "evalplus.log").is_symlink()
    # The same folder again: nothing planted is reused, and correct code scores full marks.
    out = evaluate_samples(code_file, _canonical(probs), work, cache_dir=tmp_path / "cache", allow_weak=WEAK_OK)
    assert out["pass@1"] == 1.0 and victim.read_text() == "keep me"


def test_a_solution_cannot_change_the_ground_truth_another_evaluation_reads(code_file, tmp_path):
    """Checkpoint A's solution rewrites every ground-truth pickle it can find with wrong expected outputs;
    checkpoint B's correct solutions, evaluated afterwards with the same cache, still pass."""
    from entrodrop_bench.evaluate.evalplus_runner import evaluate_samples

    cache = tmp_path / "cache"
    probs = code_problems()
    evaluate_samples(code_file, _canonical(probs), tmp_path / "warm", cache_dir=cache, allow_weak=WEAK_OK)
    hostile = probs[0]["prompt"] + (
        "    import os, io, posix, pickle, glob\n"
        "    bad = {t: {'base': [None] * 9, 'plus': [None] * 9, 'base_time': [1.0] * 9, 'plus_time': [1.0] * 9}\n"
        "           for t in ('tiny/0', 'tiny/1', 'tiny/2')}\n"
        f"    for d in (os.environ.get('XDG_CACHE_HOME', '/nonexistent'), {str(cache)!r}):\n"
        "        for f in glob.glob(os.path.join(d, '**', '*.pkl'), recursive=True):\n"
        "            for how in ('replace', 'write'):\n"
        "                try:\n"
        "                    if how == 'replace':\n"
        "                        posix.unlink(f)\n"
        "                    with io.open(f, 'wb') as fh:\n"
        "                        pickle.dump(bad, fh)\n"
        "                except Exception:\n"
        "                    pass\n"
        "    return x + 2\n")
    a = evaluate_samples(code_file, [{"task_id": "tiny/0", "solution": hostile}, *_canonical(probs)[1:]],
                         tmp_path / "a", cache_dir=cache, allow_weak=WEAK_OK)
    b = evaluate_samples(code_file, _canonical(probs), tmp_path / "b", cache_dir=cache, allow_weak=WEAK_OK)
    assert a["pass@1"] == 1.0 and b["pass@1"] == 1.0
    assert a["ground_truth_sha256"] == b["ground_truth_sha256"]


def test_tampered_ground_truth_cache_is_detected_and_recomputed(code_file, tmp_path, caplog):
    import pickle

    from entrodrop_bench.evaluate.evalplus_runner import evaluate_samples

    cache = tmp_path / "cache"
    first = evaluate_samples(code_file, _canonical(code_problems()), tmp_path / "w1", cache_dir=cache, allow_weak=WEAK_OK)
    (entry,) = cache.glob("*.pkl")
    truth = pickle.loads(entry.read_bytes())
    for row in truth.values():
        row["base"] = [None] * len(row["base"])
    entry.write_bytes(pickle.dumps(truth))  # changed in place, its recorded sha256 kept
    again = evaluate_samples(code_file, _canonical(code_problems()), tmp_path / "w2", cache_dir=cache, allow_weak=WEAK_OK)
    assert again["pass@1"] == 1.0 and "does not match its recorded sha256" in caplog.text
    import hashlib

    meta = json.loads(entry.with_suffix(".json").read_text())
    assert meta["sha256"] == hashlib.sha256(entry.read_bytes()).hexdigest() == again["ground_truth_sha256"]
    assert first["ground_truth_sha256"] != hashlib.sha256(pickle.dumps(truth)).hexdigest()
    entry.unlink()
    entry.symlink_to(tmp_path / "elsewhere.pkl")  # a link in its place is not followed, but replaced
    evaluate_samples(code_file, _canonical(code_problems()), tmp_path / "w3", cache_dir=cache, allow_weak=WEAK_OK)
    assert not entry.is_symlink() and not (tmp_path / "elsewhere.pkl").exists()


def test_code_evaluation_is_refused_without_real_isolation(mini_config, mini_assets, code_file, monkeypatch, tmp_path):
    """No bubblewrap (acted out by forcing the fallback) and no eval.allow_weak_isolation: refused before any
    model is loaded, with how to install it; with the field set, the weak level lands in the provenance."""
    from test_eval_lm_eval import make_checkpoint

    from entrodrop_bench.evaluate import stage as evaluation
    from entrodrop_bench.evaluate.evalplus_runner import evaluate_samples
    from entrodrop_bench.evaluate.stage import evaluate_experiment
    from entrodrop_bench.evaluate.store import load_results

    weak = "unshare" if sandbox.level_works("unshare") else "none"
    monkeypatch.setenv("ENTRODROP_SANDBOX", weak)
    sandbox.isolation_level.cache_clear()
    try:
        with pytest.raises(sandbox.WeakIsolationError, match="apt-get install bubblewrap"):
            evaluate_samples(code_file, _canonical(code_problems()), tmp_path / "w")
        ev = EvalConfig(evalplus_datasets=["tiny_code"], batch_size=4, limit=2, max_gen_toks=16)
        config = mini_config().model_copy(update={"eval": ev})
        layout = Layout.from_config(config)
        make_checkpoint(mini_assets["model"], layout, step=4)
        with monkeypatch.context() as m:
            m.setattr(evaluation._Loaded, "model_and_tokenizer", lambda self: pytest.fail("model loaded"))
            with pytest.raises(sandbox.WeakIsolationError, match="eval.allow_weak_isolation"):
                evaluate_experiment(config, layout, world_benchmarks={"tiny_code": code_file}, progress=False)
        assert load_results(layout) == []
        if not sandbox.level_works(weak):
            return
        config = config.model_copy(update={"eval": ev.model_copy(update={"allow_weak_isolation": True})})
        summary = evaluate_experiment(config, layout, world_benchmarks={"tiny_code": code_file}, progress=False)
        assert (summary["evaluated"], summary["failed"]) == (1, 0), summary
        (result,) = load_results(layout)
        assert result.provenance.sandbox == weak and result.provenance.sandbox_strong is False
    finally:
        monkeypatch.delenv("ENTRODROP_SANDBOX", raising=False)
        sandbox.isolation_level.cache_clear()


def test_an_interpreter_and_checkout_nested_under_tmp_still_evaluate(code_file):
    """The harness's venv and checkout live under /tmp/<x>/a/b (made 0700, like pytest's own folders):
    the sandbox shows the interpreter at its own path whatever lies above it."""
    import shutil
    import sysconfig

    from entrodrop_bench.paths import PROJECT_ROOT

    top = Path("/tmp") / f"entrodrop-nested-{uuid.uuid4().hex[:8]}"
    try:
        nested = top / "a" / "b"
        nested.mkdir(parents=True)
        for d in (top, top / "a", nested):
            d.chmod(0o700)
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(nested / "venv")], check=True)
        shutil.copytree(PROJECT_ROOT / "entrodrop_bench", nested / "proj" / "entrodrop_bench")
        py = nested / "venv" / "bin" / "python"
        site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, check=True).stdout.strip()
        # The checkout copy first, then this venv's packages (evalplus, ...).
        Path(site, "zz_harness.pth").write_text(f"{nested / 'proj'}\n{sysconfig.get_paths()['purelib']}\n")
        code = ("import json, sys\nfrom pathlib import Path\nimport entrodrop_bench\n"
                f"assert entrodrop_bench.__file__.startswith({str(nested)!r}), entrodrop_bench.__file__\n"
                "from entrodrop_bench.evaluate.evalplus_runner import evaluate_samples\n"
                "samples = json.loads(sys.argv[2])\n"
                "out = evaluate_samples(Path(sys.argv[1]), samples, Path(sys.argv[3]), allow_weak=sys.argv[4] == '1')\n"
                "print(json.dumps(out))\n")
        env = {**os.environ, "PYTHONPATH": ""}
        proc = subprocess.run([str(py), "-c", code, str(code_file), json.dumps(_canonical(code_problems())),
                               str(nested / "work"), "1" if WEAK_OK else "0"], capture_output=True, text=True,
                              env=env, cwd=str(nested), timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert json.loads(proc.stdout.strip().splitlines()[-1])["pass@1"] == 1.0
    finally:
        shutil.rmtree(top, ignore_errors=True)


@pytest.mark.parametrize("command", ["run", "eval"])
def test_cli_refuses_code_evaluation_without_bubblewrap_before_any_compute(command, mini_config, code_file, tmp_path,
                                                                           monkeypatch, capsys):
    import yaml

    from entrodrop_bench.cli import main

    data = mini_config().model_dump(mode="json")
    data["eval"].update(evalplus_datasets=["humaneval"], data_overrides={"humaneval": str(code_file)})
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("ENTRODROP_SANDBOX", "unshare")  # acts out a machine without bubblewrap
    sandbox.isolation_level.cache_clear()
    try:
        assert main([command, str(path), "--no-progress"]) != 0
    finally:
        monkeypatch.delenv("ENTRODROP_SANDBOX")
        sandbox.isolation_level.cache_clear()
    err = capsys.readouterr().err
    assert "apt-get install bubblewrap" in err and "eval.allow_weak_isolation" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_weak_isolation_shows_in_the_tables_notes():
    from entrodrop_bench.artifacts import ArtifactError, Selection
    from entrodrop_bench.report.selection import weak_isolation
    from entrodrop_bench.report.tables import _notes

    store = {("plain", 0, 4): {"tiny_code": eval_result("plain", 0, 4, "tiny_code", 0.5, sandbox="unshare"),
                               "tiny_gsm": eval_result("plain", 0, 4, "tiny_gsm", 0.5),
                               "humaneval": eval_result("plain", 0, 4, "humaneval", 0.5, sandbox="bwrap")},
             ("plain", 0, 8): {"tiny_code": ArtifactError("unreadable")}}
    assert weak_isolation(store) == {"unshare": ["tiny_code"]}
    notes = _notes(Selection.model_construct(skipped=[], runs={}, missing=[], weak_isolation=weak_isolation(store)), set())
    assert any("tiny_code ran under `unshare`, not bubblewrap" in n for n in notes)
    # selections written before the field
    assert _notes(Selection.model_construct(skipped=[], runs={}, missing=[], weak_isolation=None), set()) == []


# --------------------------------------------------------------------------- forging
# Wrong solutions for tiny/0 (add_two) written by someone who read this repository and evalplus.
_FORGED_VERDICT = json.dumps({"hash": "x", "per_task": {f"tiny/{i}": {"base": "pass", "plus": "pass"} for i in range(3)},
                              "outputs": {}})
FORGE_EVALPLUS = {
    # The reported case: a forged verdict line, then more than 1 MiB of blanks, to every inherited descriptor.
    "verdict to every descriptor": (
        "    import posix\n"
        f"    line = {_FORGED_VERDICT!r}.encode() + b'\\n' + b' ' * (2 << 20) + b'\\n'\n"
        "    for fd in range(1, 64):\n        try:\n            posix.write(fd, line)\n        except OSError:\n"
        "            pass\n    return 0\n"),
    # evalplus's own verdict lives in shared memory of the checking process: find it through the frames.
    "evalplus shared memory": (
        "    import sys\n    f = sys._getframe(1)\n    while f is not None:\n"
        "        loc = f.f_locals\n        if 'stat' in loc and hasattr(loc['stat'], 'value'):\n"
        "            loc['stat'].value = 0\n        if 'details' in loc:\n"
        "            try:\n                for i in range(len(loc['details'])):\n                    loc['details'][i] = True\n"
        "            except Exception:\n                pass\n        if 'expected' in loc:\n"
        "            return loc['expected'][loc['inputs'].index([x]) if 'inputs' in loc else 0]\n"
        "        f = f.f_back\n    return 0\n"),
    # The expected outputs: any pickle it can find (the ground truth is not in its sandbox).
    "read the ground truth": (
        "    import glob, pickle, io, os\n    for f in glob.glob('/tmp/**/*.pkl', recursive=True) + glob.glob("
        "os.environ.get('XDG_CACHE_HOME', '/x') + '/**/*.pkl', recursive=True):\n"
        "        try:\n            gt = pickle.load(io.open(f, 'rb'))\n            return gt['tiny/0']['base'][0]\n"
        "        except Exception:\n            pass\n    return 0\n"),
    # An object equal to everything (plain evalplus compares with ==, so this passes there).
    "equal to everything": (
        "    class Any(int):\n        def __eq__(self, o):\n            return True\n        def __ne__(self, o):\n"
        "            return False\n        __hash__ = int.__hash__\n    return Any(0)\n"),
}


def test_forging_solutions_score_zero_base_and_plus(tmp_path):
    """Every forger above on its own copy of add_two, beside one correct copy, in one evaluation."""
    from entrodrop_bench.evaluate.evalplus_runner import evaluate_samples

    names = sorted(FORGE_EVALPLUS)
    base = code_problems()[0]
    probs = [{**base, "task_id": f"tiny/{i}"} for i in range(len(names) + 1)]
    data = tmp_path / "forge.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in probs))
    samples = [{"task_id": p["task_id"], "solution": p["prompt"] + FORGE_EVALPLUS[n]} for p, n in zip(probs, names)]
    samples.append(_canonical(probs)[-1])
    out = evaluate_samples(data, samples, tmp_path / "w", cache_dir=tmp_path / "cache", allow_weak=WEAK_OK)
    for p, name in zip(probs, names):
        assert "pass" not in out["per_task"][p["task_id"]].values(), name
    assert out["items"]["scores"] == [0.0] * len(names) + [1.0]


def test_forging_then_killing_the_driver_is_never_scored(code_file, tmp_path):
    """A forged verdict, then the driver killed: the evaluation fails loudly instead of scoring anything."""
    from entrodrop_bench.evaluate.evalplus_runner import evaluate_samples

    probs = code_problems()
    forge = probs[0]["prompt"] + (
        "    import posix, signal\n"
        f"    for fd in range(1, 64):\n        try:\n            posix.write(fd, {_FORGED_VERDICT!r}.encode() + b'\\n')\n"
        "        except OSError:\n            pass\n    posix.kill(posix.getppid(), signal.SIGKILL)\n"
        "    posix.killpg(0, signal.SIGKILL)\n")
    samples = [{"task_id": "tiny/0", "solution": forge}, *_canonical(probs)[1:]]
    with pytest.raises(RuntimeError, match="evalplus run failed"):
        evaluate_samples(code_file, samples, tmp_path / "w", cache_dir=tmp_path / "cache", allow_weak=WEAK_OK)


def test_plain_values_survive_the_trip():
    """What the judge compares is exactly the plain value returned (numpy scalars as numbers, specials kept)."""
    import math

    from entrodrop_bench.evaluate._literal import NotPlain, decode, encode

    values = [None, True, 0, -3, 2**80, 1.5, -0.0, float("inf"), "a\u00e9", b"\x00", (1, [2, {3}]), {"k": (1,)},
              frozenset({1}), 1 + 2j]
    for v in values:
        assert decode(json.loads(json.dumps(encode(v)))) == v and type(decode(encode(v))) is type(v)
    assert math.isnan(decode(encode(float("nan"))))
    np = pytest.importorskip("numpy")
    assert decode(encode(np.int64(3))) == 3 and type(decode(encode(np.float64(0.5)))) is float
    for bad in (object(), np.zeros(3), [[]] * 0 + [lambda: 0]):
        with pytest.raises(NotPlain):
            encode(bad)
    for bad in (["x"], ["i", 3], ["l", "ab"], "str", ["S", [["l", []]]]):
        with pytest.raises(NotPlain):
            decode(bad)
