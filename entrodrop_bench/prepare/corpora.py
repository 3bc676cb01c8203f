"""Load a corpus's documents as text: the embedded tiny world, a local file, or a hub dataset via `datasets`."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from entrodrop_bench.config import TINY_SOURCES, CorpusConfig
from entrodrop_bench.errors import DataError

_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv", ".txt": "text"}


def _field_text(value: Any) -> str:
    """Flatten a field: chat-style lists of turns ({from/role, value/content}) become their texts joined."""
    if isinstance(value, list):
        return "\n".join(_field_text(v) for v in value)
    if isinstance(value, dict):
        return str(value.get("value", value.get("content", "")))
    return "" if value is None else str(value)


def _load_dataset(corpus: CorpusConfig, key: str, world_file: Path | None):
    import datasets

    if world_file is not None:
        return datasets.load_dataset("json", data_files=str(world_file), split="train")
    if corpus.path is not None:
        path = Path(corpus.path)
        files = sorted(str(p) for p in path.rglob("*") if p.suffix in _FORMATS) if path.is_dir() else [str(path)]
        if not files:
            raise DataError(f"{key}.path: {path} holds no jsonl/json/parquet/csv/txt files")
        fmt = _FORMATS.get(Path(files[0]).suffix)
        if fmt is None:
            raise DataError(f"{key}.path: {path} has an unsupported extension (expected one of {', '.join(_FORMATS)})")
        return datasets.load_dataset(fmt, data_files=files, split="train")
    try:
        return datasets.load_dataset(corpus.source, corpus.name, split=corpus.split)
    except Exception as exc:  # offline, missing, gated: datasets raises many types
        raise DataError(
            f"{key}.source: could not load hub dataset {corpus.source!r} (split {corpus.split!r}): "
            f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}. Without hub access, download it elsewhere "
            f"and set {key}.path to a local jsonl/parquet file or folder."
        ) from None


def document_dataset(corpus: CorpusConfig, key: str, *, world=None):
    """The corpus as a `datasets.Dataset` of its `text_fields` only, in dataset (or `shuffle_seed`) order.

    `key` is the config path, for errors; missing fields are reported before anything is read."""
    world_file = None
    if corpus.source in TINY_SOURCES and corpus.path is None:
        if world is None:
            raise DataError(f"{key}.source: {corpus.source!r} is an embedded tiny corpus but the config has no `tiny:` section")
        world_file = world.corpus_file(corpus.source)
    ds = _load_dataset(corpus, key, world_file)
    missing = [f for f in corpus.text_fields if f not in ds.column_names]
    if missing:
        raise DataError(f"{key}.text_fields: fields {missing} are not in the data (it has {ds.column_names})")
    if corpus.shuffle_seed is not None:
        ds = ds.shuffle(seed=corpus.shuffle_seed)  # an index mapping: nothing is copied
    return ds.select_columns(corpus.text_fields)


def document_text(record: dict, fields: list[str]) -> str:
    """One document: its fields' texts joined by newlines ("" when blank: such documents are skipped)."""
    text = "\n".join(t for t in (_field_text(record[f]) for f in fields) if t)
    return text if text.strip() else ""


def iter_texts(corpus: CorpusConfig, key: str, *, world=None) -> Iterator[str]:
    """Documents of a corpus as strings (its `text_fields` joined by newlines), read lazily in dataset order
    (or in `shuffle_seed` order).

    `key` is the config path, for errors. Missing fields and an empty corpus are reported before any
    document is handed out, so the caller's compute never starts on bad data.
    """
    ds = document_dataset(corpus, key, world=world)
    documents = (text for record in ds if (text := document_text(record, corpus.text_fields)))
    first = next(documents, None)
    if first is None:
        raise DataError(f"{key}: corpus {corpus.path or corpus.source} is empty (no non-blank documents in {corpus.text_fields})")
    return itertools.chain([first], documents)


WINDOW_DOCS_PER_PROC = 20_000
"""Documents each tokenizer process handles per window of `tokenized_documents`; reading stops after the window
in which the cap is reached, so at most one window is tokenized beyond what is kept."""


def tokenize_workers() -> int:
    """Processes that tokenize a hub corpus: ENTRODROP_TOKENIZE_PROCS, else the CPUs this process may use (at most 16)."""
    env = os.environ.get("ENTRODROP_TOKENIZE_PROCS", "").strip()
    if env:
        if not env.isdigit() or int(env) < 1:
            raise DataError(f"ENTRODROP_TOKENIZE_PROCS={env!r}: expected a positive integer")
        return int(env)
    return max(1, min(len(os.sched_getaffinity(0)), 16))


def _encode(batch: dict, fields: list[str], tokenizer) -> dict:
    n = len(batch[fields[0]])
    texts = [document_text({f: batch[f][i] for f in fields}, fields) for i in range(n)]
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return {"ids": [x if t else [] for x, t in zip(ids, texts)]}


def tokenized_documents(corpus: CorpusConfig, key: str, tokenizer, *, world=None, num_proc: int = 1) -> Iterator[list[int]]:
    """Token ids of every document, in `iter_texts` order, tokenized by `num_proc` processes (`datasets.map`).

    The corpus is read in windows of `num_proc x WINDOW_DOCS_PER_PROC` documents, each mapped in parallel and
    yielded in order, so a consumer that stops at a token cap leaves the rest of a large corpus unread. Blank
    documents yield []. Nothing is written to the datasets cache (`keep_in_memory`)."""
    ds = document_dataset(corpus, key, world=world)
    fields = list(corpus.text_fields)
    window = max(1, num_proc) * WINDOW_DOCS_PER_PROC
    for start in range(0, len(ds), window):
        part = ds.select(range(start, min(start + window, len(ds))))
        procs = min(num_proc, max(1, len(part) // 1000)) if num_proc > 1 else None
        mapped = part.map(_encode, batched=True, batch_size=1000, num_proc=procs, remove_columns=fields,
                          fn_kwargs={"fields": fields, "tokenizer": tokenizer}, keep_in_memory=True,
                          load_from_cache_file=False, desc=f"tokenizing {key}")
        yield from mapped["ids"]
