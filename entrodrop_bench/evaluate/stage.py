"""Evaluation stage: every complete checkpoint x every benchmark, cached in the results store.

- lm-eval benchmarks (`eval.lm_eval_tasks`) run through `lm_eval_runner`, code benchmarks
  (`eval.evalplus_datasets`: humaneval, mbpp, tiny_code; and `livecodebench`) through `evalplus_runner`
  / `livecodebench`, whose generated programs run in `sandbox`.
- Every result keeps its per-item outcomes (`EvalResult.items`), checked to average to its score. A
  result written before they were kept is still valid, unless `eval.needs_items` (then it is re-evaluated).
- Idempotent: a (checkpoint, benchmark) pair is evaluated only when it has no valid result (see `store`);
  results are written one benchmark at a time, atomically, so an interrupted eval resumes where it stopped.
- Claiming: a worker claims a checkpoint (all of its pending benchmarks) by taking the checkpoint's store
  lock *without waiting* (`flock`, which the kernel drops when the holder dies, so a killed worker leaves no
  stale claim). A checkpoint that another process holds is passed over and retried after the others, so
  `eval.workers` local worker processes, or two plain `eval` processes, split the work with no pair done
  twice, and a process returns only once every checkpoint is evaluated (by it or by another).
- The model is loaded once per checkpoint, and only when something is left to evaluate; all of that
  checkpoint's benchmarks run before the worker moves on.
- `eval.backend: vllm` (`vllm_backend`): one vLLM engine per worker (`WorkerEngine`), started on the worker's
  first checkpoint; each later checkpoint's weights are loaded into it in place. It generates for every
  generating benchmark of a checkpoint (run first); then, on a GPU, it sleeps (weights and KV cache freed)
  while the HF model scores the loglikelihood ones. It is released when the worker ends (with
  `eval.vllm_reuse_engine: false`, after each checkpoint). Each result records its `backend`.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from entrodrop_bench.artifacts import (
    ArtifactError,
    CheckpointHashMemo,
    CheckpointManifest,
    EvalResult,
    ItemOutcomes,
    ResultProvenance,
)
from entrodrop_bench.atomic import remove_partials, write_text
from entrodrop_bench.config import ExperimentConfig, fixed_shots
from entrodrop_bench.evaluate.sandbox import STRONG, require_isolation
from entrodrop_bench.evaluate.store import (
    checkpoint_sha256,
    clean_score,
    is_valid,
    read_result,
    write_result,
)
from entrodrop_bench.evaluate.suites import (
    data_file,
    effective_max_gen_toks,
    generation_backend,
    harness_of,
    primary_metric,
    task_config_hash,
)
from entrodrop_bench.paths import EvalWorkDir, Layout

__all__ = ["evaluate_experiment", "evaluate_checkpoint", "pending_pairs"]
log = logging.getLogger(__name__)


def _versions(*, with_vllm: bool = False) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    names = (("lm_eval", "lm_eval"), ("evalplus", "evalplus"), ("transformers", "transformers"),
             ("torch", "torch"), ("entrodrop_bench", "entrodrop-bench")) + ((("vllm", "vllm"),) if with_vllm else ())
    for name, dist in names:
        try:
            out[name] = version(dist)
        except PackageNotFoundError:
            out[name] = "unknown"
    return out


def eval_threads(config: ExperimentConfig) -> int | None:
    """torch threads of one evaluation worker: `eval.threads`, else `train.threads` (None: torch's default)."""
    return config.eval.threads or config.train.threads


class _Loaded:
    """Lazily loaded checkpoint: HF model, tokenizer and (for lm-eval) the HFLM wrapper; under `eval.backend:
    vllm` also the worker's vLLM engine holding this checkpoint's weights (lm-eval's vLLM model, whose `LLM`
    also generates code). At most one of the HF model and an awake vLLM engine holds the device: asking for
    one releases (HF) or suspends (vLLM) the other (`_run_order` keeps switches to one per checkpoint), and
    `close` releases the HF model; the engine outlives the checkpoint unless reuse is off."""

    def __init__(self, checkpoint_dir: Path, config: ExperimentConfig, *, engine: Any = None,
                 weights_id: str | None = None):
        self.dir, self.config = checkpoint_dir, config
        self.engine, self.weights_id = engine, weights_id
        """The worker's `vllm_backend.WorkerEngine` (under `vllm`) and this checkpoint's content hash."""
        self._model = self._tok = self._lm = self._vllm = self._routed = None

    def model_and_tokenizer(self) -> tuple[Any, Any]:
        if self._model is None:
            import torch

            from entrodrop_bench.models import load_causal_lm

            self._release_vllm()
            if threads := eval_threads(self.config):
                torch.set_num_threads(threads)
            self.tokenizer()
            model = load_causal_lm(self.dir, dtype=self.config.model.dtype,
                                   device="cuda" if torch.cuda.is_available() else "cpu")
            self._model = model
        return self._model, self._tok

    def tokenizer(self) -> Any:
        if self._tok is None:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(self.dir)
            if tok.pad_token is None:
                tok.pad_token = self.config.model.pad_token or tok.eos_token
            self._tok = tok
        return self._tok

    def hf_lm(self) -> Any:
        if self._lm is None:
            from lm_eval.models.huggingface import HFLM

            model, tok = self.model_and_tokenizer()
            # Passing an in-memory model is deliberate (one load serves every benchmark); lm-eval warns about
            # it twice per checkpoint, so its wrapper's logger is held to errors while it is built.
            hf_logger = logging.getLogger("lm_eval.models.huggingface")
            level = hf_logger.level
            hf_logger.setLevel(logging.ERROR)
            try:
                self._lm = HFLM(pretrained=model, tokenizer=tok, batch_size=self.config.eval.batch_size)
            finally:
                hf_logger.setLevel(level)
        return self._lm

    def lm(self) -> Any:
        """The lm-eval model a benchmark runs on: HFLM, or under `vllm` the router over both engines."""
        if self.config.eval.backend == "hf":
            return self.hf_lm()
        if self._routed is None:
            from entrodrop_bench.evaluate.vllm_backend import RoutedLM

            self._routed = RoutedLM(hf=self.hf_lm, vllm=self.vllm_lm)
        return self._routed

    def vllm_lm(self) -> Any:
        """lm-eval's vLLM model holding this checkpoint's weights: the worker's engine."""
        if self._vllm is None:
            self._release_hf()
            self._vllm = self.engine.lm(self.dir, self.weights_id or str(self.dir))
        return self._vllm

    def code_generator(self) -> Any:
        """`generator(prompts, *, max_new_tokens, stop)` for the code benchmarks under `vllm` (None under `hf`:
        they then call `evalplus_runner.generate` on the HF model)."""
        if self.config.eval.backend == "hf":
            return None
        from transformers import AutoConfig

        from entrodrop_bench.evaluate import vllm_backend

        engine, tok = self.vllm_lm(), self.tokenizer()
        max_pos = vllm_backend.engine_max_positions(
            engine, getattr(AutoConfig.from_pretrained(self.dir), "max_position_embeddings", None) or 1 << 30)

        def generator(prompts: list[str], *, max_new_tokens: int, stop: tuple[str, ...]) -> list[str]:
            return vllm_backend.generate(engine.model, tok, prompts, max_new_tokens=max_new_tokens, stop=stop,
                                         max_positions=max_pos)

        return generator

    def _release_hf(self) -> None:
        if self._model is not None:
            self._model = self._lm = None
            _free_device_memory()

    def _release_vllm(self) -> None:
        if self._vllm is not None:
            self._vllm = None
            self.engine.suspend()

    def close(self) -> None:
        self._vllm = None
        if self.engine is not None and not self.engine.reuse:
            self.engine.close()
        self._release_hf()


def _free_device_memory() -> None:
    """Give a dropped model's GPU memory back (on CPU, reference counting already freed it)."""
    import gc

    import torch

    if torch.cuda.is_available():
        gc.collect()
        torch.cuda.empty_cache()


def _run_order(benchmarks: list[str], backend: str) -> list[str]:
    """Benchmarks in the order a checkpoint runs them: under `vllm`, the vLLM-generated ones first, so the
    engine is built once and released before the HF model loads (never both on the GPU); under `hf`, as given."""
    if backend == "hf":
        return list(benchmarks)
    return sorted(benchmarks, key=lambda b: generation_backend(b, backend) != backend)


def _manifest(checkpoint_dir: Path) -> CheckpointManifest | None:
    """The checkpoint's manifest; None when this version cannot read it (the result then names the run's method
    from the run name and leaves the target epoch unknown, as for checkpoints from elsewhere)."""
    try:
        return CheckpointManifest.read(CheckpointManifest.path(checkpoint_dir))
    except ArtifactError as exc:
        log.warning("%s", exc)
        return None


def _run_one(loaded: _Loaded, benchmark: str, data: Path | None, work: Path, ckpt_hash: str,
             config: ExperimentConfig, cache_dir: Path) -> tuple[dict, dict, dict | None]:
    """(metrics, extra provenance, per-item outcomes {"ids", "scores"}) of one benchmark on one loaded checkpoint."""
    ev = config.eval
    harness = harness_of(benchmark)
    max_gen_toks = effective_max_gen_toks(benchmark, ev.max_gen_toks)
    if harness == "lm-eval":
        from entrodrop_bench.evaluate.lm_eval_runner import run_lm_eval

        lm = loaded.lm()
        routed = getattr(lm, "served_backend", None)  # the vLLM router records which engines answer (HFLM: None)
        if routed is not None:
            lm.reset_served()
        # lm-eval's request cache keys ignore the model, so each engine gets its own cache file.
        cache_key = (ckpt_hash[:16] + ("" if ev.backend == "hf" else f"-{ev.backend}")) if ev.request_cache else None
        out = run_lm_eval(lm, benchmark, data, work_dir=work, cache_key=cache_key,
                          batch_size=ev.batch_size, limit=ev.limit, num_fewshot=ev.shots(benchmark),
                          max_gen_toks=max_gen_toks)
        backend = routed() if routed is not None else "hf"
        # A fixed exemplar set written into the prompt (GSM8K's) is lm-eval's zero-shot: record its count.
        return out["metrics"], {"num_fewshot": fixed_shots(benchmark) or out["n_shot"], "n_samples": out["n_samples"], "backend": backend,
                                "lm_eval_task_hash": out["task_hash"], "lm_eval_seeds": out["seeds"]}, out["items"]
    generator = loaded.code_generator()
    model, tok = loaded.model_and_tokenizer() if generator is None else (None, None)
    if harness == "evalplus":
        from entrodrop_bench.evaluate.evalplus_runner import run_evalplus

        out = run_evalplus(model, tok, benchmark, data, work_dir=EvalWorkDir(work).evalplus_dir(benchmark),
                           batch_size=ev.batch_size, limit=ev.limit, max_gen_toks=max_gen_toks, cache_dir=cache_dir,
                           allow_weak=ev.allow_weak_isolation, generator=generator)
    else:
        from entrodrop_bench.evaluate.livecodebench import run_livecodebench

        out = run_livecodebench(model, tok, data, work_dir=EvalWorkDir(work).livecodebench_dir, batch_size=ev.batch_size,
                                limit=ev.limit, max_gen_toks=max_gen_toks, allow_weak=ev.allow_weak_isolation,
                                generator=generator)
    metrics = {k: out[k] for k in ("pass@1", "base_pass@1") if out.get(k) is not None}
    extra = {"num_fewshot": 0, "n_samples": out.get("n_tasks"), "sandbox": out.get("isolation"),
             "sandbox_strong": out.get("isolation") == STRONG, "adapter": harness,
             "backend": "hf" if generator is None else ev.backend}
    if out.get("ground_truth_sha256"):
        extra["ground_truth_sha256"] = out["ground_truth_sha256"]
    if harness == "livecodebench":  # LiveCodeBench's base-model prompt is one-shot; say whose example it was
        extra.update(num_fewshot=1, lcb_exemplar=out.get("lcb_exemplar"))
    return metrics, extra, out.get("items")


def _item_outcomes(bench: str, items: dict | None, score: float | None) -> ItemOutcomes | None:
    """The harness's per-item outcomes, checked: unique ids, and their mean is the stored score (an item list
    that disagrees with the score would make every paired statistic describe another number)."""
    if items is None or score is None:
        return None
    outcomes = ItemOutcomes(ids=items["ids"], scores=items["scores"])
    if not outcomes.ids or len(outcomes.ids) != len(outcomes.scores) or len(set(outcomes.ids)) != len(outcomes.ids):
        raise RuntimeError(f"{bench}: the harness's per-item outcomes are empty, misaligned or repeat an item id")
    mean = sum(outcomes.scores) / len(outcomes.scores)
    if abs(mean - score) > 1e-6:
        raise RuntimeError(f"{bench}: the mean of {len(outcomes.scores)} per-item scores is {mean:.6f}, "
                           f"but the benchmark's score is {score:.6f}")
    return outcomes


def _claim(layout: Layout, run: str, seed: int, step: int, *, blocking: bool) -> FileLock | None:
    """The checkpoint's store lock, held; None when another process holds it and `blocking` is False."""
    path = layout.store_lock(run, seed, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    # 0600: a generated program running under the weak fallback as an unprivileged uid cannot open (so cannot
    # flock) another checkpoint's claim; under bubblewrap the store is not visible to it at all.
    lock = FileLock(str(path), timeout=-1 if blocking else 0, mode=0o600)
    try:
        lock.acquire()
    except Timeout:
        return None
    return lock


def evaluate_checkpoint(config: ExperimentConfig, layout: Layout, run: str, seed: int, step: int,
                        checkpoint_dir: Path, benchmarks: list[str], *, world_benchmarks: dict[str, Path] | None = None,
                        on_pair: Any = None, blocking: bool = True, engine: Any = None) -> dict[str, int] | None:
    """Evaluate the benchmarks of one checkpoint that have no valid stored result.

    Holds the checkpoint's store lock throughout, re-checking validity after acquiring it, so another eval
    process never does the same pair. `blocking` False: when another process holds the lock, return None at
    once (the checkpoint is claimed) instead of waiting for it. `on_pair(benchmark, status)` is called once per
    benchmark (for progress bars). `engine`: the worker's vLLM engine under `eval.backend: vllm` (None: one is
    started for this checkpoint and released at its end). Returns counts: evaluated, skipped, failed.
    """
    ev = config.eval
    counts = {"evaluated": 0, "skipped": 0, "failed": 0}
    datas = {b: data_file(b, ev.data_overrides, world_benchmarks) for b in benchmarks}  # bad paths fail first
    gen_toks = {b: effective_max_gen_toks(b, ev.max_gen_toks) for b in benchmarks}
    hashes = {b: task_config_hash(b, datas[b], limit=ev.limit, num_fewshot=ev.shots(b),
                                  max_gen_toks=gen_toks[b], backend=ev.backend) for b in benchmarks}
    lock = _claim(layout, run, seed, step, blocking=blocking)
    if lock is None:
        return None
    loaded = None
    own_engine = engine is None and ev.backend == "vllm"
    if own_engine:
        from entrodrop_bench.evaluate.vllm_backend import WorkerEngine

        engine = WorkerEngine(config)
    try:
        remove_partials(layout.store_dir(run, seed, step))  # left by a process killed mid-write; we hold the lock
        work = layout.eval_work_dir(run, seed, step)
        ckpt_hash = checkpoint_sha256(checkpoint_dir, memo=CheckpointHashMemo.path(layout, run, seed, step))
        manifest = _manifest(checkpoint_dir)
        loaded = _Loaded(checkpoint_dir, config, engine=engine, weights_id=ckpt_hash)
        for bench in _run_order(benchmarks, ev.backend):
            thash, tversion = hashes[bench]
            if is_valid(read_result(layout, run, seed, step, bench), checkpoint_hash=ckpt_hash, task_config_hash=thash,
                        need_items=ev.needs_items):
                counts["skipped"] += 1
                on_pair and on_pair(bench, "skipped")
                continue
            tic = time.perf_counter()
            try:
                metrics, extra, raw_items = _run_one(loaded, bench, datas[bench], work, ckpt_hash, config,
                                                     layout.evalplus_cache_dir)
                metric = primary_metric(bench, metrics)
                score = clean_score(metrics.get(metric))
                items = _item_outcomes(bench, raw_items, score)
            except Exception as exc:  # noqa: BLE001 - one failing benchmark must not stop the others
                counts["failed"] += 1
                log.error("eval %s/seed%d/checkpoint-%d %s failed: %s", run, seed, step, bench, exc)
                write_text(layout.eval_failure_file(run, seed, step, bench), traceback.format_exc())
                on_pair and on_pair(bench, "failed")
                continue
            write_result(layout, EvalResult(
                run=run, method=manifest.method if manifest else run.split("@")[0], seed=seed, step=step,
                target_epoch=manifest.target_epoch if manifest else None, benchmark=bench,
                harness="lm-eval" if harness_of(bench) == "lm-eval" else "evalplus",
                metrics=metrics, primary_metric=metric, score=score, items=items,
                provenance=ResultProvenance(
                    checkpoint=str(checkpoint_dir), checkpoint_sha256=ckpt_hash, task_version=tversion,
                    task_config_hash=thash, num_fewshot=extra.pop("num_fewshot", ev.shots(bench)),
                    seed=seed, batch_size=ev.batch_size, limit=ev.limit, max_gen_toks=gen_toks[bench],
                    data_file=str(datas[bench]) if datas[bench] else None,
                    versions=_versions(with_vllm=extra.get("backend") == "vllm"),
                    wall_time_s=round(time.perf_counter() - tic, 3),
                    date=datetime.now(timezone.utc).isoformat(timespec="seconds"), **extra,
                ),
            ))
            layout.eval_failure_file(run, seed, step, bench).unlink(missing_ok=True)
            counts["evaluated"] += 1
            on_pair and on_pair(bench, "evaluated")
    finally:
        if loaded is not None:
            loaded.close()  # the HF model (and an engine not reused) leaves the device before the next checkpoint
        if own_engine:
            engine.close()
        lock.release()
    return counts


def _benchmarks(config: ExperimentConfig) -> list[str]:
    return list(dict.fromkeys(config.eval.lm_eval_tasks + config.eval.evalplus_datasets))


def pending_pairs(config: ExperimentConfig, layout: Layout) -> list[tuple[str, int, int, Path]]:
    """Every complete checkpoint of this config's runs and seeds: (run, seed, step, folder).

    A runs folder can hold more (the seeds study shares the demo's folder; a method removed from the config
    leaves its runs behind): evaluating those would cost time for results no table of this config reads."""
    wanted = {(run, seed) for run in config.runs for seed in config.train.seeds}
    return [(run, seed, step, folder) for run, seed in layout.train_runs() if (run, seed) in wanted
            for step, folder in layout.checkpoints(run, seed)]


def _is_done(config: ExperimentConfig, layout: Layout, ckpt: tuple[str, int, int, Path], benchmarks: list[str],
             world_benchmarks: dict[str, Path] | None) -> bool:
    """Whether every benchmark of a checkpoint has a valid result (read without the lock: a hint for scheduling,
    re-checked under the lock before any work)."""
    run, seed, step, folder = ckpt
    ev = config.eval
    ckpt_hash = checkpoint_sha256(folder, memo=CheckpointHashMemo.path(layout, run, seed, step))
    for bench in benchmarks:
        data = data_file(bench, ev.data_overrides, world_benchmarks)
        thash, _ = task_config_hash(bench, data, limit=ev.limit, num_fewshot=ev.shots(bench),
                                    max_gen_toks=effective_max_gen_toks(bench, ev.max_gen_toks), backend=ev.backend)
        if not is_valid(read_result(layout, run, seed, step, bench), checkpoint_hash=ckpt_hash, task_config_hash=thash,
                        need_items=ev.needs_items):
            return False
    return True


CLAIM_POLL_S = 0.5
"""How often a worker with nothing left to claim retries the checkpoints that other processes hold."""


def claim_and_evaluate(config: ExperimentConfig, layout: Layout, ckpts: list[tuple[str, int, int, Path]],
                       benchmarks: list[str], *, world_benchmarks: dict[str, Path] | None = None,
                       on_pair: Any = None, engine: Any = None) -> dict[str, int]:
    """One worker: claim each checkpoint that no other process holds and evaluate its pending benchmarks; then
    retry the held ones until each is claimed (it is then found done, or finished here when its holder died).

    `on_pair(run, seed, step, benchmark, status)` is called once per (checkpoint, benchmark) handled here.
    Under `eval.backend: vllm` the worker keeps one vLLM engine for all the checkpoints it claims: `engine` (a
    `vllm_backend.WorkerEngine` the caller keeps across calls, e.g. a launch eval job that polls for new
    checkpoints), else one started here and closed on return.
    Returns counts: evaluated, skipped, failed (and under vllm: vllm_engine_starts, vllm_weight_loads, this call's).
    """
    counts = {"evaluated": 0, "skipped": 0, "failed": 0}
    own_engine = engine is None and config.eval.backend == "vllm"
    if own_engine:
        from entrodrop_bench.evaluate.vllm_backend import WorkerEngine

        engine = WorkerEngine(config)
    starts, reloads = (engine.starts, engine.reloads) if engine is not None else (0, 0)
    pending = list(ckpts)
    try:
        while pending:
            held = []
            for run, seed, step, folder in pending:
                tick = on_pair and (lambda bench, status, _c=(run, seed, step): on_pair(*_c, bench, status))
                done = evaluate_checkpoint(config, layout, run, seed, step, folder, benchmarks,
                                           world_benchmarks=world_benchmarks, on_pair=tick, blocking=False,
                                           engine=engine)
                if done is None:
                    held.append((run, seed, step, folder))
                    continue
                for key, n in done.items():
                    counts[key] += n
            if held and len(held) == len(pending):
                time.sleep(CLAIM_POLL_S)  # every remaining checkpoint is held elsewhere: wait for one to free
            pending = held
    finally:
        if own_engine:
            engine.close()
    if engine is not None:
        counts.update(vllm_engine_starts=engine.starts - starts, vllm_weight_loads=engine.reloads - reloads)
    return counts


def evaluate_experiment(config: ExperimentConfig, layout: Layout, *, world_benchmarks: dict[str, Path] | None = None,
                        progress: bool = True, engine: Any = None) -> dict:
    """Evaluate every complete checkpoint on every configured benchmark; only missing pairs do work.

    With `eval.workers` > 1, that many local worker processes claim the checkpoints with pending work (see
    `claim_and_evaluate`); otherwise this process is the one worker. Returns {"checkpoints", "evaluated",
    "skipped", "failed", "wall_s", "failures", "workers"}: `workers` is how many worked (0 when nothing was left),
    and `failures` says, one line per failed (checkpoint, benchmark), what failed and where its traceback is;
    under `eval.backend: vllm`, also `vllm_engine_starts` and `vllm_weight_loads`. `engine`: this process's vLLM
    engine, kept by the caller across calls (used when this process is the one worker).
    """
    from tqdm.auto import tqdm

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    benchmarks = _benchmarks(config)
    for bench in benchmarks:  # a missing or bad data file is named first, before the sandbox check
        data_file(bench, config.eval.data_overrides, world_benchmarks)
    if any(harness_of(b) != "lm-eval" for b in benchmarks):
        # Refused before any model is loaded: code benchmarks run generated programs.
        require_isolation(config.eval.allow_weak_isolation, "model-generated code (eval.evalplus_datasets)")
    if config.eval.backend != "hf":  # vllm and a GPU, checked here too: `launch`'s eval jobs start here
        from entrodrop_bench.evaluate.vllm_backend import check_backend

        check_backend(config.eval)
    ckpts = pending_pairs(config, layout)
    summary = {"checkpoints": len(ckpts), "evaluated": 0, "skipped": 0, "failed": 0}
    failures: list[str] = []
    tic = time.perf_counter()
    if not benchmarks or not ckpts:
        return {**summary, "wall_s": 0.0, "failures": failures, "workers": 0}
    todo = [c for c in ckpts if not _is_done(config, layout, c, benchmarks, world_benchmarks)]
    summary["skipped"] = (len(ckpts) - len(todo)) * len(benchmarks)
    workers = min(config.eval.workers, len(todo))
    with tqdm(total=len(ckpts) * len(benchmarks), initial=summary["skipped"], desc="eval", unit="pair",
              disable=not progress) as bar:
        def tick(run: str, seed: int, step: int, bench: str, status: str) -> None:
            bar.set_postfix_str(f"{run}/seed{seed}/ckpt-{step} {bench} {status}", refresh=False)
            bar.update(1)
            if status == "failed":
                failures.append(_failure_line(layout, run, seed, step, bench))

        if workers > 1:
            counts = _run_workers(config, layout, todo, benchmarks, world_benchmarks, workers, tick)
            # A worker also meets the pairs another worker did (when it retries a held checkpoint); from here,
            # every pair of `todo` that no worker evaluated or failed was found done.
            counts["skipped"] = len(todo) * len(benchmarks) - counts["evaluated"] - counts["failed"]
        else:
            counts = claim_and_evaluate(config, layout, todo, benchmarks, world_benchmarks=world_benchmarks, on_pair=tick,
                                        engine=engine)
    for key, n in counts.items():
        summary[key] = summary.get(key, 0) + n
    return {**summary, "wall_s": round(time.perf_counter() - tic, 1), "failures": failures, "workers": workers}


def _worker_main(config_json: str, layout: Layout, ckpts: list, benchmarks: list[str],
                 world_benchmarks: dict[str, Path] | None, ticks: Any) -> dict[str, int]:
    """A worker process: its own torch threads, then `claim_and_evaluate`, reporting each pair on `ticks`."""
    import torch

    config = ExperimentConfig.model_validate_json(config_json)
    if threads := eval_threads(config):
        torch.set_num_threads(threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    def report(*pair: Any) -> None:
        if pair[-1] != "skipped":  # done by another worker, which reports it
            ticks.put(pair)

    return claim_and_evaluate(config, layout, ckpts, benchmarks, world_benchmarks=world_benchmarks, on_pair=report)


def _run_workers(config: ExperimentConfig, layout: Layout, ckpts: list, benchmarks: list[str],
                 world_benchmarks: dict[str, Path] | None, workers: int, tick: Any) -> dict[str, int]:
    """`workers` spawned processes (fresh interpreters: no forked torch thread pools) claim `ckpts` between
    them; their per-pair reports come back through a queue, to this process's progress bar and failure list.
    Each worker starts at its own offset in the list, so they do not all try the same first checkpoint."""
    import multiprocessing as mp
    import threading
    from concurrent.futures import ProcessPoolExecutor

    ctx = mp.get_context("spawn")
    payload = config.model_dump_json()
    counts: dict[str, int] = {"evaluated": 0, "skipped": 0, "failed": 0}
    starts = [i * len(ckpts) // workers for i in range(workers)]
    with ctx.Manager() as manager:
        ticks = manager.Queue()

        def relay() -> None:
            while (pair := ticks.get()) is not None:
                tick(*pair)

        relay_thread = threading.Thread(target=relay, daemon=True)
        relay_thread.start()
        try:
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                futures = [pool.submit(_worker_main, payload, layout, ckpts[k:] + ckpts[:k], benchmarks,
                                       world_benchmarks, ticks) for k in starts]
                for future in futures:
                    for key, n in future.result().items():
                        counts[key] = counts.get(key, 0) + n
        finally:
            ticks.put(None)
            relay_thread.join()
    return counts


def _failure_line(layout: Layout, run: str, seed: int, step: int, bench: str) -> str:
    note = layout.eval_failure_file(run, seed, step, bench)
    try:
        last = note.read_text().strip().splitlines()[-1]
    except (OSError, IndexError):
        last = "(no traceback recorded)"
    return f"{run}/seed{seed}/checkpoint-{step} {bench}: {last[:300]} (traceback: {note})"
