"""The `prepare` stage: everything every run of an experiment shares, built once and cached.

Model and tokenizer resolution, tokenized and split corpora, the token-budget plan, and the frozen
base model's per-token entropies of the validation set (for the Figure 1c/4 loss groups).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml

from entrodrop_bench.artifacts import CorpusRecord, PreparedRecord
from entrodrop_bench.atomic import file_sha256, json_sha256, write_text
from entrodrop_bench.config import CorpusConfig, ExperimentConfig
from entrodrop_bench.distributed import process_rank
from entrodrop_bench.errors import DataError
from entrodrop_bench.models import load_model, load_tokenizer, resolve_model_path
from entrodrop_bench.paths import Layout
from entrodrop_bench.prepare.data import (
    TokenizedCorpus,
    TrainingPlan,
    cap_unique_tokens,
    load_corpus,
    make_plan,
    pack_documents,
    save_corpus,
    split_validation,
    tokenize_texts,
)
from entrodrop_bench.prepare.fingerprints import tokenizer_fingerprint

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """Shared inputs of every training run of one experiment."""

    config: ExperimentConfig
    layout: Layout
    model_path: str
    tokenizer: object
    target_train: TokenizedCorpus
    target_val: TokenizedCorpus
    general: TokenizedCorpus
    plan: TrainingPlan
    world: object | None = None
    writer: bool = True
    """Whether this process writes shared caches (the main process of a launched job; True when alone)."""

    @property
    def special_ids(self) -> set[int]:
        return set(self.tokenizer.all_special_ids)

    def load_base_model(self) -> torch.nn.Module:
        return load_model(self.config, self.model_path)


def pin_threads(config: ExperimentConfig) -> None:
    """torch threads of this process's own compute (the tiny world's pre-training, the entropy pass) = `train.threads`.

    At the tiny shapes (micro-batches of 512 tokens) a second intra-op thread adds little on an idle machine, and
    when other processes share the cores it is ruinous: each of the hundreds of parallel regions per step waits
    for a descheduled thread. Measured on the 2-core machine with other jobs running: 30 pre-training steps took
    4 min 17 s of wall time with 2 threads and ~4 s with 1, to bit-identical weights (same sha256)."""
    if config.train.threads:
        torch.set_num_threads(config.train.threads)


def build_world(config: ExperimentConfig, layout: Layout, echo: Callable[[str], None] = print):
    """The embedded tiny world, when the config uses it (built once, then reused)."""
    if config.tiny is None:
        return None
    pin_threads(config)
    from entrodrop_bench.prepare.tiny import build_world as build_tiny_world

    return build_tiny_world(config.tiny, layout.world_dir, log=echo)


def _corpus_key(corpus: CorpusConfig, tok_hash: str, world_file: Path | None, limit: int | None) -> str:
    ident = {"corpus": corpus.model_dump(), "tokenizer": tok_hash, "limit": limit}
    if world_file is not None:
        ident["world_file"] = file_sha256(world_file)
    return json_sha256(ident, length=16)


def tokenized_corpus(corpus: CorpusConfig, key_path: str, tokenizer, layout: Layout, world, *, max_tokens: int | None = None,
                     writer: bool = True) -> TokenizedCorpus:
    """Tokenize a corpus once (its first documents up to `max_tokens`, when given); later calls read the cache.

    A hub corpus is tokenized by several processes (`datasets.map`, `corpora.tokenize_workers()`), with the
    same documents and cap as the single-process path, so the cached corpus is the same either way.
    Only the writer (the main process) tokenizes; other processes read its cache or fail saying why."""
    from entrodrop_bench.prepare.corpora import (
        TINY_SOURCES,
        iter_texts,
        tokenize_workers,
        tokenized_documents,
    )

    world_file = world.corpus_file(corpus.source) if world is not None and corpus.source in TINY_SOURCES else None
    cache = layout.data_cache(_corpus_key(corpus, tokenizer_fingerprint(tokenizer), world_file, max_tokens))
    cached = load_corpus(cache)
    if cached is not None:
        return cached
    if not writer:
        raise DataError(f"{key_path}: process {process_rank()} found no tokenized corpus at {cache} after the main process "
                        "prepared; every process must see the same output.runs_dir (a shared filesystem)")
    if corpus.path is None and corpus.source not in TINY_SOURCES:
        ids = tokenized_documents(corpus, key_path, tokenizer, world=world, num_proc=tokenize_workers())
        result = pack_documents(ids, tokenizer.eos_token_id, source=key_path, max_tokens=max_tokens)
    else:
        result = tokenize_texts(iter_texts(corpus, key_path, world=world), tokenizer, source=key_path, max_tokens=max_tokens)
    save_corpus(cache, result)
    return result


def _capped_corpus(corpus: CorpusConfig, key: str, tokenizer, layout: Layout, world, writer: bool) -> TokenizedCorpus:
    # Reading stops at the cap, so a hub corpus far larger than the run uses is never tokenized whole.
    cap = corpus.max_unique_tokens
    return cap_unique_tokens(tokenized_corpus(corpus, key, tokenizer, layout, world, max_tokens=cap, writer=writer), cap)


def prepare(config: ExperimentConfig, layout: Layout, echo: Callable[[str], None] = print, *, writer: bool = True) -> Prepared:
    """Build (or load from cache) everything the runs share. Idempotent and cheap when already done.

    `writer` False (a non-main process of a launched job, after the main one prepared): read the caches only."""
    pin_threads(config)
    world = build_world(config, layout, echo)
    model_path = resolve_model_path(config, world)
    tokenizer = load_tokenizer(config, model_path)
    target, general = (_capped_corpus(c, key, tokenizer, layout, world, writer) for c, key in ((config.data.target, "data.target"), (config.data.general, "data.general")))
    train, val = split_validation(target, config.data.validation_fraction, config.data.max_validation_docs, seed=config.tiny.seed if config.tiny else 0)
    general_tokens_needed = int(config.data.token_budget * config.data.mix_ratio[1])
    if general.n_tokens < general_tokens_needed:
        echo(
            f"note: general corpus has {general.n_tokens:,} tokens for {general_tokens_needed:,} needed; "
            f"it repeats {general_tokens_needed / general.n_tokens:.2f}x"
        )
    for key, corpus in (("data.target", train), ("data.general", general)):
        if corpus.n_tokens < config.data.seq_len:
            raise DataError(f"{key}: corpus has {corpus.n_tokens} tokens, fewer than one sequence (data.seq_len = {config.data.seq_len})")
    plan = make_plan(config.data.token_budget, config.data.seq_len, config.train.global_batch_tokens, config.data.mix_ratio[0], train.n_tokens)
    prepared = Prepared(config, layout, model_path, tokenizer, train, val, general, plan, world, writer)
    if writer:
        _write_prepared_record(prepared)
    return prepared


def _write_prepared_record(p: Prepared) -> None:
    layout = p.layout
    resolved = yaml.safe_dump(p.config.model_dump(mode="json"), sort_keys=False)
    if not layout.experiment_config_file.is_file() or layout.experiment_config_file.read_text(encoding="utf-8") != resolved:
        write_text(layout.experiment_config_file, resolved)  # a re-run over finished work writes nothing
    PreparedRecord(
        config_hash=p.config.config_hash(),
        model_path=p.model_path,
        tokenizer_hash=tokenizer_fingerprint(p.tokenizer),
        target_train=_corpus_record(p.target_train),
        target_val=_corpus_record(p.target_val),
        general=_corpus_record(p.general),
        plan=p.plan.to_json(),
        writer_rank=process_rank(),
    ).write_if_changed(PreparedRecord.path(layout))


def _corpus_record(corpus: TokenizedCorpus) -> CorpusRecord:
    return CorpusRecord(docs=len(corpus), tokens=corpus.n_tokens, hash=corpus.content_hash())


def check_run_format(layout: Layout) -> None:
    """Refuse a run directory written by an incompatible version of this project (its prepare record says which)."""
    PreparedRecord.read_or_none(PreparedRecord.path(layout))


def percentile_groups(signals: np.ndarray) -> tuple[float, float]:
    """Thresholds of the paper's loss groups: low = the 50% most confident tokens, high = the 25% least."""
    finite = signals[np.isfinite(signals)]
    return float(np.quantile(finite, 0.5)), float(np.quantile(finite, 0.75))
