"""The launched job as the harness sees it: joined through accelerate, which process this is, who writes.

Under `accelerate launch` (or torchrun; set ACCELERATE_USE_CPU=true to join CPU processes over gloo) every
process runs the same command. Shared inputs (tokenized corpora, entropy caches, the prepared record) are
written by the main process only; the others wait for it and then read what it wrote.
"""

from __future__ import annotations

import os
from datetime import timedelta

from entrodrop_bench.errors import UserError

PROCESS_GROUP_TIMEOUT_MIN = 120
"""Minutes any process may wait in one collective (a barrier included) before the job fails: torch's default (10
minutes under NCCL) is shorter than the main process's work that the others wait out, such as the first `prepare`
inside a launched job (download, tokenization, the base model's entropy pass: about 10 minutes alone for Llama-8B)
or a rank-0 checkpoint save of an 8B model. `ENTRODROP_PROCESS_GROUP_TIMEOUT_MIN` overrides it."""


def process_group_timeout() -> timedelta:
    """The process group's collective timeout (`PROCESS_GROUP_TIMEOUT_MIN`, or the environment's override)."""
    raw = os.environ.get("ENTRODROP_PROCESS_GROUP_TIMEOUT_MIN", str(PROCESS_GROUP_TIMEOUT_MIN))
    try:
        minutes = float(raw)
    except ValueError:
        minutes = -1.0
    if not minutes > 0:
        raise UserError(f"ENTRODROP_PROCESS_GROUP_TIMEOUT_MIN: expected a positive number of minutes, got {raw!r}")
    return timedelta(minutes=minutes)


def process_state():
    """accelerate's PartialState (joins the launched processes into one job on first use, with
    `process_group_timeout()`)."""
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"), timeout=process_group_timeout())


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
