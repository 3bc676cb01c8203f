"""Driver that runs evalplus inside the sandbox (see evalplus_runner); standard library and evalplus only.

The harness passes this file in read-only and runs it by path (`python -I {in}/_evalplus_child.py`), so
it does not depend on where the checkout lives. Its one result goes to the stdout it was started with,
as a single JSON line; everything evalplus (and the programs it runs) print goes to stderr.

  gt   DATASET                         -> {"hash": md5 of the dataset, "pickle_b64": ground truth}
  eval DATASET IN PARALLEL MIN_T HASH  -> {"hash": ..., "per_task": {task_id: {"base", "plus"}}}

Before evalplus is imported the environment names the dataset (HUMANEVAL_OVERRIDE_PATH or
MBPP_OVERRIDE_PATH) and XDG_CACHE_HOME. In `eval` mode the ground truth computed earlier by a `gt`
run, which ran no generated code, is put where evalplus looks for its cache, and must be the one used.
The process leaves with os._exit so evalplus's non-daemon 20 s watchdog thread does not keep it alive.
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import sys
import traceback

RESULT_FD = os.dup(1)  # the harness's pipe for the one result line
os.dup2(2, 1)  # anything else printed goes to stderr


def _hash(dataset: str) -> str:
    if dataset == "mbpp":
        from evalplus.data import get_mbpp_plus_hash

        return get_mbpp_plus_hash()
    from evalplus.data import get_human_eval_plus_hash

    return get_human_eval_plus_hash()


def ground_truth(dataset: str) -> dict:
    from evalplus.evaluate import MBPP_OUTPUT_NOT_NONE_TASKS, get_groundtruth

    if dataset == "mbpp":
        from evalplus.data import get_mbpp_plus

        problems, not_none = get_mbpp_plus(), MBPP_OUTPUT_NOT_NONE_TASKS
    else:
        from evalplus.data import get_human_eval_plus

        problems, not_none = get_human_eval_plus(), []
    digest = _hash(dataset)
    truth = get_groundtruth(problems, digest, not_none)
    return {"hash": digest, "pickle_b64": base64.b64encode(pickle.dumps(truth)).decode()}


def evaluate(dataset: str, indir: str, parallel: int, min_time: float, digest: str) -> dict:
    cache = os.path.join(os.environ["XDG_CACHE_HOME"], "evalplus")
    os.makedirs(cache, exist_ok=True)
    os.symlink(os.path.join(indir, "ground_truth.pkl"), os.path.join(cache, f"{digest}.pkl"))
    os.symlink(os.path.join(indir, "samples.jsonl"), "samples.jsonl")
    if _hash(dataset) != digest:
        raise SystemExit(f"dataset hash {_hash(dataset)} != ground truth's {digest}")
    from evalplus.evaluate import evaluate as run

    run(dataset=dataset, samples="samples.jsonl", parallel=parallel, i_just_wanna_run=False, min_time_limit=min_time)
    with open("samples_eval_results.json") as fh:
        results = json.load(fh)
    per_task = {task_id: {"base": rows[0]["base_status"], "plus": rows[0]["plus_status"]}
                for task_id, rows in results["eval"].items()}
    return {"hash": results.get("hash"), "per_task": per_task}


def main(argv: list[str]) -> dict:
    if argv[0] == "gt":
        return ground_truth(argv[1])
    return evaluate(argv[1], argv[2], int(argv[3]), float(argv[4]), argv[5])


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
