"""Drivers that run evalplus inside sandboxes (see evalplus_runner); standard library and evalplus only.

The harness passes this file in read-only and runs it by path (`python -I {in}/_evalplus_child.py`), so
it does not depend on where the checkout lives. Its one result goes to the stdout it was started with,
as a single JSON line; everything evalplus (and the programs it runs) print goes to stderr.

  gt    DATASET                        -> {"hash", "pickle_b64": ground truth, "times": reference seconds per input}
  run   DATASET IN PARALLEL MIN_T HASH -> {"hash", "outputs": {task_id: {"base", "plus": {"status", "values"}}}}
  judge DATASET IN PARALLEL MIN_T HASH -> {"hash", "per_task": {task_id: {"base", "plus"}}}

The verdict never passes through a channel that generated code can write. `run` executes the samples (as
evalplus's `unsafe_execute` does: a fresh process per sample and test set, evalplus's `reliability_guard`, its
per-input time limits from the ground truth's reference times, stopping at the first failing input) but is
given no expected output at all: it reports only the values each call returned, as plain tagged data
(`_literal.py`, which turns any object with its own `__eq__` into a failure). `judge` runs no generated
code: for each sample it replays those values through evalplus's own `untrusted_check` (the same comparison,
tolerances and special oracles) against the ground truth. A generated program can therefore put anything it
likes in `run`'s output, and it still counts only as the values its function returned.

Before evalplus is imported the environment names the dataset (HUMANEVAL_OVERRIDE_PATH or
MBPP_OVERRIDE_PATH) and XDG_CACHE_HOME. The process leaves with os._exit so evalplus's non-daemon 20 s
watchdog thread does not keep it alive.
"""

from __future__ import annotations

import base64
import ctypes
import json
import os
import pickle
import sys
import traceback

RESULT_FD = os.dup(1)  # the harness's pipe for the one result line
# Not dumpable: the samples (same uid, forked from here) cannot open this process's descriptors through
# /proc/<pid>/fd nor ptrace it; forked workers inherit it.
ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4
os.dup2(2, 1)  # anything else printed goes to stderr


def _hash(dataset: str) -> str:
    if dataset == "mbpp":
        from evalplus.data import get_mbpp_plus_hash

        return get_mbpp_plus_hash()
    from evalplus.data import get_human_eval_plus_hash

    return get_human_eval_plus_hash()


def _problems(dataset: str) -> dict:
    if dataset == "mbpp":
        from evalplus.data import get_mbpp_plus

        return get_mbpp_plus()
    from evalplus.data import get_human_eval_plus

    return get_human_eval_plus()


def ground_truth(dataset: str) -> dict:
    from evalplus.evaluate import MBPP_OUTPUT_NOT_NONE_TASKS, get_groundtruth

    not_none = MBPP_OUTPUT_NOT_NONE_TASKS if dataset == "mbpp" else []
    digest = _hash(dataset)
    truth = get_groundtruth(_problems(dataset), digest, not_none)
    times = {t: {"base": list(v["base_time"]), "plus": list(v["plus_time"])} for t, v in truth.items()}
    return {"hash": digest, "pickle_b64": base64.b64encode(pickle.dumps(truth)).decode(), "times": times}


MAX_VALUE_BYTES = 1 << 20
"""A returned value larger than this once encoded counts as an error: the run's one output line stays bounded."""


def _literal_source(indir: str) -> str:
    with open(os.path.join(indir, "_literal.py")) as fh:
        return fh.read().split("SOURCE = ")[0]


def _load_literal(indir: str) -> dict:
    namespace = {"__name__": "_literal"}
    exec(_literal_source(indir), namespace)  # noqa: S102 - the harness's own file, passed in read-only
    return namespace


def _time_limits(ref: list, min_time: float) -> list:
    from evalplus.config import DEFAULT_GT_TIME_LIMIT_FACTOR

    return [max(min_time, DEFAULT_GT_TIME_LIMIT_FACTOR * t) for t in ref]


def _execute(code: str, entry_point: str, inputs: list, limits: list, encode, out_fd: int) -> None:
    """In a forked process, as evalplus's unsafe_execute: run the sample on each input, send back what it returned."""
    from evalplus.eval import query_maximum_memory_bytes
    from evalplus.eval.utils import create_tempdir, reliability_guard, swallow_io, time_limit

    # Only stdin/stdout/stderr and its own pipe stay open: not the driver's result descriptor, nor the worker
    # pool's queues (a sample writing garbage there would hang the pool).
    os.closerange(3, out_fd)
    os.closerange(out_fd + 1, 1 << 16)
    values: list = []
    leave, write = os._exit, os.write  # reliability_guard nulls what the temp folder's cleanup needs

    def send(message: dict) -> None:
        data = json.dumps(message).encode()
        while data:
            data = data[write(out_fd, data):]
        leave(0)

    with create_tempdir():
        reliability_guard(maximum_memory_bytes=query_maximum_memory_bytes())
        try:
            exec_globals: dict = {}
            with swallow_io():
                exec(code, exec_globals)  # noqa: S102 - generated code, in the sandbox
                fn = exec_globals[entry_point]
        except BaseException as exc:  # noqa: BLE001
            send({"exec_error": type(exc).__name__[:80], "values": []})
        for inp, limit in zip(inputs, limits):
            try:
                with time_limit(limit), swallow_io():
                    out = fn(*inp)
                value = encode(out)
                if len(json.dumps(value)) > MAX_VALUE_BYTES:
                    raise ValueError("returned value too large")
                values.append(["ok", value])
            except BaseException as exc:  # noqa: BLE001 - evalplus stops at the first failing input (fast_check)
                values.append(["error", type(exc).__name__[:80]])
                break
        send({"values": values})


MAX_PHASE_BYTES = 64 << 20
"""The most one sample may send back for one test set (its values, encoded); more counts as `too_large`."""


def _pending(fd: int) -> bool:
    """Whether more is waiting to be read (the sender was cut off by the size limit, not by the clock)."""
    import select

    return bool(select.select([fd], [], [], 0)[0])


def _read_until(fd: int, deadline: float, limit: int) -> bytes | None:
    """Everything written to `fd` until EOF; None past the deadline or the size limit (never blocks past it)."""
    import select
    import time

    chunks, size = [], 0
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return None
    return None


def _run_phase(code: str, entry_point: str, inputs: list, ref_time: list, min_time: float, encode) -> dict:
    """One sample on one test set, in its own process, bounded as evalplus bounds it (then killed)."""
    import multiprocessing
    import time

    limits = _time_limits(ref_time, min_time)
    timeout = min(60, sum(limits)) + 1  # evalplus's untrusted_check, with fast_check
    read_fd, write_fd = os.pipe()
    proc = multiprocessing.Process(target=_execute, args=(code, entry_point, inputs, limits, encode, write_fd))
    proc.start()
    os.close(write_fd)
    data = _read_until(read_fd, time.monotonic() + timeout + 1, MAX_PHASE_BYTES)
    overflow = data is None and proc.is_alive() and _pending(read_fd)
    os.close(read_fd)
    proc.join(0.1)
    if proc.is_alive():
        proc.kill()
        proc.join()
    try:
        got = json.loads(data) if data else None
    except ValueError:
        got = None
    if not isinstance(got, dict):
        status = "too_large" if overflow else "timeout" if data is None and proc.exitcode == -9 else "crashed"
        return {"status": status, "values": []}
    return {"status": "exec_error" if "exec_error" in got else "done", "values": got.get("values", [])}


def _run_task(args: tuple) -> tuple:
    task_id, code, problem, times, min_time, indir = args
    encode = _load_literal(indir)["encode"]
    return task_id, {phase: _run_phase(code, problem["entry_point"], problem[f"{phase}_input"], times[phase], min_time,
                                       encode) for phase in ("base", "plus")}


def run(dataset: str, indir: str, parallel: int, min_time: float, digest: str) -> dict:
    """Execute every sample on its inputs; report only returned values (no expected output is in this sandbox)."""
    from concurrent.futures import ProcessPoolExecutor

    from evalplus.data import load_solutions

    if _hash(dataset) != digest:
        raise SystemExit(f"dataset hash {_hash(dataset)} != ground truth's {digest}")
    problems = _problems(dataset)
    with open(os.path.join(indir, "times.json")) as fh:
        times = json.load(fh)
    jobs = []
    for sample in load_solutions(os.path.join(indir, "samples.jsonl")):
        task_id = sample["task_id"]
        code = sample["solution"] if "solution" in sample else problems[task_id]["prompt"] + sample["completion"]
        jobs.append((task_id, code, problems[task_id], times[task_id], min_time, indir))
    # One line per task as it is done, then the closing line: a sample can write garbage or lines of its own
    # into this descriptor too, so the harness keeps the first well-formed record of each task (all it can
    # claim is values, judged elsewhere) and needs the closing line to trust that the run finished.
    with ProcessPoolExecutor(max_workers=parallel) as pool, os.fdopen(os.dup(RESULT_FD), "w") as out:
        for task_id, record in pool.map(_run_task, jobs):
            out.write(json.dumps({"task_id": task_id, **record}) + "\n")
            out.flush()
    return {"hash": digest, "done": len(jobs)}


_REPLAY = """
_VALUES = __import__("json").loads({values!r})
_N = [0]
_LITERAL = {{"__name__": "_literal"}}
exec({literal!r}, _LITERAL)
def {entry_point}(*args):
    i = _N[0]
    _N[0] += 1
    if i >= len(_VALUES) or _VALUES[i][0] != "ok":
        raise RuntimeError("the sample raised or returned nothing on this input")
    return _LITERAL["decode"](_VALUES[i][1])
"""


def _replay_code(record: dict, entry_point: str, literal_source: str) -> str:
    """A program that returns, call by call, exactly the values the sample returned (decoded as plain data)."""
    if record["status"] != "done":
        return "raise RuntimeError('the sample did not load')\n"
    return _REPLAY.format(values=json.dumps(record["values"]), literal=literal_source, entry_point=entry_point)


def _judge_task(args: tuple) -> tuple:
    from evalplus.eval import untrusted_check

    dataset, task_id, problem, expected, record, min_time, literal_source = args
    verdict = {}
    for phase in ("base", "plus"):
        if record[phase]["status"] == "timeout":
            verdict[phase] = "timeout"
            continue
        verdict[phase], _ = untrusted_check(
            dataset, _replay_code(record[phase], problem["entry_point"], literal_source), problem[f"{phase}_input"],
            problem["entry_point"], expected=expected[phase], atol=problem["atol"], ref_time=expected[f"{phase}_time"],
            fast_check=True, min_time_limit=min_time)
    return task_id, verdict


def judge(dataset: str, indir: str, parallel: int, min_time: float, digest: str) -> dict:
    """Compare the recorded values with the ground truth through evalplus's own check; runs no generated code."""
    from concurrent.futures import ProcessPoolExecutor

    if _hash(dataset) != digest:
        raise SystemExit(f"dataset hash {_hash(dataset)} != ground truth's {digest}")
    problems = _problems(dataset)
    with open(os.path.join(indir, "ground_truth.pkl"), "rb") as fh:
        truth = pickle.load(fh)  # computed by the `gt` driver, which ran no generated code; verified by sha256
    with open(os.path.join(indir, "outputs.json")) as fh:
        outputs = json.load(fh)
    literal_source = _literal_source(indir)
    jobs = [(dataset, t, problems[t], truth[t], outputs[t], min_time, literal_source) for t in outputs]
    with ProcessPoolExecutor(max_workers=parallel) as pool:
        per_task = dict(pool.map(_judge_task, jobs))
    return {"hash": digest, "per_task": per_task}


def main(argv: list[str]) -> dict:
    if argv[0] == "gt":
        return ground_truth(argv[1])
    mode = {"run": run, "judge": judge}[argv[0]]
    return mode(argv[1], argv[2], int(argv[3]), float(argv[4]), argv[5])


if __name__ == "__main__":
    code = 0
    try:
        line = json.dumps(main(sys.argv[1:])) + "\n"
        with os.fdopen(RESULT_FD, "w") as out:
            out.write(line)
    except BaseException:  # noqa: BLE001 - report and exit without waiting for evalplus's threads
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
