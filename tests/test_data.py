"""Packing, mixing and budgets of the data pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from entrodrop_bench.errors import DataError
from entrodrop_bench.prepare.data import (
    IGNORE_INDEX,
    EpochStream,
    MixedRows,
    TokenizedCorpus,
    make_plan,
    validation_rows,
)
from entrodrop_bench.regularizer import GENERAL, TARGET


def corpus(n_docs: int, length: int, base: int = 10) -> TokenizedCorpus:
    return TokenizedCorpus.from_docs([[base + (d * 7 + i) % 50 for i in range(length - 1)] + [1] for d in range(n_docs)])


def test_epoch_stream_covers_every_token_once_per_epoch():
    c = corpus(7, 9)
    stream = EpochStream(c, seq_len=9, seed=3, reshuffle=True)
    rows = [stream.row(i) for i in range(7)]  # exactly one epoch
    seen = sorted((int(d), int(p)) for _, docs, pos in rows for d, p in zip(docs, pos))
    assert seen == [(d, p) for d in range(7) for p in range(9)]
    # The next epoch is shuffled differently.
    assert [int(r[1][0]) for r in rows] != [int(stream.row(7 + i)[1][0]) for i in range(7)]


def test_plan_hits_ratio_and_identical_budget():
    plan = make_plan(token_budget=64 * 100, seq_len=64, global_batch_tokens=640, target_share=0.6, target_train_tokens=500)
    assert plan.total_steps == 10
    seen = plan.tokens_seen(plan.total_steps)
    assert seen["target"] + seen["general"] == 64 * 100
    assert seen["target"] == 64 * 60
    # Every prefix is within one row of the ratio.
    for g in range(100):
        assert abs(plan.target_rows_before(g) - 0.6 * g) <= 1


def test_rows_mark_segments_domains_and_labels():
    plan = make_plan(64 * 20, 16, 64, 0.6, 10 * 12)
    rows = MixedRows(plan, corpus(10, 12), corpus(30, 20, base=60), seed=0, special_ids={1}, pad_id=0)
    for g in range(20):
        row = rows.row(g)
        expected = TARGET if plan.is_target(g) else GENERAL
        assert (row["domain"] == expected).all()
        starts = row["position_ids"] == 0
        assert (row["labels"][starts] == IGNORE_INDEX).all()
        assert (row["labels"][~starts] == row["input_ids"][~starts]).all()
        assert row["is_special"].eq(row["input_ids"] == 1).all()


def test_rows_are_a_pure_function_of_seed_and_step():
    plan = make_plan(64 * 20, 16, 64, 0.6, 120)
    a = MixedRows(plan, corpus(10, 12), corpus(30, 20), seed=5, special_ids={1}, pad_id=0)
    b = MixedRows(plan, corpus(10, 12), corpus(30, 20), seed=5, special_ids={1}, pad_id=0)
    for step in (0, 3, 4):
        for ra, rb in zip(a.step_rows(step), b.step_rows(step)):
            assert all(torch.equal(ra[k], rb[k]) for k in ra)


def test_validation_rows_pad_the_last_row():
    rows = validation_rows(corpus(3, 10), seq_len=16, special_ids={1}, pad_id=0)
    assert len(rows) == 2
    last = rows[-1]
    assert last["is_pad"][-2:].all() and (last["labels"][last["is_pad"]] == IGNORE_INDEX).all()
    assert np.array_equal(last["doc_id"][last["is_pad"]].numpy(), [-1] * int(last["is_pad"].sum()))


def test_corpus_smaller_than_a_sequence_is_rejected():
    plan = make_plan(64 * 20, 64, 64, 0.6, 30)
    with pytest.raises(DataError, match="fewer than one sequence"):
        MixedRows(plan, corpus(3, 10), corpus(30, 20), seed=0, special_ids={1}, pad_id=0)


def test_budget_below_one_step_is_rejected():
    with pytest.raises(DataError, match="token_budget"):
        make_plan(100, 64, 640, 0.6, 1000)


def test_tokenization_streams_and_stops_reading_at_the_token_cap(mini_assets):
    """A corpus far larger than the cap is read only as far as the cap: whole documents, the same prefix as
    an uncapped read, and the documents after it are never pulled from the source."""
    from transformers import AutoTokenizer

    from entrodrop_bench.prepare.data import cap_unique_tokens, tokenize_texts

    tok = AutoTokenizer.from_pretrained(mini_assets["model"])
    texts = [f"document {i} says {i * 7} plus {i + 3}" for i in range(5000)]
    pulled = []

    def source():
        for t in texts:
            pulled.append(t)
            yield t

    full = tokenize_texts(texts, tok, source="test")
    capped = tokenize_texts(source(), tok, source="test", max_tokens=2000)
    assert len(pulled) < 1100, "reading must stop near the cap, not run through the corpus"
    assert capped.n_tokens >= 2000 and capped.offsets[-2] < 2000  # stops at the first whole document past the cap
    np.testing.assert_array_equal(capped.tokens, full.tokens[: capped.n_tokens])
    trimmed = cap_unique_tokens(capped, 2000)
    assert trimmed.n_tokens <= 2000 and np.array_equal(trimmed.tokens, cap_unique_tokens(full, 2000).tokens)


def test_corpus_cap_applies_to_general_data_too(mini_config):
    from entrodrop_bench.paths import Layout
    from entrodrop_bench.prepare.stage import prepare

    base = mini_config()
    general = {**base.data.general.model_dump(), "max_unique_tokens": 3000}
    config = mini_config(data={"general": general})
    uncapped = prepare(base, Layout.from_config(base), echo=lambda s: None).general
    prepared = prepare(config, Layout.from_config(config), echo=lambda s: None)
    assert uncapped.n_tokens > 3000 >= prepared.general.n_tokens > 0
    np.testing.assert_array_equal(prepared.general.tokens, uncapped.tokens[: prepared.general.n_tokens])


def test_shuffle_seed_makes_a_cap_keep_a_random_subset(mini_config):
    """With `shuffle_seed`, the capped corpus is a seeded random subset, not the first documents."""
    from entrodrop_bench.paths import Layout
    from entrodrop_bench.prepare.stage import prepare

    base = mini_config()

    def general(**extra):
        config = mini_config(data={"general": {**base.data.general.model_dump(), "max_unique_tokens": 3000, **extra}})
        return prepare(config, Layout.from_config(config), echo=lambda s: None).general

    first, shuffled, again, other = general(), general(shuffle_seed=0), general(shuffle_seed=0), general(shuffle_seed=1)
    assert not np.array_equal(first.tokens[:200], shuffled.tokens[:200])
    np.testing.assert_array_equal(shuffled.tokens, again.tokens)
    assert not np.array_equal(shuffled.tokens[:200], other.tokens[:200])
