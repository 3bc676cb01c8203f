"""Child process that runs evalplus's evaluation inside the sandbox (see evalplus_runner).

argv: dataset samples.jsonl summary.json parallel min_time_limit. The dataset override variables are in
the environment before evalplus is imported. Writes the summary atomically, then leaves with os._exit so
evalplus's non-daemon 20 s watchdog thread does not keep the process alive.
"""

from __future__ import annotations

import json
import os
import sys
import traceback


def main(argv: list[str]) -> int:
    dataset, samples, summary_path, parallel, min_time = argv[0], argv[1], argv[2], int(argv[3]), float(argv[4])
    from evalplus.evaluate import evaluate

    results_path = samples.replace(".jsonl", "_eval_results.json")
    if os.path.exists(results_path):  # never reuse (or prompt about) results of an earlier run
        os.remove(results_path)
    evaluate(dataset=dataset, samples=samples, parallel=parallel, i_just_wanna_run=False, min_time_limit=min_time)
    with open(results_path) as fh:
        results = json.load(fh)
    per_task = {}
    for task_id, rows in results["eval"].items():
        row = rows[0]
        per_task[task_id] = {"base": row["base_status"], "plus": row["plus_status"]}
    n = len(per_task)
    base = sum(r["base"] == "pass" for r in per_task.values())
    plus = sum(r["base"] == "pass" and r["plus"] == "pass" for r in per_task.values())
    summary = {"pass@1": plus / n if n else None, "base_pass@1": base / n if n else None, "n_tasks": n,
               "per_task": per_task}
    tmp = summary_path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(summary, fh)
    os.replace(tmp, summary_path)
    return 0


if __name__ == "__main__":
    try:
        code = main(sys.argv[1:])
    except BaseException:  # noqa: BLE001 - report and exit without waiting for evalplus's threads
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
