"""lm-eval through its Python API, one benchmark at a time, on an already loaded checkpoint.

- Tasks: lm-eval built-ins by name (minerva_math*, hendrycks_math*, hellaswag, piqa, mmlu, ifeval, ...) and the
  project's YAMLs in tasks/ (gsm8k and arc_challenge in OpenCompass's formats, shadowing the built-ins of those
  names; svamp, college_math, olympiadbench, tiny_math, tiny_general). `TaskManager(include_path=tasks/ [+ generated], include_defaults=...)` indexes the ~15k
  built-ins (~6 s) only when a built-in is requested, and that index is built once per process (see
  `_builtin_task_manager`).
- Local data: a benchmark with a data file (config `eval.data_overrides`, or the tiny world's file) runs
  from a generated YAML in the checkpoint's work dir that `include:`s the original task and swaps in
  `dataset_path: json` + `data_files`, so prompts, filters and metrics stay the original task's. The file
  feeds the evaluated split (test, else validation); see `_local_splits` for few-shot splits. Groups
  (mmlu, minerva_math) cannot take one override file: override a subtask instead.
- Request cache: one sqlite cache per checkpoint *content* (`work/lm_cache/<checkpoint hash>`): lm-eval's
  cache keys ignore model identity, so a shared cache would return another model's answers. It lets a benchmark
  killed half way resume without redoing its answers; `eval.request_cache: false` (the tiny preset) drops it,
  since sqlitedict commits and records a stack trace per request, which cost more than a tiny answer.
- Per-item outcomes: from the same logged samples, each document's value of the primary metric under the
  primary metric's filter (`exact_match,strict-match` reads the samples of filter `strict-match`), ids being
  lm-eval's `doc_id` (`<subtask>/<doc_id>` for a group); see `item_outcomes`.
- Task hash: samples are logged so that the result carries lm-eval's own task hash (the one its
  `EvaluationTracker` writes as `task_hashes`: sha256 over each sample's doc, prompt and target hashes);
  a group's hash is taken over its subtasks' hashes in name order.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from entrodrop_bench.errors import ConfigError
from entrodrop_bench.evaluate.benchmarks import (
    GROUP_TASKS,
    builtin_task_yaml,
    local_task_yaml,
    primary_metric,
)
from entrodrop_bench.paths import TASKS_DIR, EvalWorkDir

log = logging.getLogger(__name__)
_SPLIT_KEYS = ("training_split", "validation_split", "test_split", "fewshot_split")
# `include: file`, or quoted as lm-eval's generated YAMLs write it (MMLU's subjects: `"include": "_default_template_yaml"`).
_INCLUDE = r"^[\"']?include[\"']?\s*:\s*[\"']?([^\s\"']+)"


def _splits(yaml_path: Path, depth: int = 0) -> dict[str, str]:
    """Split keys of a task YAML, following `include:` (read as text: the YAMLs hold !function tags)."""
    text = yaml_path.read_text()
    found: dict[str, str] = {}
    inc = re.search(_INCLUDE, text, re.M)
    if inc and depth < 4:
        found.update(_splits((yaml_path.parent / inc.group(1)).resolve(), depth + 1))
    for key in _SPLIT_KEYS:
        m = re.search(rf"^[\"']?{key}[\"']?\s*:\s*[\"']?([^\s\"']+)", text, re.M)
        if m:
            found[key] = m.group(1).strip("\"'")
    return {k: v for k, v in found.items() if v not in {"null", "None"}}


def _has_fixed_exemplars(yaml_path: Path, depth: int = 0) -> bool:
    """Whether a task YAML (following `include:`) fixes its few-shot exemplars (`fewshot_config.samples`, e.g.
    MATH's four Minerva ones): then no split may feed the few-shot prompt, since lm-eval prefers a few-shot
    split over the fixed samples."""
    text = yaml_path.read_text()
    if re.search(r"^fewshot_config:\s*\n(?:[ \t]+.*\n)*?[ \t]+samples:", text + "\n", re.M):
        return True
    inc = re.search(_INCLUDE, text, re.M)
    return bool(inc) and depth < 4 and _has_fixed_exemplars((yaml_path.parent / inc.group(1)).resolve(), depth + 1)


def _local_splits(splits: dict[str, str], data: Path, fixed_exemplars: bool = False) -> dict:
    """YAML keys for local data: `data_files` (split -> file) plus split renames.

    The evaluated split (test, else validation) reads `data`. Another split the task names (gsm8k's
    few-shot `train`) reads a sibling file with `test` replaced by the split name when one exists
    (gsm8k_test.jsonl -> gsm8k_train.jsonl); otherwise few-shot examples come from the evaluated split
    itself, declared as such (`fewshot_split` = that split), so lm-eval leaves each question out of its
    own prompt. A task with fixed exemplars (`fixed_exemplars`: MATH's Minerva prompt) keeps them: no split is
    pointed at the evaluated data (lm-eval would otherwise show the first test problems as exemplars).
    """
    evaluated = splits.get("test_split") or splits.get("validation_split") or "test"
    files = {evaluated: str(data)}
    keys: dict = {}
    for key, split in splits.items():
        if split == evaluated or split in files:
            continue
        sibling = data.with_name(data.name.replace("test", split)) if "test" in data.name else None
        if sibling is not None and sibling.is_file():
            files[split] = str(sibling)
        else:
            log.info("lm-eval: no %s file beside %s; %s reads the evaluated split", split, data, key)
            keys[key] = evaluated if key == "fewshot_split" and not fixed_exemplars else None
    if fixed_exemplars:
        keys["fewshot_split"] = None
    elif "training_split" in keys and splits.get("fewshot_split") in (None, splits.get("training_split")):
        keys["fewshot_split"] = evaluated
    return {**keys, "dataset_kwargs": {"data_files": files}}


def task_spec(benchmark: str, data: Path | None, gen_yaml: Path) -> tuple[str, bool]:
    """(task name to request, whether built-in tasks must be indexed). Writes the override YAML `gen_yaml` if
    needed."""
    local = local_task_yaml(benchmark)
    gen_yaml.unlink(missing_ok=True)  # from an earlier run with another data file
    if data is None:
        return benchmark, local is None
    if benchmark in GROUP_TASKS:
        raise ConfigError(f"eval.data_overrides.{benchmark}: {benchmark} is a group of tasks and cannot read one "
                          "local file; override one of its subtasks instead (e.g. minerva_math_algebra)")
    source = local or builtin_task_yaml(benchmark)
    if source is None:
        raise ConfigError(f"eval.data_overrides.{benchmark}: no lm-eval task YAML named {benchmark} was found "
                          f"(built-in or in {TASKS_DIR}), so its data cannot be overridden")
    config = {
        "include": str(source),
        "task": benchmark,
        "tag": [],
        "dataset_path": "json",
        "dataset_name": None,
        **_local_splits(_splits(source), data.resolve(), _has_fixed_exemplars(source)),
    }
    gen_yaml.parent.mkdir(parents=True, exist_ok=True)
    gen_yaml.write_text(yaml.safe_dump(config, sort_keys=False))
    return benchmark, False


def task_hash(samples: dict[str, list[dict]], name: str) -> str | None:
    """lm-eval's task hash (as `EvaluationTracker` computes `task_hashes`) of `name`, or of its subtasks."""
    from lm_eval.utils import hash_string

    def one(task_samples: list[dict]) -> str:
        return hash_string("".join(s["doc_hash"] + s["prompt_hash"] + s["target_hash"] for s in task_samples))

    if name in samples:
        return one(samples[name])
    if not samples:
        return None
    return hash_string("".join(one(samples[k]) for k in sorted(samples)))


def item_outcomes(samples: dict[str, list[dict]], name: str, metric: str | None) -> dict | None:
    """{"ids", "scores"}: each document's value of `metric` ("<metric>,<filter>"), from lm-eval's logged samples.

    A task logs one sample per (document, filter); only the primary metric's filter counts, so a document
    appears once. A group's ids are prefixed with the subtask name (doc ids restart in each subtask).
    None when there is no metric or the samples do not carry it.
    """
    if metric is None or "," not in metric or not samples:
        return None
    key, filter_key = metric.split(",", 1)
    tasks = [name] if name in samples else sorted(samples)
    ids, scores = [], []
    for task in tasks:
        for s in samples[task]:
            if s.get("filter") != filter_key:
                continue
            if key not in s:
                return None
            ids.append(str(s["doc_id"]) if task == name else f"{task}/{s['doc_id']}")
            scores.append(float(s[key]))
    return {"ids": ids, "scores": scores} if ids else None


@functools.cache
def _builtin_task_manager() -> Any:
    """lm-eval's index of its built-ins plus tasks/, shared by every benchmark and checkpoint of a process.

    Building it walks ~15k YAMLs (~6 s, more on a busy machine) and it holds only name -> file entries:
    each `simple_evaluate` builds fresh task objects by re-reading the YAML, so reuse changes no result.
    tasks/ and the installed built-ins do not change while a process runs.
    """
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=[str(TASKS_DIR)], include_defaults=True)


@contextlib.contextmanager
def _without_unread_work() -> Iterator[None]:
    """Switch off, for one `simple_evaluate` call, two lm-eval costs whose output the harness never uses.

    - `add_env_info` runs torch's collect_env (`pip list` and other subprocesses) at the end of every call,
      ~0.4 s per (checkpoint, benchmark), for environment text this module does not read (the stored
      result's provenance records package versions itself).
    - `apply_template` compiles a task's Jinja prompt template again for every document; the same template
      string compiles to the same template, so the compiled one is reused.
    Neither touches requests, model outputs or metrics (the tiny preset's stored results are identical).
    """
    from unittest import mock

    import lm_eval.evaluator
    import lm_eval.utils

    compile_template = functools.lru_cache(maxsize=256)(lm_eval.utils.env.from_string)
    with (mock.patch.object(lm_eval.evaluator, "add_env_info", lambda results: None),
          mock.patch.object(lm_eval.utils, "apply_template",
                            lambda template, doc: compile_template(template).render(**doc))):
        yield


def run_lm_eval(lm: Any, benchmark: str, data: Path | None, *, work_dir: Path, cache_key: str | None, batch_size: int,
                limit: int | None, num_fewshot: int | None, max_gen_toks: int) -> dict:
    """Evaluate one benchmark; returns {"metrics", "items", "n_samples", "n_shot", "version", "task_hash", "seeds"}."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    if benchmark.startswith("ifeval"):  # its import would try nltk.download('punkt_tab') (offline: fails)
        from entrodrop_bench.evaluate.nltk_data import ensure_punkt_tab

        ensure_punkt_tab()
    work = EvalWorkDir(work_dir)
    gen_yaml = work.lm_eval_task_yaml(benchmark)
    name, need_defaults = task_spec(benchmark, data, gen_yaml)
    # A generated YAML `include:`s its source by absolute path, so tasks/ is indexed only when not overridden
    # (indexing both would register the task twice).
    if gen_yaml.is_file():
        manager = TaskManager(include_path=[str(gen_yaml.parent)], include_defaults=need_defaults)
    elif need_defaults:
        manager = _builtin_task_manager()
    else:
        manager = TaskManager(include_path=[str(TASKS_DIR)], include_defaults=False)
    cache = work.lm_eval_cache(cache_key) if cache_key else None  # None: no request cache (`eval.request_cache`)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
    # lm-eval's per-request progress bars would bury the harness's one bar over (checkpoint, benchmark)
    # pairs; they and its warnings go to a log beside the checkpoint's cache instead.
    with open(work.lm_eval_log, "a") as log, contextlib.redirect_stderr(log), _without_unread_work():
        out = simple_evaluate(
            model=lm, tasks=[name], num_fewshot=num_fewshot, batch_size=batch_size, limit=limit,
            use_cache=str(cache) if cache is not None else None, gen_kwargs={"max_gen_toks": max_gen_toks}, task_manager=manager,
            log_samples=True, bootstrap_iters=1000, verbosity="WARNING",
        )
    if out is None or name not in out.get("results", {}):
        raise RuntimeError(f"lm-eval returned no results for {name}")
    metrics = {k: v for k, v in out["results"][name].items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return {
        "metrics": metrics,
        "items": item_outcomes(out.get("samples") or {}, name, primary_metric(benchmark, metrics)),
        "n_samples": (out.get("n-samples") or {}).get(name),
        "n_shot": (out.get("n-shot") or {}).get(name),
        "version": (out.get("versions") or {}).get(name),
        "task_hash": task_hash(out.get("samples") or {}, name),
        "seeds": {k: (out.get("config") or {}).get(k) for k in ("random_seed", "numpy_seed", "torch_seed", "fewshot_seed")},
    }
