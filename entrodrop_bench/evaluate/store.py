"""The results store: one JSON per (run, seed, checkpoint, benchmark), written atomically.

A stored result is *valid* for a (checkpoint, benchmark) pair when it parses, has this format version, and
its provenance carries the checkpoint's current content hash and the benchmark's current task config
hash. Anything else (missing, half-written, other checkpoint weights, other task config) is re-evaluated;
a change therefore invalidates exactly the pairs it affects. Failures write no result file, so a re-run
retries them. Only `<benchmark>.json` files sit in a checkpoint's store folder; caches, samples and
failure notes live in its `work/` subfolder.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

from entrodrop_bench.atomic import write_json
from entrodrop_bench.paths import CHECKPOINT_RE, Layout

FORMAT_VERSION = 1
_HASH_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _model_files(checkpoint_dir: Path) -> list[Path]:
    return sorted(p for p in checkpoint_dir.iterdir() if p.is_file() and (
        p.suffix in {".safetensors", ".bin"} or p.name.startswith(("tokenizer", "special_tokens", "vocab", "merges"))
        or p.name in {"config.json", "generation_config.json"}))


def checkpoint_sha256(checkpoint_dir: Path, memo: Path | None = None) -> str:
    """Content hash of a checkpoint: weights, config and tokenizer files (not trainer state or manifest).

    Hashing GBs of weights on every run is slow, so `memo` (a JSON in the checkpoint's work dir) keeps the
    hash with each file's size and mtime; it is recomputed when any of them changes.
    """
    files = _model_files(checkpoint_dir)
    stamp = {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in files}
    if memo is not None:
        cached = read_result(memo)
        if cached and cached.get("files") == stamp and isinstance(cached.get("sha256"), str):
            return cached["sha256"]
    h = hashlib.sha256()
    for p in files:
        h.update(p.name.encode() + b"\0" + file_sha256(p).encode() + b"\n")
    digest = h.hexdigest()
    if memo is not None:
        write_json(memo, {"files": stamp, "sha256": digest})
    return digest


def read_result(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def is_valid(record: dict | None, *, checkpoint_hash: str, task_config_hash: str) -> bool:
    if not record or record.get("format_version") != FORMAT_VERSION:
        return False
    prov = record.get("provenance") or {}
    return prov.get("checkpoint_sha256") == checkpoint_hash and prov.get("task_config_hash") == task_config_hash


def clean_score(value: Any) -> float | None:
    """A primary metric as a finite float in [0, 1], else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) and 0.0 <= value <= 1.0 else None


def write_result(layout: Layout, run: str, seed: int, step: int, benchmark: str, record: dict) -> Path:
    path = layout.result_file(run, seed, step, benchmark)
    write_json(path, {"format_version": FORMAT_VERSION, **record})
    return path


def load_results(layout: Layout) -> list[dict]:
    """Every readable result JSON in the store (unreadable or foreign files are skipped)."""
    root = layout.runs_dir / "store"
    out = []
    if not root.is_dir():
        return out
    for path in sorted(root.glob("*/seed*/checkpoint-*/*.json")):
        if not CHECKPOINT_RE.match(path.parent.name):
            continue
        record = read_result(path)
        if record is not None and record.get("format_version") == FORMAT_VERSION:
            out.append(record)
    return out
