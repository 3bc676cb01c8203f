"""A per-token signal over the target training documents that training keeps current: online EntroDrop's table.

It starts as the frozen base model's signal (the static cache) and each training visit of a token overwrites its
value with what the model being trained gave it in that visit's forward pass (`Regularizer.observe_tokens`). Every
value carries the stamp of the micro-batch that recorded it, step * micro_batches + micro_batch, unique over the
processes of a job and increasing in the order one process would have run them. Combining the processes' tables
(`merge`) keeps each token's newest value, so a job of N processes ends each refresh window with exactly the table
one process would have recorded from the same values, and every process then computes the same gate.

Recording costs no host synchronization: tokens that must not be recorded are pointed at a spare last slot instead
of being filtered out (a boolean index would wait for the device). Memory: 4 bytes of value and 4 of stamp per
target token on the training device (8 MB per million target tokens), plus the gate (1 byte) that static EntroDrop
holds too.
"""

from __future__ import annotations

import math

import numpy as np

from entrodrop_bench.registry import lazy_import

torch = lazy_import("torch")  # imported on first use: loading a config imports no torch

NEVER = -1
"""Stamp of a value no training visit has recorded (the base model's)."""


class OnlineSignalTable:
    """Values and stamps of `n` tokens on `device`, plus one spare slot that absorbs skipped writes."""

    def __init__(self, base_values: np.ndarray, device: torch.device, num_processes: int) -> None:
        n = len(base_values)
        self.n = n
        self.num_processes = num_processes
        self.values = torch.empty(n + 1, dtype=torch.float32, device=device)
        self.values[:n] = torch.from_numpy(np.asarray(base_values, dtype=np.float32)).to(device)
        self.values[n] = math.nan
        self.stamps = torch.full((n + 1,), NEVER, dtype=torch.int32, device=device)

    @staticmethod
    def stamp(step: int, micro_batch: int, micro_batches: int) -> int:
        """The micro-batch's stamp; int32 holds it for any run of fewer than 2**31 micro-batches."""
        stamp = step * micro_batches + micro_batch
        if stamp >= 2**31 - 1:
            raise OverflowError(f"online signal: micro-batch stamp {stamp} of step {step} does not fit int32 "
                                f"({micro_batches} micro-batches per step); lower the number of steps or micro-batches")
        return stamp

    def record(self, index: torch.Tensor, values: torch.Tensor, stamp: int) -> None:
        """Write `values` at flat token `index` (both 1-D, same length; index `n` = skip). A token twice in one
        micro-batch (a corpus shorter than a step) keeps the larger of its values, whatever the device's write order."""
        values = values.to(self.values.dtype)
        self.values.index_fill_(0, index, -math.inf)
        self.values.scatter_reduce_(0, index, values, reduce="amax", include_self=True)
        self.stamps.index_fill_(0, index, stamp)

    def merge(self) -> None:
        """Every process ends with each token's newest value over all processes (a collective call: every process
        must make it). One process: nothing to do."""
        if self.num_processes == 1:
            return
        import torch.distributed as dist

        newest = self.stamps.clone()
        dist.all_reduce(newest, op=dist.ReduceOp.MAX)
        # A stamp names one micro-batch, run by one process, so the processes holding a token's newest stamp hold the
        # same value: the one that recorded it, and any that took it over at an earlier merge. A max over them is
        # that value, exactly (a sum would count a value shared since an earlier merge twice).
        mine = (self.stamps == newest) & (newest != NEVER)
        newest_values = torch.where(mine, self.values, torch.full_like(self.values, -math.inf))
        dist.all_reduce(newest_values, op=dist.ReduceOp.MAX)
        # Never-recorded tokens still hold the base value on every process.
        self.values = torch.where(newest != NEVER, newest_values, self.values)
        self.stamps = newest

    def agree(self, gates: np.ndarray) -> bool:
        """Whether every process holds the same gate (a collective call): compares a checksum of it, on the table's
        device (where the process group's backend takes tensors)."""
        if self.num_processes == 1:
            return True
        import zlib

        import torch.distributed as dist

        digest = zlib.crc32(np.packbits(gates).tobytes())
        extremes = torch.tensor([digest, -digest], dtype=torch.int64, device=self.values.device)
        dist.all_reduce(extremes, op=dist.ReduceOp.MAX)  # (max, -min) of the digests in one call
        return int(extremes[0]) == -int(extremes[1])

    def recorded(self) -> torch.Tensor:
        """Bool [n]: tokens whose value a training visit recorded."""
        return self.stamps[: self.n] != NEVER

    def host_values(self) -> np.ndarray:
        return self.values[: self.n].cpu().numpy()

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"values": self.values[: self.n].cpu(), "stamps": self.stamps[: self.n].cpu()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        values, stamps = state["values"], state["stamps"]
        if len(values) != self.n or len(stamps) != self.n:
            raise ValueError(f"online signal table of {len(values)} tokens in the checkpoint, {self.n} in the target "
                             "training documents: the checkpoint belongs to another corpus")
        self.values[: self.n] = values.to(self.values.device)
        self.stamps[: self.n] = stamps.to(self.stamps.device)

