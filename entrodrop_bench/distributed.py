"""The launched job as the harness sees it: joined through accelerate, which process this is, who writes.

Under `accelerate launch` (or torchrun; set ACCELERATE_USE_CPU=true to join CPU processes over gloo) every
process runs the same command. Shared inputs (tokenized corpora, entropy caches, the prepared record) are
written by the main process only; the others wait for it and then read what it wrote.
"""

from __future__ import annotations

import os

from entrodrop_bench.errors import UserError


def process_state():
    """accelerate's PartialState (joins the launched processes into one job on first use)."""
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))


def launched_processes() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def process_rank() -> int:
    """This process's global rank (0 when not launched as a job)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def check_joined(state) -> None:
    """Several launched processes that accelerate did not join would each prepare and train the same run."""
    launched = launched_processes()
    if launched > 1 and state.num_processes == 1:
        raise UserError(
            f"{launched} processes were launched (WORLD_SIZE={launched}) but accelerate joined them into no job "
            f"(distributed type {state.distributed_type.value}, device {state.device}), so every process would "
            "prepare and train the same run. On GPUs, launch with an accelerate config such as configs/accelerate/ddp.yaml; "
            "on CPU, set ACCELERATE_USE_CPU=true (gloo) or run one process."
        )
