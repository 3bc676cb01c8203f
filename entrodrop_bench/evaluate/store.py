"""The results store: one `EvalResult` per (run, seed, checkpoint, benchmark), written atomically.

A stored result is *valid* for a (checkpoint, benchmark) pair when it reads as an `EvalResult` of this
format and its provenance carries the checkpoint's current content hash and the benchmark's current task
config hash. Anything else (missing, half-written, other format, other checkpoint weights, other task
config, or no per-item outcomes when they are needed: `eval.needs_items`) is re-evaluated; a change therefore invalidates exactly the pairs it affects. Failures write no
result file, so a re-run retries them. Only `<benchmark>.json` files sit in a checkpoint's store folder;
caches, samples and failure notes live in its `work/` subfolder.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from entrodrop_bench.artifacts import ArtifactError, CheckpointHashMemo, EvalResult, stored_results
from entrodrop_bench.atomic import bytes_sha256, file_sha256
from entrodrop_bench.paths import Layout


def _model_files(checkpoint_dir: Path) -> list[Path]:
    return sorted(p for p in checkpoint_dir.iterdir() if p.is_file() and (
        p.suffix in {".safetensors", ".bin"} or p.name.startswith(("tokenizer", "special_tokens", "vocab", "merges"))
        or p.name in {"config.json", "generation_config.json"}))


def checkpoint_sha256(checkpoint_dir: Path, memo: Path | None = None) -> str:
    """Content hash of a checkpoint: weights, config and tokenizer files (not trainer state or manifest).

    Hashing GBs of weights on every run is slow, so `memo` (a `CheckpointHashMemo` in the checkpoint's work
    dir) keeps the hash with each file's size and mtime; it is recomputed when any of them changes, or when
    the memo cannot be read.
    """
    files = _model_files(checkpoint_dir)
    stamp = {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in files}
    if memo is not None:
        try:
            cached = CheckpointHashMemo.read_or_none(memo)
        except ArtifactError:
            cached = None  # only a cache: recomputing it is the repair
        if cached is not None and cached.files == stamp:
            return cached.sha256
    digest = bytes_sha256(b"".join(p.name.encode() + b"\0" + file_sha256(p).encode() + b"\n" for p in files))
    if memo is not None:
        CheckpointHashMemo(files=stamp, sha256=digest).write(memo)
    return digest


def read_result(layout: Layout, run: str, seed: int, step: int, benchmark: str) -> EvalResult | None:
    """The stored result, or None when there is none this version can use (it is then re-evaluated)."""
    try:
        return EvalResult.read_or_none(EvalResult.path(layout, run, seed, step, benchmark))
    except ArtifactError:
        return None


def is_valid(record: EvalResult | None, *, checkpoint_hash: str, task_config_hash: str, need_items: bool = False) -> bool:
    """Whether `record` stands for this checkpoint and task; with `need_items`, only if it keeps per-item outcomes."""
    return record is not None and record.is_valid_for(checkpoint_hash=checkpoint_hash, task_config_hash=task_config_hash,
                                                      need_items=need_items)


def clean_score(value: Any) -> float | None:
    """A primary metric as a finite float in [0, 1], else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) and 0.0 <= value <= 1.0 else None


def write_result(layout: Layout, result: EvalResult) -> Path:
    path = EvalResult.path(layout, result.run, result.seed, result.step, result.benchmark)
    result.write(path)
    return path


def load_results(layout: Layout) -> list[EvalResult]:
    """Every result in the store this version can read (unreadable, foreign or other-format files are skipped)."""
    return [r for *_, r in stored_results(layout) if isinstance(r, EvalResult)]
