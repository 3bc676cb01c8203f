"""Corpora -> tokenized documents -> a lazily indexed plan of packed, mixed training rows.

Design: every optimizer step's rows are a pure function of (seed, step), so runs of different methods
see exactly the same tokens, and a resumed run needs no data-loader state beyond the step number.

- Target documents are reshuffled each epoch and concatenated into one token stream per epoch;
  general documents are shuffled once (they are sampled with negligible repetition).
- Global row g is target when floor((g + 1) * r) > floor(g * r), r = target share: a deterministic
  interleaving that hits the configured ratio at every prefix of training.
- Rows are packed: a document may start mid-row and continue into the next row. Model position ids
  restart at every segment (so attention never crosses documents); TokenMeta.position keeps the
  position inside the whole document (for EntroDrop's per-token signals).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from entrodrop_bench.errors import DataError
from entrodrop_bench.registry import lazy_import
from entrodrop_bench.regularizer import GENERAL, TARGET

torch = lazy_import("torch")  # the plan (`plan`, `status`) needs none of it; training's batches do

IGNORE_INDEX = -100


@dataclass
class TokenizedCorpus:
    """Documents as one flat int32 array plus offsets (len = n_docs + 1)."""

    tokens: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_tokens(self) -> int:
        return int(self.offsets[-1])

    def doc(self, i: int) -> np.ndarray:
        return self.tokens[self.offsets[i] : self.offsets[i + 1]]

    def docs(self) -> list[list[int]]:
        return [self.doc(i).tolist() for i in range(len(self))]

    def subset(self, ids: np.ndarray) -> TokenizedCorpus:
        lengths = np.diff(self.offsets)[ids]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        tokens = np.concatenate([self.doc(i) for i in ids]) if len(ids) else np.zeros(0, np.int32)
        return TokenizedCorpus(tokens.astype(np.int32), offsets)

    def content_hash(self) -> str:
        """The corpus's fingerprint (`prepare.fingerprints.corpus_fingerprint`)."""
        from entrodrop_bench.prepare.fingerprints import corpus_fingerprint

        return corpus_fingerprint(self.tokens, self.offsets)

    @classmethod
    def from_docs(cls, docs: Sequence[Sequence[int] | np.ndarray]) -> TokenizedCorpus:
        lengths = np.array([len(d) for d in docs], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        flat = np.concatenate([np.asarray(d, dtype=np.int32) for d in docs]) if docs else np.zeros(0, np.int32)
        return cls(flat, offsets)


def tokenize_texts(texts: Iterable[str], tokenizer, *, source: str, max_tokens: int | None = None) -> TokenizedCorpus:
    """Tokenize documents (no special tokens), each followed by eos so the model learns where documents end.

    Streams: documents are read in batches and kept as int32 arrays, and reading stops at the first whole
    document that reaches `max_tokens`, so a hub corpus far larger than the run needs is never held in memory.
    """
    if tokenizer.eos_token_id is None:
        raise DataError(f"tokenizer has no eos token; needed to separate packed documents of {source}")
    texts = iter(texts)

    def encoded() -> Iterable[list[int]]:
        while batch := list(itertools.islice(texts, 1000)):
            yield from tokenizer(batch, add_special_tokens=False)["input_ids"]

    return pack_documents(encoded(), tokenizer.eos_token_id, source=source, max_tokens=max_tokens)


def pack_documents(token_ids: Iterable[Sequence[int]], eos_id: int, *, source: str, max_tokens: int | None = None) -> TokenizedCorpus:
    """Documents' token ids, each followed by eos; empty documents skipped; reading stops at the first whole
    document that reaches `max_tokens` (so the consumer of a lazy iterable reads no further)."""
    docs, n_tokens = [], 0
    for ids in token_ids:
        if len(ids) == 0:
            continue
        docs.append(np.append(np.asarray(ids, dtype=np.int32), np.int32(eos_id)))
        n_tokens += len(docs[-1])
        if max_tokens is not None and n_tokens >= max_tokens:
            break
    if not docs:
        raise DataError(f"corpus {source} is empty after tokenization (expected at least one non-empty document)")
    return TokenizedCorpus.from_docs(docs)


def split_validation(corpus: TokenizedCorpus, fraction: float, max_docs: int, seed: int) -> tuple[TokenizedCorpus, TokenizedCorpus]:
    """Hold out target documents for validation loss; they are never trained on."""
    n = len(corpus)
    n_val = min(max_docs, max(1, int(round(n * fraction))))
    if n - n_val < 1:
        raise DataError(f"target corpus has {n} documents: too few to hold out {n_val} for validation and train on the rest")
    perm = np.random.default_rng(seed).permutation(n)
    return corpus.subset(np.sort(perm[n_val:])), corpus.subset(np.sort(perm[:n_val]))


def cap_unique_tokens(corpus: TokenizedCorpus, max_tokens: int | None) -> TokenizedCorpus:
    """Keep whole documents, in order, until the unique-token cap (the paper's 0.02B target corpus)."""
    if max_tokens is None or corpus.n_tokens <= max_tokens:
        return corpus
    keep = int(np.searchsorted(corpus.offsets[1:], max_tokens, side="right"))
    return corpus.subset(np.arange(max(keep, 1)))


def save_corpus(path: Path, corpus: TokenizedCorpus) -> None:
    from safetensors.numpy import save_file

    from entrodrop_bench.atomic import atomic_path
    from entrodrop_bench.distributed import process_rank

    with atomic_path(path) as tmp:
        save_file({"tokens": corpus.tokens, "offsets": corpus.offsets}, str(tmp),
                  metadata={"format": "entrodrop-corpus-1", "writer_rank": str(process_rank())})


def load_corpus(path: Path) -> TokenizedCorpus | None:
    """A cached corpus, or None when absent or unreadable (it is then rebuilt)."""
    from safetensors.numpy import load_file

    if not path.is_file():
        return None
    try:
        arrays = load_file(str(path))
        corpus = TokenizedCorpus(arrays["tokens"], arrays["offsets"])
        if corpus.offsets[-1] != len(corpus.tokens):
            return None
        return corpus
    except Exception:
        return None


class EpochStream:
    """Row access into the concatenation of a corpus's documents, in a seeded order per epoch."""

    def __init__(self, corpus: TokenizedCorpus, seq_len: int, seed: int, *, reshuffle: bool) -> None:
        self.corpus = corpus
        self.seq_len = seq_len
        self.seed = seed
        self.reshuffle = reshuffle
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _order(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        key = epoch if self.reshuffle else 0
        if key not in self._cache:
            if len(self._cache) > 4:
                self._cache.clear()
            perm = np.random.default_rng([self.seed, key]).permutation(len(self.corpus))
            starts = np.concatenate([[0], np.cumsum(np.diff(self.corpus.offsets)[perm])]).astype(np.int64)
            self._cache[key] = (perm, starts)
        return self._cache[key]

    def row(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Tokens, document ids and in-document positions of stream row `index` (seq_len each)."""
        n_tok = self.corpus.n_tokens
        begin = index * self.seq_len
        tokens, doc_ids, positions = [], [], []
        while begin < (index + 1) * self.seq_len:
            epoch, pos = divmod(begin, n_tok)
            perm, starts = self._order(epoch)
            k = int(np.searchsorted(starts, pos, side="right") - 1)
            doc = int(perm[k])
            within = pos - int(starts[k])
            take = min(int(starts[k + 1]) - pos, (index + 1) * self.seq_len - begin)
            tokens.append(self.corpus.doc(doc)[within : within + take])
            doc_ids.append(np.full(take, doc, dtype=np.int64))
            positions.append(np.arange(within, within + take, dtype=np.int64))
            begin += take
        return np.concatenate(tokens), np.concatenate(doc_ids), np.concatenate(positions)


@dataclass
class TrainingPlan:
    """How a token budget maps onto steps, rows and target epochs; identical for every method."""

    seq_len: int
    rows_per_step: int
    total_steps: int
    target_share: float
    target_train_tokens: int

    @property
    def tokens_per_step(self) -> int:
        return self.rows_per_step * self.seq_len

    def target_rows_before(self, global_row: int) -> int:
        return math.floor(global_row * self.target_share + 1e-9)

    def is_target(self, global_row: int) -> bool:
        return self.target_rows_before(global_row + 1) > self.target_rows_before(global_row)

    def tokens_seen(self, step: int) -> dict[str, int]:
        rows = step * self.rows_per_step
        target = self.target_rows_before(rows)
        return {"target": target * self.seq_len, "general": (rows - target) * self.seq_len}

    def target_epoch(self, step: int) -> float:
        return self.tokens_seen(step)["target"] / self.target_train_tokens

    def steps_per_target_epoch(self) -> float:
        return self.target_train_tokens / (self.tokens_per_step * self.target_share)

    def checkpoint_steps(self, every_epochs: float) -> list[int]:
        interval = max(1, round(self.steps_per_target_epoch() * every_epochs))
        steps = list(range(interval, self.total_steps + 1, interval))
        if not steps or steps[-1] != self.total_steps:
            steps.append(self.total_steps)
        return steps

    def to_json(self) -> dict:
        return {
            "seq_len": self.seq_len,
            "rows_per_step": self.rows_per_step,
            "total_steps": self.total_steps,
            "target_share": self.target_share,
            "target_train_tokens": self.target_train_tokens,
            "target_epochs": self.target_epoch(self.total_steps),
        }


def make_plan(token_budget: int, seq_len: int, global_batch_tokens: int, target_share: float, target_train_tokens: int) -> TrainingPlan:
    rows_per_step = max(1, global_batch_tokens // seq_len)
    total_steps = token_budget // (rows_per_step * seq_len)
    if total_steps < 1:
        raise DataError(
            f"data.token_budget {token_budget} is smaller than one optimizer step "
            f"(train.global_batch_tokens {rows_per_step * seq_len}); raise the budget or lower the batch"
        )
    return TrainingPlan(seq_len, rows_per_step, total_steps, target_share, target_train_tokens)


class MixedRows:
    """The training rows of a plan: row g of the run, as tensors plus per-token metadata."""

    def __init__(self, plan: TrainingPlan, target: TokenizedCorpus, general: TokenizedCorpus, seed: int, special_ids: set[int], pad_id: int) -> None:
        for name, corpus in (("target", target), ("general", general)):
            if corpus.n_tokens < plan.seq_len:
                raise DataError(
                    f"data.{name}: corpus has {corpus.n_tokens} tokens, fewer than one sequence (data.seq_len = {plan.seq_len})"
                )
        self.plan = plan
        self.target = EpochStream(target, plan.seq_len, seed, reshuffle=True)
        self.general = EpochStream(general, plan.seq_len, seed + 1, reshuffle=False)
        self.special_ids = torch.tensor(sorted(special_ids), dtype=torch.long)
        self.pad_id = pad_id

    def row(self, g: int) -> dict[str, torch.Tensor]:
        if self.plan.is_target(g):
            domain, (tokens, doc_ids, positions) = TARGET, self.target.row(self.plan.target_rows_before(g))
        else:
            domain, (tokens, doc_ids, positions) = GENERAL, self.general.row(g - self.plan.target_rows_before(g))
        return _row_tensors(tokens, doc_ids, positions, domain, self.special_ids)

    def step_rows(self, step: int) -> list[dict[str, torch.Tensor]]:
        base = step * self.plan.rows_per_step
        return [self.row(g) for g in range(base, base + self.plan.rows_per_step)]


def _row_tensors(tokens: np.ndarray, doc_ids: np.ndarray, positions: np.ndarray, domain: int, special_ids: torch.Tensor) -> dict[str, torch.Tensor]:
    input_ids = torch.from_numpy(tokens.astype(np.int64))
    doc = torch.from_numpy(doc_ids)
    pos = torch.from_numpy(positions)
    # A new segment starts where the document changes or a document starts inside the row.
    new_segment = torch.ones_like(doc, dtype=torch.bool)
    new_segment[1:] = (doc[1:] != doc[:-1]) | (pos[1:] == 0)
    segment = new_segment.cumsum(0)
    seg_start = torch.nonzero(new_segment).squeeze(1)[segment - 1]
    model_positions = torch.arange(len(pos)) - seg_start
    labels = input_ids.clone()
    labels[new_segment] = IGNORE_INDEX  # nothing in this row predicts a segment's first token
    return {
        "input_ids": input_ids,
        "labels": labels,
        "position_ids": model_positions,
        "domain": torch.full_like(input_ids, domain),
        "doc_id": doc,
        "position": pos,
        "is_special": torch.isin(input_ids, special_ids),
        "is_pad": torch.zeros_like(input_ids, dtype=torch.bool),
    }


def collate(rows: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([r[k] for r in rows]) for k in rows[0]}


def validation_rows(corpus: TokenizedCorpus, seq_len: int, special_ids: set[int], pad_id: int) -> list[dict[str, torch.Tensor]]:
    """Validation documents packed in order; the last row is padded (pad labels ignored)."""
    n_rows = math.ceil(corpus.n_tokens / seq_len)
    special = torch.tensor(sorted(special_ids), dtype=torch.long)
    rows = []
    for r in range(n_rows):
        start, stop = r * seq_len, min((r + 1) * seq_len, corpus.n_tokens)
        tokens, docs, pos = _slice_stream(corpus, start, stop)
        row = _row_tensors(tokens, docs, pos, TARGET, special)
        rows.append(_pad_row(row, seq_len, pad_id))
    return rows


def _slice_stream(corpus: TokenizedCorpus, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    idx = np.arange(start, stop)
    doc = np.searchsorted(corpus.offsets, idx, side="right") - 1
    return corpus.tokens[start:stop], doc.astype(np.int64), (idx - corpus.offsets[doc]).astype(np.int64)


def _pad_row(row: dict[str, torch.Tensor], seq_len: int, pad_id: int) -> dict[str, torch.Tensor]:
    n = seq_len - row["input_ids"].numel()
    if n == 0:
        return row
    fill = {"input_ids": pad_id, "labels": IGNORE_INDEX, "domain": GENERAL, "doc_id": -1, "is_special": True, "is_pad": True}
    out = {}
    for k, v in row.items():
        if k == "position_ids" or k == "position":
            # Padding forms its own segment so real tokens never attend to it.
            pad = torch.arange(n, dtype=v.dtype)
        else:
            pad = torch.full((n,), fill[k], dtype=v.dtype)
        out[k] = torch.cat([v, pad])
    return out

