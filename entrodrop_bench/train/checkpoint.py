"""A run's checkpoints: the atomic save (weights, tokenizer, trainer state with the AdamW and method state, and
a manifest), the files that follow each save (validation curve, per-step log), rotation, and the resume from
the newest one. What the run's files say about it without torch (`read_status`, `run_is_complete`, for the
commands that only look) is in `status`.

Only the main process writes; under FSDP every process takes part in gathering what a checkpoint holds."""

from __future__ import annotations

import logging
import shutil
from datetime import datetime, timezone
from pathlib import Path

import torch

from entrodrop_bench.artifacts import (
    CheckpointManifest,
    TrainCost,
    TrainLog,
    TrainLogRecord,
    ValCurve,
    ValPoint,
)
from entrodrop_bench.atomic import atomic_dir, file_sha256
from entrodrop_bench.errors import UserError
from entrodrop_bench.prepare.stage import Prepared
from entrodrop_bench.regularizer import Regularizer

logger = logging.getLogger(__name__)


def untied(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict without the tied copies of a weight (the LM head tied to the input embedding): gathered from
    FSDP's shards they are separate tensors, which `save_pretrained` would store twice; loading re-ties them."""
    tied = getattr(model, "all_tied_weights_keys", None) or {}
    return {k: v for k, v in weights.items() if not (k in tied and tied[k] in weights)}


class Checkpoints:
    """Saves, rotates and resumes the checkpoints of one (run, seed)."""

    def __init__(self, prepared: Prepared, run: str, seed: int, *, run_key: str, code_commit: str | None) -> None:
        self.p, self.run, self.seed = prepared, run, seed
        self.layout, self.cfg, self.plan = prepared.layout, prepared.config, prepared.plan
        spec = prepared.config.runs[run]
        self.method, self.plugin, self.params = spec.method, spec.plugin, spec.params
        self.run_key = run_key  # recorded in every manifest
        self.code_commit = code_commit
        self._full_optimizer_state: dict | None = None  # a checkpoint's gathered AdamW state, for after prepare

    # --- save -------------------------------------------------------------------------------
    def save(self, model, weights: dict, method_state: dict, optimizer_state: dict | None, scheduler, step: int, log,
             val_curve, losses: dict, *, val_docs: tuple[list[int], list[int]], cost: TrainCost | None) -> None:
        path = self.layout.checkpoint_dir(self.run, self.seed, step)
        try:
            self._write_checkpoint(path, model, weights, method_state, optimizer_state, scheduler, step, log, val_curve,
                                   losses, cost)
        except OSError as exc:  # e.g. ENOSPC: the partial folder is already gone, earlier checkpoints untouched
            done = self.layout.checkpoints(self.run, self.seed)
            resume_from = done[-1][0] if done else 0
            raise UserError(
                f"could not save checkpoint {path}: {exc.strerror or exc}. Nothing partial was kept and earlier "
                f"checkpoints are intact; free space and re-run to resume from step {resume_from}"
            ) from None
        self.write_logs(log, val_curve, val_docs)

    def write_logs(self, log: list[dict], val_curve: list[dict], val_docs: tuple[list[int], list[int]]) -> None:
        """The files that follow each checkpoint: validation curve, per-step log, then checkpoint rotation."""
        doc_ids, doc_tokens = val_docs
        ValCurve(points=[ValPoint(**p) for p in val_curve], doc_ids=doc_ids, doc_tokens=doc_tokens).write(
            ValCurve.path(self.layout, self.run, self.seed))
        TrainLog(records=[TrainLogRecord(**r) for r in log]).write(TrainLog.path(self.layout, self.run, self.seed))
        self.rotate()

    def _write_checkpoint(self, path: Path, model, weights: dict, method_state: dict, optimizer_state: dict | None,
                          scheduler, step: int, log, val_curve, losses: dict, cost: TrainCost | None) -> None:
        with atomic_dir(path) as tmp:
            model.save_pretrained(tmp, state_dict=weights, safe_serialization=True)
            self.p.tokenizer.save_pretrained(tmp)
            torch.save(
                {"optimizer": None, **(optimizer_state or {}), "scheduler": scheduler.state_dict(),
                 "torch_rng": torch.get_rng_state(), "log": log, "val_curve": val_curve, "step": step,
                 "regularizer": method_state},
                self.layout.trainer_state_file(tmp),
            )
            self.manifest(step, losses, tmp, cost).write(CheckpointManifest.path(tmp))

    def manifest(self, step: int, losses: dict, folder: Path, cost: TrainCost | None) -> CheckpointManifest:
        return CheckpointManifest(
            run=self.run,
            method=self.method,
            plugin=self.plugin,
            params=self.params,
            seed=self.seed,
            step=step,
            total_steps=self.plan.total_steps,
            target_epoch=self.plan.target_epoch(step),
            tokens_seen=self.plan.tokens_seen(step),
            config_hash=self.cfg.config_hash(),
            run_key=self.run_key,
            git_commit=self.code_commit,
            val_loss=losses,
            weights_sha256=file_sha256(self.layout.weights_file(folder)),
            created=datetime.now(timezone.utc).isoformat(),
            cost=cost,
        )

    def rotate(self) -> None:
        """Drop old checkpoints beyond `keep_checkpoints`, only after the new save is complete."""
        keep = self.cfg.train.keep_checkpoints
        if keep is None:
            return
        for _, path in self.layout.checkpoints(self.run, self.seed)[:-keep]:
            shutil.rmtree(path, ignore_errors=True)

    @staticmethod
    def optimizer_state(model, optimizer, *, fsdp: bool) -> dict:
        """The optimizer state a checkpoint holds: AdamW's own `state_dict`, or under FSDP the full state gathered
        from every shard (on the main process; a collective, so every process calls it)."""
        if not fsdp:
            return {"optimizer": optimizer.state_dict()}
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        full = get_optimizer_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return {"optimizer_full": full}

    # --- resume -----------------------------------------------------------------------------
    def resume(self, model, reg: Regularizer, optimizer, scheduler, *, loads_weights: bool,
               fsdp: bool) -> tuple[int, list[dict], list[dict]]:
        """Load the newest checkpoint into the model, optimizer, schedule, method and RNG: (its step, the per-step log
        and the validation curve up to it); (0, [], []) without one. A checkpoint saved under FSDP holds the full
        AdamW state, kept for `load_full_optimizer_state` once accelerate has prepared (sharded) the optimizer."""
        ckpts = self.layout.checkpoints(self.run, self.seed)
        if not ckpts:
            return 0, [], []
        step, path = ckpts[-1]
        from safetensors.torch import load_file

        try:
            # Memory-mapped: a process that does not read the (gathered) optimizer state never pages it in.
            weights = load_file(str(self.layout.weights_file(path))) if loads_weights else {}
            state = torch.load(self.layout.trainer_state_file(path), weights_only=True, mmap=True)
        except Exception as exc:
            raise UserError(f"checkpoint {path} is corrupt ({type(exc).__name__}: {exc}); delete it to resume from the one before") from None
        if loads_weights:
            if fsdp:
                model.float()  # the checkpoint's fp32 master weights go into fp32 parameters (into bf16 ones they would round)
            model.load_state_dict(weights, strict=False)
            if model.config.tie_word_embeddings:
                model.tie_weights()
        del weights
        if state.get("optimizer_full") is not None:
            self._full_optimizer_state = state["optimizer_full"]  # loaded into the sharded optimizer after prepare
        elif state["optimizer"] is not None:
            optimizer.load_state_dict(state["optimizer"])
        else:
            logger.warning("%s holds no optimizer state (saved under FSDP by an earlier version): weights, schedule, "
                        "data position and RNG resume exactly, AdamW moments restart from zero", path)
        scheduler.load_state_dict(state["scheduler"])
        reg.load_state_dict(state.get("regularizer") or {})  # checkpoints of earlier versions hold none
        torch.set_rng_state(state["torch_rng"])
        return step, list(state["log"]), list(state["val_curve"])

    def load_full_optimizer_state(self, accelerator, model, optimizer, *, fsdp: bool) -> None:
        """A checkpoint saved under FSDP holds the full AdamW state: into the prepared (sharded) optimizer, read by
        the main process and broadcast to the others."""
        state, self._full_optimizer_state = self._full_optimizer_state, None
        if state is None:
            return
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        if fsdp:
            options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
            set_optimizer_state_dict(model, optimizer, state if accelerator.is_main_process else {}, options=options)
        else:
            set_optimizer_state_dict(accelerator.unwrap_model(model), optimizer, state,
                                     options=StateDictOptions(full_state_dict=True))
