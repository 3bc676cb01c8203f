"""What training reports while it runs: each step's record to the trackers (`output.trackers`: TensorBoard, W&B),
to the progress bar or, without one, to a plain progress line; the cost of the run so far (`CostMeter`); and,
when the run completes, the mean of every value the method logged (its status's `stats`)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from entrodrop_bench.artifacts import RunStatus, TrainCost
from entrodrop_bench.cost import flops_per_token, model_compute_params, model_shape

PROGRESS_LOG_S = 60.0
"""Without a progress bar (`--no-progress`, or stderr not a terminal: SLURM output files), a plain progress line
this often."""

TRAINER_LOG_KEYS = ("step", "loss", "lr", "step_s", "tokens_per_s")


def mean_plugin_values(log: list[dict]) -> dict[str, float]:
    """Each value the method logged, averaged over every step of the run (steps before a resume included)."""
    keys = dict.fromkeys(k for record in log for k in record if k not in TRAINER_LOG_KEYS)
    return {k: float(np.mean([r[k] for r in log if k in r])) for k in keys}


class RunMetrics:
    """Where each step's record goes: accelerate's trackers (all processes call; accelerate logs on the main one),
    the progress bar (shown with `progress`) and otherwise a plain progress line on the main process."""

    def __init__(self, accelerator, name: str, start: int, total: int, tokens_per_step: int, *, progress: bool) -> None:
        self.accelerator = accelerator
        accelerator.init_trackers("tb")
        self.bar = tqdm(total=total, initial=start, desc=name, disable=not progress, dynamic_ncols=True)
        self.line = ProgressLine(name, start, total, tokens_per_step, enabled=not progress and accelerator.is_main_process)

    def step(self, record: dict, shown: tuple[str, ...]) -> None:
        """One optimizer step's record (`step`, `loss`, ...); `shown`: the keys the bar shows."""
        self.accelerator.log({k: v for k, v in record.items() if k != "step"}, step=record["step"])
        self.bar.update(1)
        self.line.step(record["step"], record["loss"])
        self.bar.set_postfix({k: f"{v:.3g}" for k, v in record.items() if k in shown})

    def close(self) -> None:
        self.bar.close()
        # Not `end_training()`: it also destroys the process group, which the job's next run still needs.
        for tracker in self.accelerator.trackers:
            tracker.finish()


def run_trackers(cfg, run: str, seed: int, run_key: str, run_dir: Path) -> list:
    """accelerate's `log_with` for `output.trackers`. TensorBoard by name (event files under the run folder); W&B
    as a tracker built here, so that its project, run name, group and folder are the config's (by name,
    accelerate would name the W&B project after `init_trackers`' folder name)."""
    out = cfg.output
    found: list = []
    for name in out.trackers:
        if name == "wandb":
            from accelerate.tracking import WandBTracker

            found.append(WandBTracker(out.wandb_project, name=f"{cfg.name}/{run}/seed{seed}",
                                      group=cfg.name, job_type="train", dir=str(run_dir),
                                      config={"experiment": cfg.name, "run": run, "seed": seed,
                                              "run_key": run_key, "config": cfg.model_dump(mode="json")}))
        else:
            found.append(name)
    return found


class CostMeter:
    """What the run cost (`artifacts.TrainCost`, definitions in `entrodrop_bench.cost`): this session's wall time,
    from its start, added to what the run's status recorded of the sessions before it."""

    def __init__(self, previous: RunStatus | None, accelerator, tokens_per_step: int) -> None:
        before = previous.cost if previous is not None else None
        self.wall_before = before.train_wall_s if before else 0.0
        self.device_hours_before = before.device_hours if before else 0.0
        self.sessions = (before.sessions if before else 0) + 1
        self.device = device_name(accelerator.device)
        self.device_count = accelerator.num_processes
        self.tokens_per_step = tokens_per_step
        self.flops_per_token: float | None = None
        self.flops_params = 0
        self.steps = 0
        self.tic = time.perf_counter()

    def count_model(self, model: torch.nn.Module, seq_len: int) -> None:
        """The FLOPs per token of `model` (before accelerate wraps it, or FSDP shards it); costs are recorded from
        here on."""
        layers, heads, head_dim = model_shape(model.config)
        self.flops_params = model_compute_params(model)
        self.flops_per_token = flops_per_token(self.flops_params, layers, heads, head_dim, seq_len)

    def cost(self) -> TrainCost | None:
        if self.flops_per_token is None:  # before the model is built: nothing to record yet
            return None
        session = time.perf_counter() - self.tic
        tokens = self.steps * self.tokens_per_step
        return TrainCost(
            steps=self.steps, tokens_trained=tokens, train_flops=self.flops_per_token * tokens,
            flops_params=self.flops_params, train_wall_s=self.wall_before + session, device=self.device,
            device_count=self.device_count, device_hours=self.device_hours_before + session * self.device_count / 3600,
            sessions=self.sessions,
        )


def device_name(device: torch.device) -> str:
    """`cpu`, the CUDA device's name as torch gives it (e.g. `NVIDIA H100 80GB HBM3`), or the device type."""
    if device.type == "cuda":
        return torch.cuda.getdevice_name(device)
    return device.type


class ProgressLine:
    """Plain `step i/N, tokens/s, ETA` lines every PROGRESS_LOG_S seconds (and at the end), for logs without a bar."""

    def __init__(self, name: str, start: int, total: int, tokens_per_step: int, *, enabled: bool) -> None:
        self.name, self.start, self.total, self.tokens_per_step, self.enabled = name, start, total, tokens_per_step, enabled
        self.tic = self.last = time.perf_counter()

    def step(self, done: int, loss: float) -> None:
        now = time.perf_counter()
        if not self.enabled or (now - self.last < PROGRESS_LOG_S and done < self.total):
            return
        self.last = now
        rate = (done - self.start) / max(now - self.tic, 1e-9)  # steps/s since this process started
        eta = (self.total - done) / rate if rate > 0 else float("inf")
        print(f"train: {self.name} step {done}/{self.total} ({done / self.total:.0%}) loss {loss:.4g}, "
              f"{rate * self.tokens_per_step:,.0f} tokens/s, ETA {eta:,.0f}s", flush=True)
