"""Atomic file writes: write to a temp file in the same folder, fsync, then os.replace.

A reader never sees a half-written file, and a crash mid-write leaves the previous version intact.
Also the project's one set of content hashes (`file_sha256`, `bytes_sha256`, `json_sha256`): every run key,
config hash, cache key and task hash is one of these, so a digest on disk is computed the same way everywhere.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from entrodrop_bench.faults import maybe_die


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside `path`; on success it replaces `path`, on failure it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        maybe_die(f"before-replace:{path.name}")
        os.replace(tmp_path, path)
        maybe_die(f"after-replace:{path.name}")
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


_HASH_CHUNK = 1 << 20


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks (checkpoint weights can be GBs)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def bytes_sha256(data: bytes) -> str:
    """Hex sha256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def json_sha256(obj: Any, *, length: int | None = None) -> str:
    """Hex sha256 of `obj` as JSON with sorted keys (so dict order never matters), cut to `length` characters.

    A value JSON cannot encode (a date a YAML parser made of a method's params) is hashed as its str, as run
    keys always were; for plain JSON data this changes nothing, so every stored key keeps its value.
    """
    digest = bytes_sha256(json.dumps(obj, sort_keys=True, default=str).encode())
    return digest if length is None else digest[:length]


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | os.PathLike, obj: Any, *, indent: int = 2) -> None:
    write_text(path, json.dumps(obj, indent=indent, sort_keys=False, default=str) + "\n")


def remove_partials(folder: str | os.PathLike) -> None:
    """Delete temp files and folders left by a process killed mid-write (they never count as results)."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    for child in folder.iterdir():
        if not (child.name.startswith(".") and child.name.endswith((".partial", ".tmp"))):
            continue
        if child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Build a directory under a temp name, then rename it into place.

    Used for checkpoints: a folder named `path` exists only once it is complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        yield tmp
        maybe_die(f"before-replace:{path.name}")
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
        maybe_die(f"after-replace:{path.name}")
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
