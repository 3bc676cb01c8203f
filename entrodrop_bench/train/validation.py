"""Validation during training: the held-out target rows (`ValidationSet`), whose loss the trainer measures at
step 0 and at every checkpoint, in three entropy groups and per document, from one forward pass; and the
baseline run's best step (`baseline_min_val_step`), which EntroDrop's `j0: auto` reads from its validation curve."""

from __future__ import annotations

import math

import numpy as np
import torch

from entrodrop_bench.artifacts import ValCurve
from entrodrop_bench.prepare.data import IGNORE_INDEX, collate, validation_rows
from entrodrop_bench.prepare.stage import Prepared, percentile_groups
from entrodrop_bench.train.loss import LOSS_CHUNK_ELEMENTS, step_loss


class ValidationSet:
    """Held-out target rows plus each label token's base-model entropy, for the three loss groups, and each
    label token's document, for the per-document losses."""

    def __init__(self, prepared: Prepared, signals: np.ndarray, offsets: np.ndarray) -> None:
        seq_len = prepared.plan.seq_len
        self.rows = validation_rows(prepared.target_val, seq_len, prepared.special_ids, prepared.tokenizer.pad_token_id)
        self.batch = collate(self.rows)
        doc, pos = self.batch["doc_id"][:, 1:], self.batch["position"][:, 1:]
        flat = torch.from_numpy(signals.astype(np.float32))
        index = torch.from_numpy(offsets[:-1])[doc.clamp(min=0)] + pos
        sig = torch.where(doc >= 0, flat[index.clamp(max=len(flat) - 1)], torch.nan)
        low, high = percentile_groups(signals)
        valid = self.batch["labels"][:, 1:] != IGNORE_INDEX
        self.groups = {"overall": valid, "low_entropy": valid & (sig <= low), "high_entropy": valid & (sig >= high)}
        # Per-document losses: each label token's document (a document may span rows), the documents with at
        # least one label token (their index in the validation split, in order), and their label-token counts.
        label_docs = doc[valid]
        self.doc_ids = torch.unique(label_docs)  # sorted
        self._doc_slot = torch.searchsorted(self.doc_ids, label_docs)
        self.doc_tokens = torch.bincount(self._doc_slot, minlength=len(self.doc_ids))

    @torch.no_grad()  # not inference_mode: FSDP's gathered parameters would become inference tensors, which training
    # cannot update in place afterwards
    def losses(self, model: torch.nn.Module, device: torch.device, micro_batch: int,
               chunk_elements: int | None = LOSS_CHUNK_ELEMENTS, *, world: int = 1,
               rank: int = 0) -> tuple[dict[str, float], list[float]]:
        """(mean loss of each token group, mean loss of each document in `doc_ids`) from one forward pass.

        Sharded over the `world` processes of a job: process `rank` runs micro-batches rank, rank + world, ...;
        their per-token losses are then summed into one table on every process (each row is written by exactly one
        process, the others add zeros, so the sum is exact), and both results are computed from it, complete and
        in document order, as one process would. Every process runs the same number of forwards (FSDP gathers
        each layer with all of them): one without a micro-batch left repeats its last, whose losses it drops."""
        was_training = model.training
        model.eval()
        starts = list(range(0, len(self.rows), micro_batch))
        rounds = -(-len(starts) // world)
        mine = starts[rank::world]
        labels = self.batch["labels"]
        per_token = torch.zeros(labels.shape[0], labels.shape[1] - 1, dtype=torch.float32, device=device)
        for i in range(rounds):
            start = mine[min(i, len(mine) - 1)] if mine else starts[0]
            b = {k: v[start : start + micro_batch].to(device) for k, v in self.batch.items()}
            losses = step_loss(model, b, chunk_elements=chunk_elements)[1]
            if i < len(mine):
                per_token[start : start + micro_batch] = losses.float()
        model.train(was_training)
        if world > 1:
            torch.distributed.all_reduce(per_token)  # SUM: each row is non-zero on one process only
        per_token = per_token.cpu()
        groups = {name: float(per_token[mask].mean()) if mask.any() else math.nan for name, mask in self.groups.items()}
        return groups, self.doc_losses(per_token)

    def doc_losses(self, per_token: torch.Tensor) -> list[float]:
        """Mean loss over each document's label tokens (float64 sums), aligned with `doc_ids`; weighted by
        `doc_tokens` they average to the `overall` group's loss."""
        sums = torch.zeros(len(self.doc_ids), dtype=torch.float64)
        sums.index_add_(0, self._doc_slot, per_token[self.groups["overall"]].double())
        return (sums / self.doc_tokens).tolist()


def baseline_min_val_step(prepared: Prepared, seed: int) -> int | None:
    """Step of the baseline run's minimum validation loss (EntroDrop's j0 = auto), if that run is complete; the
    baseline is the first run whose plugin's table role is `baseline`."""
    layout = prepared.layout
    for run, spec in prepared.config.runs.items():
        if spec.role.kind != "baseline":
            continue
        curve_file = ValCurve.path(layout, run, seed)
        if not curve_file.is_file():
            curve_file = ValCurve.path(layout, run, prepared.config.train.seeds[0])
        curve = ValCurve.read_or_none(curve_file)
        points = [p for p in curve.points if p.step > 0] if curve else []
        if points:
            return min(points, key=lambda p: (p.overall, p.step)).step
    return None
