"""What each benchmark is: its harness, its primary metric, its data, and a hash of its task config.

PRIMARY_METRIC (the store's `score`, always in [0, 1]):

| benchmark | primary metric | why |
|---|---|---|
| tiny_math | exact_match,strict-match | the "#### N" answer format the task asks for |
| gsm8k, svamp, college_math, olympiadbench | exact_match,none | our own answer extraction (see tasks/utils.py) |
| minerva_math (+500) | math_verify,none | lm-eval's math_verify check: agrees with OpenCompass's MATH scoring far more often than the Minerva "Final Answer" rule (tasks/README.md) |
| hendrycks_math (+500) | exact_match,none | lm-eval's own answer check |
| hellaswag, arc_easy, piqa | acc_norm,none | length-normalized, the usual reported number |
| arc_challenge | exact_match,none | the lettered answer of OpenCompass's generative ARC-C format (tasks/arc_challenge.yaml) |
| mmlu, tiny_general | acc,none | |
| ifeval | prompt_level_strict_acc,none | |
| humaneval, mbpp, tiny_code (evalplus) | pass@1 | base + plus tests, greedy |
| livecodebench | pass@1 | all public + private tests, greedy |

Any other lm-eval task: the first of acc_norm,none / acc,none / exact_match,strict-match /
exact_match,none / exact_match,flexible-extract that it reports.
"""

from __future__ import annotations

import re
from pathlib import Path

from entrodrop_bench.atomic import bytes_sha256, file_sha256, json_sha256
from entrodrop_bench.errors import ConfigError, DataError
from entrodrop_bench.paths import TASKS_DIR

EVALPLUS_DATASETS = {"humaneval", "mbpp", "tiny_code"}
LIVECODEBENCH = {"livecodebench"}
GROUP_TASKS = {"mmlu", "minerva_math", "hendrycks_math"}

PRIMARY_METRIC: dict[str, str] = {
    "gsm8k": "exact_match,none",
    "tiny_math": "exact_match,strict-match",
    "svamp": "exact_match,none",
    "college_math": "exact_match,none",
    "olympiadbench": "exact_match,none",
    "minerva_math": "math_verify,none",
    "minerva_math500": "math_verify,none",
    "hendrycks_math": "exact_match,none",
    "hendrycks_math500": "exact_match,none",
    "hellaswag": "acc_norm,none",
    "arc_challenge": "exact_match,none",
    "arc_easy": "acc_norm,none",
    "piqa": "acc_norm,none",
    "mmlu": "acc,none",
    "tiny_general": "acc,none",
    "ifeval": "prompt_level_strict_acc,none",
    "humaneval": "pass@1",
    "mbpp": "pass@1",
    "tiny_code": "pass@1",
    "livecodebench": "pass@1",
}
# Bumped when a code benchmark's prompt or stop strings change (their results are then re-evaluated).
GENERATION_VERSION = {"humaneval": "greedy-evalplus-stops-stripped-prompt", "mbpp": "greedy-evalplus-stops-stripped-prompt",
                      "livecodebench": "greedy-lcb-base-prompt"}
DEFAULT_METRIC_ORDER = ("acc_norm,none", "acc,none", "exact_match,strict-match", "exact_match,none",
                        "exact_match,flexible-extract")


def primary_metric(benchmark: str, metrics: dict) -> str | None:
    """The metric key that becomes the benchmark's score (see the table in this module's docstring)."""
    if benchmark in PRIMARY_METRIC:
        return PRIMARY_METRIC[benchmark]
    return next((k for k in DEFAULT_METRIC_ORDER if k in metrics), None)


def harness_of(benchmark: str) -> str:
    if benchmark in EVALPLUS_DATASETS:
        return "evalplus"
    if benchmark in LIVECODEBENCH:
        return "livecodebench"
    return "lm-eval"


def local_task_yaml(benchmark: str) -> Path | None:
    """The project's own task YAML (tasks/<name>.yaml), if the benchmark is one of ours."""
    path = TASKS_DIR / f"{benchmark}.yaml"
    return path if path.is_file() else None


def task_yaml_field(path: Path | None, key: str, _depth: int = 0) -> str | None:
    """A top-level scalar of a task YAML, following `include:`. Read as text, because lm-eval's YAMLs carry
    `!function` tags that a plain YAML load rejects; a null value reads as None."""
    if path is None or not path.is_file() or _depth > 5:
        return None
    text = path.read_text()
    m = re.search(rf"^[\"']?{key}[\"']?\s*:\s*[\"']?([^\s\"'#]+)", text, re.M)
    if m:
        return None if m.group(1) in ("null", "None", "~") else m.group(1)
    inc = re.search(r"^[\"']?include[\"']?\s*:\s*[\"']?([^\s\"'#]+)", text, re.M)
    return task_yaml_field((path.parent / inc.group(1)).resolve(), key, _depth + 1) if inc else None


def builtin_task_yaml(benchmark: str) -> Path | None:
    """lm-eval's YAML defining `task: <benchmark>` (single tasks only; groups return None)."""
    import lm_eval

    root = Path(lm_eval.__file__).parent / "tasks"
    guess = [root / benchmark / f"{benchmark}.yaml", root / benchmark.split("_")[0] / f"{benchmark}.yaml",
             root / "arc" / f"{benchmark}.yaml"]
    # `task: name`, or quoted as lm-eval's generated YAMLs write it (MMLU's subjects: `"task": "mmlu_anatomy"`).
    defines = re.compile(rf"^[\"']?task[\"']?\s*:\s*[\"']?{re.escape(benchmark)}[\"']?\s*$", re.M)
    for path in guess:
        if path.is_file() and defines.search(path.read_text()):
            return path
    for path in root.rglob(f"{benchmark}.yaml"):
        if defines.search(path.read_text()):
            return path
    return None


def data_file(benchmark: str, overrides: dict[str, str], world: dict[str, Path] | None) -> Path | None:
    """The local data file for a benchmark: config override first, then the tiny world's file."""
    if benchmark in overrides and benchmark in GROUP_TASKS:
        raise ConfigError(f"eval.data_overrides.{benchmark}: {benchmark} is a group of tasks and cannot read one "
                          "local file; override one of its subtasks instead (e.g. minerva_math_algebra)")
    if benchmark in overrides:
        path = Path(overrides[benchmark])
        if not path.is_file():
            raise ConfigError(f"eval.data_overrides.{benchmark}: file {path} does not exist")
        return path
    if world and benchmark in world:
        path = Path(world[benchmark])
        if not path.is_file():
            raise DataError(f"tiny-world benchmark file {path} for {benchmark} does not exist (rebuild the world)")
        return path
    if benchmark.startswith("tiny_"):
        raise DataError(f"benchmark {benchmark} needs its tiny-world file; none was given (run prepare first)")
    if harness_of(benchmark) != "lm-eval":
        raise ConfigError(f"eval.data_overrides.{benchmark}: code benchmarks run offline from a local file here; "
                          f"set it to an {'evalplus-schema .jsonl(.gz)' if benchmark in EVALPLUS_DATASETS else 'LiveCodeBench release_v1 .jsonl'}")
    return None


def declared_max_gen_toks(benchmark: str) -> int | None:
    """The generation length a task's own YAML declares (following `include:`), e.g. ifeval's 1280."""
    import re

    path = local_task_yaml(benchmark) or (builtin_task_yaml(benchmark) if harness_of(benchmark) == "lm-eval" else None)
    for _ in range(5):
        if path is None or not path.is_file():
            return None
        text = path.read_text()
        m = re.search(r"^\s+max_gen_toks:\s*(\d+)", text, re.M)
        if m:
            return int(m.group(1))
        inc = re.search(r"^include:\s*(\S+)", text, re.M)
        path = (path.parent / inc.group(1)).resolve() if inc else None
    return None


def effective_max_gen_toks(benchmark: str, default: int) -> int:
    """A task that declares its generation length keeps it (lm-eval's ifeval: 1280, as its authors set it);
    every other benchmark generates up to `eval.max_gen_toks`."""
    return declared_max_gen_toks(benchmark) or default


def generates(benchmark: str) -> bool:
    """Whether a benchmark's outputs are generated text (code benchmarks, lm-eval `generate_until` tasks), as
    opposed to loglikelihood scores (`multiple_choice`, `loglikelihood*`). A group, whose YAML is not one task's,
    counts as generating: the answer decides which results a backend switch re-evaluates, so when in doubt, yes."""
    if harness_of(benchmark) != "lm-eval":
        return True
    path = local_task_yaml(benchmark) or builtin_task_yaml(benchmark)
    if path is None:
        return True
    return (task_yaml_field(path, "output_type") or "generate_until") == "generate_until"  # lm-eval's default


def generation_backend(benchmark: str, backend: str) -> str:
    """The engine that produces a benchmark's outputs under `eval.backend`: loglikelihood tasks are always HF's."""
    return backend if backend != "hf" and generates(benchmark) else "hf"


def task_config_hash(benchmark: str, data: Path | None, *, limit: int | None, num_fewshot: int | None,
                     max_gen_toks: int, backend: str = "hf") -> tuple[str, str]:
    """(hash, version) of everything that defines a benchmark's task: definition files, data, settings, and the
    generation engine (`backend`, the configured `eval.backend`).

    Batch size is left out on purpose: it must not change results, so changing it re-evaluates nothing. The
    backend is in: vLLM's greedy outputs match HF's only within numerical noise (other kernels, batch-dependent
    reductions), so a result generated by one engine is not silently reused or mixed with the other's. It
    enters only when it is not `hf` and the benchmark generates, so HF results keep their hash, and a
    loglikelihood task (always scored by HF) is not re-evaluated on a switch.
    """
    import lm_eval

    parts: dict = {"benchmark": benchmark, "harness": harness_of(benchmark), "limit": limit,
                   "num_fewshot": num_fewshot, "max_gen_toks": max_gen_toks}
    if (engine := generation_backend(benchmark, backend)) != "hf":
        parts["backend"] = engine
    version = "1"
    local = local_task_yaml(benchmark)
    if local is not None:
        parts["yaml"] = bytes_sha256(local.read_bytes())
        parts["utils"] = bytes_sha256((TASKS_DIR / "utils.py").read_bytes())
        version = _yaml_version(local.read_text())
    elif parts["harness"] == "lm-eval":
        builtin = builtin_task_yaml(benchmark)
        parts["lm_eval"] = lm_eval.__version__
        if builtin is not None:
            parts["yaml"] = bytes_sha256(builtin.read_bytes())
            version = _yaml_version(builtin.read_text())
    else:
        import evalplus

        parts["evalplus"] = getattr(evalplus, "__version__", "unknown")
        parts["generation"] = GENERATION_VERSION.get(benchmark, "greedy-v1")
        if benchmark in LIVECODEBENCH and data is not None:
            from entrodrop_bench.evaluate.livecodebench import load_exemplars

            parts["exemplars"] = json_sha256(load_exemplars(data)[0])
    if data is not None:
        parts["data"] = file_sha256(data)
    return json_sha256(parts, length=16), version


def _yaml_version(text: str) -> str:
    for line in text.splitlines():
        if line.strip().startswith("version:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def check_benchmarks(lm_eval_tasks: list[str], evalplus_datasets: list[str]) -> None:
    """Fail before any compute when a configured benchmark is unknown to every harness."""
    for name in lm_eval_tasks:
        if name in GROUP_TASKS or local_task_yaml(name) or builtin_task_yaml(name):
            continue
        ours = sorted(p.stem for p in TASKS_DIR.glob("*.yaml"))
        raise ConfigError(
            f"eval.lm_eval_tasks: unknown lm-eval task {name!r}: it is neither a YAML under tasks/ "
            f"({', '.join(ours)}) nor a built-in lm-eval task (see `lm-eval ls tasks`)"
        )
    for name in evalplus_datasets:
        if name not in EVALPLUS_DATASETS and name not in LIVECODEBENCH:
            known = sorted({*EVALPLUS_DATASETS, *LIVECODEBENCH})
            raise ConfigError(f"eval.evalplus_datasets: unknown code benchmark {name!r} (known: {', '.join(known)})")
