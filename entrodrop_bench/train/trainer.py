"""One readable training loop for every method (nanoGPT style), through accelerate.

Per optimizer step: the method's `begin_step` on every process, then the plan's rows for that step, split into
micro-batches; each micro-batch's input embeddings go through the method's `transform_embeddings` (the only place
methods touch data, applied by a forward hook on the embedding module so that any accelerate wrapper works), a
method that `observes` per-token losses or entropies gets them from that same forward (`observe_tokens`), the
loss is a token-weighted mean over the whole step, gradients are clipped, AdamW steps, the cosine
schedule advances. At each checkpoint step: held-out validation loss in three entropy groups (and per
document, from the same forward pass), then an
atomic checkpoint save, which holds the method's own `state_dict`. Everything random is a pure function of
(seed, step), so resumes are exact.

Precision (`train.precision`): under `fp32` and `bf16-mixed` the trainer holds fp32 master weights (read in
model.dtype, then upcast) and AdamW state, and `bf16-mixed` runs the forward and backward under accelerate's
bf16 autocast; checkpoints then hold the fp32 weights, and evaluation reads them back in model.dtype. The
loss never materializes a large micro-batch's full logits (entrodrop_bench/train/loss.py).

Under FSDP (an accelerate config with `distributed_type: FSDP`): the fp32 master weights are sharded, bf16-mixed
gathers them in bf16 for compute and reduces (and, between synced micro-batches, accumulates) gradients in fp32
(`fsdp_plugin`); every rank reads the base model once, in model.dtype, and accelerate upcasts only the main
process's copy before sharding it (the others move to the meta device and receive their shards from it);
activation checkpointing is applied once (FSDP's when the accelerate config turns it on, else the trainer's);
checkpoints hold the gathered fp32 weights and the gathered AdamW state, so resumes are exact.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import yaml
from tqdm.auto import tqdm

from entrodrop_bench.artifacts import (
    CheckpointManifest,
    RunStatus,
    TrainCost,
    TrainLog,
    TrainLogRecord,
    ValCurve,
    ValPoint,
)
from entrodrop_bench.atomic import atomic_dir, file_sha256, remove_partials, write_text
from entrodrop_bench.config import run_key
from entrodrop_bench.cost import flops_per_token, model_compute_params, model_shape
from entrodrop_bench.errors import TrainingDiverged, UserError
from entrodrop_bench.prepare.data import IGNORE_INDEX, MixedRows, collate, validation_rows
from entrodrop_bench.prepare.fingerprints import weights_fingerprint
from entrodrop_bench.prepare.stage import Prepared, percentile_groups
from entrodrop_bench.provenance import git_commit
from entrodrop_bench.regularizer import PrepareContext, Regularizer, TokenMeta, defines_token_loss
from entrodrop_bench.train.loss import LOSS_CHUNK_ELEMENTS, forward_losses, step_loss
from entrodrop_bench.train.status import read_status, run_is_complete  # noqa: F401  (this module's API too)

logger = logging.getLogger(__name__)
PROGRESS_LOG_S = 60.0
"""Without a progress bar (`--no-progress`, or stderr not a terminal: SLURM output files), a plain progress line
this often."""

# accelerate's mixed_precision for each train.precision: only bf16-mixed autocasts; bf16-pure holds bf16
# weights and computes in them directly, fp32 computes in fp32 (on GPU too).
MIXED_PRECISION = {"fp32": "no", "bf16-mixed": "bf16", "bf16-pure": "no"}
PURE_BF16_WARNING = (
    "train.precision is bf16-pure: weights and AdamW state are bfloat16, whose 8-bit mantissa rounds away any "
    "update smaller than ~1/256 of a weight; at lr %.1e most elements may never change (measured at 1e-5: 15%% of "
    "elements moved after 50 steps, against 100%% with fp32 master weights). Use bf16-mixed unless memory forbids it."
)


def _seed_for(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(1)[0])


def enable_gradient_checkpointing(model: torch.nn.Module) -> None:
    """Checkpoint every decoder layer, non-reentrant: works with the embedding hook and restores the global RNG
    for the recompute (transformers 5.x renamed gradient_checkpointing_enable, keeping it as an alias)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


@contextlib.contextmanager
def transformed_embeddings(model: torch.nn.Module, transform: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """Route the input-embedding module's output through `transform` for the forwards inside this block.

    A forward hook, not a lookup of our own followed by `inputs_embeds=`: under FSDP the embedding weight is
    only gathered inside the wrapped forward, and DDP, FSDP and compiled models all see a plain `input_ids` call.
    `model` is the unwrapped module; the hook fires wherever the wrapper calls into it.
    """
    handle = model.get_input_embeddings().register_forward_hook(lambda _module, _args, output: transform(output))
    try:
        yield
    finally:
        handle.remove()


def token_meta(batch: dict[str, torch.Tensor], step: int, total_steps: int, seed: int, micro: int, micro_batches: int = 1) -> TokenMeta:
    generator = torch.Generator().manual_seed(_seed_for(seed, step, micro))
    return TokenMeta(
        domain=batch["domain"],
        doc_id=batch["doc_id"],
        position=batch["position"],
        is_special=batch["is_special"],
        is_pad=batch["is_pad"],
        step=step,
        total_steps=total_steps,
        generator=generator,
        micro_batch=micro,
        micro_batches=micro_batches,
    )


def token_aligned(per_position: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-position values [B, T-1] (position i predicts token i+1) as per-token values [B, T]: token t gets what
    position t-1 predicted; NaN where nothing in the row predicts the token (its first token, ignored labels)."""
    out = torch.full(labels.shape, math.nan, dtype=torch.float32, device=labels.device)
    out[:, 1:] = per_position.detach().float()
    return out.masked_fill_(labels == IGNORE_INDEX, math.nan)


def forward_micro_batch(model: torch.nn.Module, reg: Regularizer, batch: dict[str, torch.Tensor], meta: TokenMeta, *,
                        chunk_elements: int | None, observes: frozenset[str] = frozenset(),
                        unwrapped: torch.nn.Module | None = None) -> torch.Tensor:
    """One training micro-batch through the method: `before_forward`, the forward with `transform_embeddings` applied
    to its input embeddings, then `observe_tokens` with the per-token values the method `observes`, taken from that
    same forward (no second pass). `unwrapped`: the model inside `model`'s wrapper (default: `model`). Returns the
    summed loss, for the caller's backward."""
    reg.before_forward(meta)
    method = transformed_embeddings(unwrapped or model, lambda embeds: reg.transform_embeddings(embeds, meta))
    with method:
        # Liger's fused loss keeps no per-token values: a method that observes them takes the chunked loss. A method
        # with its own loss (`token_loss`) has it computed in place of the cross-entropy.
        loss_sum, per_token, entropy = forward_losses(model, batch, chunk_elements=chunk_elements, fused=not observes,
                                                      entropy="entropy" in observes,
                                                      token_loss=reg.token_loss if defines_token_loss(type(reg)) else None)
    if observes:
        values = {"loss": per_token, "entropy": entropy}
        reg.observe_tokens(meta, {k: token_aligned(values[k], batch["labels"]) for k in observes})
    return loss_sum


TRAINER_LOG_KEYS = ("step", "loss", "lr", "step_s", "tokens_per_s")


def _mean_plugin_values(log: list[dict]) -> dict[str, float]:
    """Each value the method logged, averaged over every step of the run (steps before a resume included)."""
    keys = dict.fromkeys(k for record in log for k in record if k not in TRAINER_LOG_KEYS)
    return {k: float(np.mean([r[k] for r in log if k in r])) for k in keys}


def untied(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict without the tied copies of a weight (the LM head tied to the input embedding): gathered from
    FSDP's shards they are separate tensors, which `save_pretrained` would store twice; loading re-ties them."""
    tied = getattr(model, "all_tied_weights_keys", None) or {}
    return {k: v for k, v in weights.items() if not (k in tied and tied[k] in weights)}


def _check_launch(accelerator) -> None:
    """Several launched processes that accelerate did not join into one job would each train and save the same
    run, racing on its checkpoints (seen with `accelerate launch --use_fsdp` on a machine without GPUs)."""
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and accelerator.num_processes == 1:
        raise UserError(
            f"{launched} processes were launched (WORLD_SIZE={launched}) but accelerate set up no distributed job "
            f"(distributed type {accelerator.distributed_type.value}, device {accelerator.device}), so every process "
            "would train and save the same run. Multi-process training needs GPUs and an accelerate config such as "
            "configs/accelerate/ddp.yaml or fsdp.yaml; on CPU, train with one process (`entrodrop-bench train`)."
        )


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


def rate_match(prepared: Prepared, run: str, seed: int, model: torch.nn.Module) -> tuple[float, float] | None:
    """For a run whose plugin declares a `rate_dependency`: (the matched method's expected masked fraction over this
    plan's steps, this run's own gated share), both from the gate shares `prepare` measured for the base `model`'s
    weights (read, never measured here); None otherwise."""
    spec = prepared.config.runs[run]
    if spec.rate_dependency is None:
        return None
    from entrodrop_bench.prepare.signals import read_gate_shares

    param, method = spec.rate_dependency
    shares = read_gate_shares(prepared, weights_fingerprint(model))  # hashed only for a rate-matched run
    target_run = next(r for r, s in prepared.config.runs.items() if s.method == method)  # one run: checked at load
    target = prepared.config.runs[target_run]
    fraction = target.plugin_cls.expected_masked_fraction(
        target.settings, gated_fraction=shares[target_run].gated_fraction, total_steps=prepared.plan.total_steps,
        baseline_min_val_step=baseline_min_val_step(prepared, seed) if target.baseline_dependency else None)
    if fraction is None:
        raise UserError(f"methods.{spec.method}.params.{param}: method {method!r} gives no expected masked fraction "
                        "to match (its plugin's expected_masked_fraction returned None)")
    own = shares[run].gated_fraction if run in shares else 1.0
    return fraction, own


class Trainer:
    """Trains one (run, seed): resumes from the newest complete checkpoint, skips when already complete."""

    def __init__(self, prepared: Prepared, run: str, seed: int, *, progress: bool = True, stop_after_step: int | None = None) -> None:
        self.p = prepared
        self.run = run
        self.seed = seed
        self.spec = prepared.config.runs[run]  # the method's plugin and its typed settings, resolved at load
        self.method, self.plugin, self.params = self.spec.method, self.spec.plugin, self.spec.params
        self.layout = prepared.layout
        self.cfg = prepared.config
        self.plan = prepared.plan
        self.progress = progress
        self.stop_after_step = stop_after_step  # tests: simulate an interruption
        self.run_dir = self.layout.run_dir(run, seed)
        self.save_optimizer = True  # tests turn it off to act out a checkpoint of an earlier version saved under FSDP
        self.code_commit = git_commit()  # recorded in every checkpoint's manifest
        self.run_key = run_key(self.cfg, run, seed)  # what this run trains; other presets reuse it when theirs matches
        self._chunk_elements = LOSS_CHUNK_ELEMENTS if self.cfg.train.chunked_loss else None
        self._observes = self.spec.plugin_cls.observes(self.spec.settings)  # per-token values the method reads in training
        self._writes = True  # whether this process writes the run's files (the main process; see `train`)
        self._resolved: dict = {}  # params the method resolved in `prepare` (Regularizer.resolved_params)
        self._val_docs: tuple[list[int], list[int]] = ([], [])  # validation doc ids and label tokens (`_validation_set`)
        self._meter: _CostMeter | None = None  # what training costs (set up in `train`)
        self._fsdp = False  # trained under FSDP (set in `_setup`)
        self._loads_weights = True  # whether this process reads checkpoint weights on resume (`_setup`)
        self._recompute: str | None = None  # who checkpoints activations (`activation_recompute`)
        self._val_signals: tuple[np.ndarray, np.ndarray] | None = None  # validation entropies (`_setup`)
        self._full_optimizer_state: dict | None = None  # a checkpoint's gathered AdamW state, for after prepare

    # --- status and bookkeeping -------------------------------------------------------------
    def status(self) -> RunStatus | None:
        return read_status(self.layout, self.run, self.seed)

    def _write_status(self, state: str, reason: str | None = None, stats: dict | None = None) -> None:
        if not self._writes:
            return
        RunStatus(
            state=state,
            reason=reason,
            total_steps=self.plan.total_steps,
            method=self.method,
            plugin=self.plugin,
            params=self.params,
            seed=self.seed,
            config_hash=self.cfg.config_hash(),
            run_key=self.run_key,
            stats=stats or {},
            resolved=self._resolved,
            cost=self._meter.cost() if self._meter else None,
            updated=datetime.now(timezone.utc).isoformat(),
        ).write(RunStatus.path(self.layout, self.run, self.seed))

    # --- setup ------------------------------------------------------------------------------
    def _setup(self, accelerator):
        from accelerate import DistributedType

        from entrodrop_bench.prepare.signals import base_model_signals

        torch.manual_seed(self.seed)
        model = self.p.load_base_model()  # in model.dtype; the one copy of the base model this process reads
        # The validation entropies' cache is keyed by this same copy's weights: no second base model to fingerprint.
        self._val_signals = base_model_signals(self.p, self.p.target_val, kind="entropy", model=model, compute=False)
        reg = self.spec.build()
        matched = rate_match(self.p, self.run, self.seed, model)
        from entrodrop_bench.prepare.signals import run_signals
        reg.prepare(
            PrepareContext(
                model=model,
                tokenizer=self.p.tokenizer,
                target_docs=self.p.target_train.docs(),
                cache_dir=self.layout.entropy_cache_dir,
                seq_len=self.plan.seq_len,
                total_steps=self.plan.total_steps,
                device=accelerator.device,
                seed=self.seed,
                baseline_min_val_step=baseline_min_val_step(self.p, self.seed) if self.spec.baseline_dependency else None,
                matched_masked_fraction=matched[0] if matched else None,
                gated_fraction=matched[1] if matched else None,
                num_processes=accelerator.num_processes,
                process_index=accelerator.process_index,
                target_epoch=self.plan.target_epoch,
                signals=run_signals(self.p, self.spec, model),
            )
        )
        self._resolved = reg.resolved_params()
        t = self.cfg.train
        self._fsdp = accelerator.distributed_type == DistributedType.FSDP
        # Under FSDP with cpu_ram_efficient_loading, sharding broadcasts the main process's weights to the others.
        self._loads_weights = not (self._fsdp and accelerator.state.fsdp_plugin.cpu_ram_efficient_loading
                                   and not accelerator.is_main_process)
        if t.precision == "bf16-pure":
            logger.warning(PURE_BF16_WARNING, t.lr)
        elif not self._fsdp:
            # fp32 master weights (and so fp32 AdamW state): read in model.dtype, like the entropy pass above,
            # then upcast, which is exact for weights stored in that dtype. Under FSDP accelerate upcasts when it
            # shards, and only the copy that is kept (the main process's, with cpu_ram_efficient_loading).
            model.float()
        reg.adjust_model(model)
        model.train()
        self._recompute = activation_recompute(accelerator, t.gradient_checkpointing)
        if self._recompute == "trainer":
            enable_gradient_checkpointing(model)
        elif self._recompute == "fsdp" and t.gradient_checkpointing:
            logger.info("activation checkpointing: FSDP's (fsdp_activation_checkpointing), not train.gradient_checkpointing "
                        "as well, so each layer is recomputed once")
        optimizer = torch.optim.AdamW(reg.param_groups(model), lr=t.lr, betas=(0.9, 0.95), eps=1e-8)
        scheduler = _lr_scheduler(optimizer, t.schedule, int(t.warmup_fraction * self.plan.total_steps), self.plan.total_steps)
        return model, reg, optimizer, scheduler

    def _resume(self, model, reg: Regularizer, optimizer, scheduler) -> tuple[int, list[dict], list[dict]]:
        ckpts = self.layout.checkpoints(self.run, self.seed)
        if not ckpts:
            return 0, [], []
        step, path = ckpts[-1]
        from safetensors.torch import load_file

        try:
            # Memory-mapped: a process that does not read the (gathered) optimizer state never pages it in.
            weights = load_file(str(self.layout.weights_file(path))) if self._loads_weights else {}
            state = torch.load(self.layout.trainer_state_file(path), weights_only=True, mmap=True)
        except Exception as exc:
            raise UserError(f"checkpoint {path} is corrupt ({type(exc).__name__}: {exc}); delete it to resume from the one before") from None
        if self._loads_weights:
            if self._fsdp:
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

    # --- the loop ---------------------------------------------------------------------------
    def train(self) -> str:
        """Train to completion (or to `stop_after_step`). Returns the final state."""
        if run_is_complete(self.layout, self.run, self.seed):
            return "complete"
        from accelerate import Accelerator

        if self.cfg.train.threads:
            torch.set_num_threads(self.cfg.train.threads)
        accelerator = _accelerator(Accelerator, self.cfg.train.precision, self.run_dir, self._trackers())
        _check_launch(accelerator)
        # Read before this session's first status write replaces it: the wall time of earlier sessions.
        meter = _CostMeter(self.status(), accelerator, self.plan.tokens_per_step)
        # Only the main process writes the run's files: under a launcher every rank runs this code, and N writers
        # of one status file would race.
        self._writes = accelerator.is_main_process
        if self._writes:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            remove_partials(self.run_dir)  # a save killed mid-way leaves a hidden temp folder; it is never resumed from
            write_text(self.layout.run_config_file(self.run, self.seed),
                       yaml.safe_dump(self.cfg.model_dump(mode="json"), sort_keys=False))
        accelerator.wait_for_everyone()
        t = self.cfg.train
        rows_per_micro = min(t.micro_batch_size, self.plan.rows_per_step)
        self._check_micro_batches(accelerator, rows_per_micro)
        model, reg, optimizer, scheduler = self._setup(accelerator)
        layers, heads, head_dim = model_shape(model.config)
        meter.flops_params = model_compute_params(model)  # before accelerate wraps (or FSDP shards) it
        meter.flops_per_token = flops_per_token(meter.flops_params, layers, heads, head_dim, self.plan.seq_len)
        start, log, val_curve = self._resume(model, reg, optimizer, scheduler)
        meter.steps = start
        self._meter = meter
        model, optimizer = accelerator.prepare(model, optimizer)
        self._load_full_optimizer_state(accelerator, model, optimizer)
        accelerator.init_trackers("tb")
        self._write_status("running")
        val = self._validation_set()
        if start > 0 and accelerator.is_main_process:
            # A kill after a checkpoint but before the files written after it leaves them behind the checkpoint
            # (at the final step, for good): rewrite them from the checkpoint's own record.
            self._write_logs(log, val_curve)

        device = accelerator.device
        shard = {"world": accelerator.num_processes, "rank": accelerator.process_index}
        if start == 0 and not val_curve:
            losses, doc_losses = val.losses(model, device, rows_per_micro, self._chunk_elements, **shard)
            val_curve.append({"step": 0, "target_epoch": 0.0, **losses, "doc_losses": doc_losses})
            accelerator.log({f"val_{k}": v for k, v in losses.items()}, step=0)
        rows = MixedRows(self.plan, self.p.target_train, self.p.general, self.seed, self.p.special_ids, self.p.tokenizer.pad_token_id)
        ckpt_steps = set(self.plan.checkpoint_steps(t.checkpoint_every_epochs))
        bar = tqdm(total=self.plan.total_steps, initial=start, desc=f"{self.run}/seed{self.seed}", disable=not self.progress, dynamic_ncols=True)
        log_line = _ProgressLine(f"{self.run}/seed{self.seed}", start, self.plan.total_steps, self.plan.tokens_per_step,
                                 enabled=not self.progress and accelerator.is_main_process)
        for step in range(start, self.plan.total_steps):
            tic = time.perf_counter()
            loss = self._optimizer_step(model, reg, optimizer, scheduler, accelerator, rows.step_rows(step), step, rows_per_micro)
            meter.steps = step + 1
            record = {"step": step + 1, "loss": loss, "lr": scheduler.get_last_lr()[0], **reg.log_values()}
            record["step_s"] = time.perf_counter() - tic
            record["tokens_per_s"] = self.plan.tokens_per_step / record["step_s"]
            log.append(record)
            accelerator.log({k: v for k, v in record.items() if k != "step"}, step=step + 1)
            bar.update(1)
            log_line.step(step + 1, loss)
            shown = ("loss", "lr", *reg.progress_keys, "tokens_per_s")
            bar.set_postfix({k: f"{v:.3g}" for k, v in record.items() if k in shown})
            if step + 1 in ckpt_steps:
                losses, doc_losses = val.losses(model, device, rows_per_micro, self._chunk_elements, **shard)
                val_curve.append({"step": step + 1, "target_epoch": self.plan.target_epoch(step + 1), **losses,
                                  "doc_losses": doc_losses})
                accelerator.log({f"val_{k}": v for k, v in losses.items()}, step=step + 1)
                accelerator.wait_for_everyone()
                weights = untied(accelerator.unwrap_model(model),
                                 accelerator.get_state_dict(model))  # every process: under FSDP this gathers the shards
                optimizer_state = self._optimizer_state(model, optimizer)  # every process: under FSDP, a gather too
                method_state = reg.state_dict()  # every process: a plugin may combine what each process observed
                if accelerator.is_main_process:
                    self._save(accelerator.unwrap_model(model), weights, method_state, optimizer_state, scheduler, step + 1,
                               log, val_curve, losses)
                    self._write_status("running")  # the cost so far: a kill from here on loses none of it
                del weights, optimizer_state
                accelerator.wait_for_everyone()
            if self.stop_after_step is not None and step + 1 >= self.stop_after_step:
                bar.close()
                _finish_trackers(accelerator)
                self._write_status("running")
                del model, optimizer, scheduler, reg
                self._release(accelerator)
                return "running"
        bar.close()
        _finish_trackers(accelerator)
        self._write_status("complete", stats=_mean_plugin_values(log))
        del model, optimizer, scheduler, reg
        self._release(accelerator)
        return "complete"

    @staticmethod
    def _release(accelerator) -> None:
        """Free this run's model, gradients and optimizer state (the caller dropped its own references) before the
        next run of the same process: accelerate keeps references to what it prepared, and the wrappers and hooks
        leave reference cycles that would hold them until some later garbage collection."""
        import gc

        # free_memory collects garbage before it drops its own lists of prepared objects, and the prepared model
        # holds itself (its autocast-wrapped `forward`): collect again once nothing else refers to it.
        accelerator.free_memory()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _check_micro_batches(self, accelerator, rows_per_micro: int) -> None:
        """Under FSDP every process must run the same number of micro-batches per step: each forward and
        backward gathers and reduces the shards with all of them (a process with one fewer waits forever)."""
        from accelerate import DistributedType

        if accelerator.distributed_type != DistributedType.FSDP:
            return
        micro = -(-self.plan.rows_per_step // rows_per_micro)
        world = accelerator.num_processes
        if micro % world:
            raise UserError(
                f"train: {micro} micro-batches per step ({self.plan.rows_per_step} rows of train.global_batch_tokens / "
                f"data.seq_len, {rows_per_micro} per micro-batch: train.micro_batch_size) do not divide evenly over "
                f"{world} FSDP processes; under FSDP each process must run the same number. Choose "
                "train.micro_batch_size or train.global_batch_tokens so that they do.")

    def _optimizer_state(self, model, optimizer) -> dict | None:
        """The optimizer state a checkpoint holds: AdamW's own `state_dict`, or under FSDP the full state gathered
        from every shard (on the main process; a collective, so every process calls it). None when not saved."""
        if not self.save_optimizer:
            return None
        if not self._fsdp:
            return {"optimizer": optimizer.state_dict()}
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        full = get_optimizer_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return {"optimizer_full": full}

    def _load_full_optimizer_state(self, accelerator, model, optimizer) -> None:
        """A checkpoint saved under FSDP holds the full AdamW state: into the prepared (sharded) optimizer, read by
        the main process and broadcast to the others."""
        state, self._full_optimizer_state = self._full_optimizer_state, None
        if state is None:
            return
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        if self._fsdp:
            options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
            set_optimizer_state_dict(model, optimizer, state if accelerator.is_main_process else {}, options=options)
        else:
            set_optimizer_state_dict(accelerator.unwrap_model(model), optimizer, state,
                                     options=StateDictOptions(full_state_dict=True))

    def _trackers(self) -> list:
        """accelerate's `log_with` for `output.trackers`. TensorBoard by name (event files under the run folder); W&B
        as a tracker built here, so that its project, run name, group and folder are the config's (by name,
        accelerate would name the W&B project after `init_trackers`' folder name)."""
        out = self.cfg.output
        found: list = []
        for name in out.trackers:
            if name == "wandb":
                from accelerate.tracking import WandBTracker

                found.append(WandBTracker(out.wandb_project, name=f"{self.cfg.name}/{self.run}/seed{self.seed}",
                                          group=self.cfg.name, job_type="train", dir=str(self.run_dir),
                                          config={"experiment": self.cfg.name, "run": self.run, "seed": self.seed,
                                                  "run_key": self.run_key, "config": self.cfg.model_dump(mode="json")}))
            else:
                found.append(name)
        return found

    def _optimizer_step(self, model, reg: Regularizer, optimizer, scheduler, accelerator, step_rows, step: int, rows_per_micro: int) -> float:
        # The loss is a mean over every label token of the step, whichever process or micro-batch holds it.
        n_tokens = sum(int((r["labels"][1:] != IGNORE_INDEX).sum()) for r in step_rows)
        world, rank = accelerator.num_processes, accelerator.process_index
        micro_ids = list(range(0, len(step_rows), rows_per_micro))
        mine = list(enumerate(micro_ids))[rank::world]
        total = torch.zeros((), device=accelerator.device)
        reg.begin_step(step)  # every process, even one without a micro-batch this step
        for i, (micro, start) in enumerate(mine):
            batch = {k: v.to(accelerator.device) for k, v in collate(step_rows[start : start + rows_per_micro]).items()}
            meta = token_meta(batch, step, self.plan.total_steps, self.seed, micro, len(micro_ids))
            # Gradients sync across processes only on the last micro-batch.
            sync = contextlib.nullcontext() if i == len(mine) - 1 else accelerator.no_sync(model)
            with sync, accelerator.autocast():
                loss_sum = forward_micro_batch(model, reg, batch, meta, chunk_elements=self._chunk_elements, observes=self._observes,
                                               unwrapped=accelerator.unwrap_model(model))
                # DDP averages gradients over processes; scaling by `world` turns that into the global sum.
                loss = loss_sum * world / max(n_tokens, 1)
                accelerator.backward(loss)
            total += loss.detach() / world
        total = float(accelerator.reduce(total, reduction="sum")) if world > 1 else float(total)
        if not math.isfinite(total):
            reason = f"non-finite loss ({total}) at step {step + 1} of method {self.method} (run {self.run}, seed {self.seed})"
            self._write_status("diverged", reason)
            raise TrainingDiverged(reason + "; no checkpoint was saved for this step")
        accelerator.clip_grad_norm_(model.parameters(), self.cfg.train.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        return total

    def _validation_set(self) -> ValidationSet:
        if self._val_signals is None:  # not set up for training (tests): read the base model for its fingerprint
            from entrodrop_bench.prepare.signals import base_model_signals

            self._val_signals = base_model_signals(self.p, self.p.target_val, kind="entropy", compute=False)  # prepare's
        values, offsets = self._val_signals
        val = ValidationSet(self.p, values, offsets)
        self._val_docs = (val.doc_ids.tolist(), val.doc_tokens.tolist())
        return val

    # --- checkpoints ------------------------------------------------------------------------
    def _save(self, model, weights: dict, method_state: dict, optimizer_state: dict | None, scheduler, step: int, log, val_curve,
              losses: dict) -> None:
        path = self.layout.checkpoint_dir(self.run, self.seed, step)
        try:
            self._write_checkpoint(path, model, weights, method_state, optimizer_state, scheduler, step, log, val_curve, losses)
        except OSError as exc:  # e.g. ENOSPC: the partial folder is already gone, earlier checkpoints untouched
            done = self.layout.checkpoints(self.run, self.seed)
            resume_from = done[-1][0] if done else 0
            raise UserError(
                f"could not save checkpoint {path}: {exc.strerror or exc}. Nothing partial was kept and earlier "
                f"checkpoints are intact; free space and re-run to resume from step {resume_from}"
            ) from None
        self._write_logs(log, val_curve)

    def _write_logs(self, log: list[dict], val_curve: list[dict]) -> None:
        """The files that follow each checkpoint: validation curve, per-step log, then checkpoint rotation."""
        doc_ids, doc_tokens = self._val_docs
        ValCurve(points=[ValPoint(**p) for p in val_curve], doc_ids=doc_ids, doc_tokens=doc_tokens).write(
            ValCurve.path(self.layout, self.run, self.seed))
        TrainLog(records=[TrainLogRecord(**r) for r in log]).write(TrainLog.path(self.layout, self.run, self.seed))
        self._rotate()

    def _write_checkpoint(self, path: Path, model, weights: dict, method_state: dict, optimizer_state: dict | None, scheduler,
                          step: int, log, val_curve, losses: dict) -> None:
        with atomic_dir(path) as tmp:
            model.save_pretrained(tmp, state_dict=weights, safe_serialization=True)
            self.p.tokenizer.save_pretrained(tmp)
            torch.save(
                {"optimizer": None, **(optimizer_state or {}), "scheduler": scheduler.state_dict(),
                 "torch_rng": torch.get_rng_state(), "log": log, "val_curve": val_curve, "step": step,
                 "regularizer": method_state},
                self.layout.trainer_state_file(tmp),
            )
            self._manifest(step, losses, tmp).write(CheckpointManifest.path(tmp))

    def _manifest(self, step: int, losses: dict, folder: Path) -> CheckpointManifest:
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
            cost=self._meter.cost() if self._meter else None,
        )

    def _rotate(self) -> None:
        """Drop old checkpoints beyond `keep_checkpoints`, only after the new save is complete."""
        keep = self.cfg.train.keep_checkpoints
        if keep is None:
            return
        for _, path in self.layout.checkpoints(self.run, self.seed)[:-keep]:
            shutil.rmtree(path, ignore_errors=True)


class _CostMeter:
    """What the run cost (`artifacts.TrainCost`, definitions in `entrodrop_bench.cost`): this session's wall time,
    from its start, added to what the run's status recorded of the sessions before it."""

    def __init__(self, previous: RunStatus | None, accelerator, tokens_per_step: int) -> None:
        before = previous.cost if previous is not None else None
        self.wall_before = before.train_wall_s if before else 0.0
        self.device_hours_before = before.device_hours if before else 0.0
        self.sessions = (before.sessions if before else 0) + 1
        self.device = _device_name(accelerator.device)
        self.device_count = accelerator.num_processes
        self.tokens_per_step = tokens_per_step
        self.flops_per_token: float | None = None
        self.flops_params = 0
        self.steps = 0
        self.tic = time.perf_counter()

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


def _device_name(device: torch.device) -> str:
    """`cpu`, the CUDA device's name as torch gives it (e.g. `NVIDIA H100 80GB HBM3`), or the device type."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return device.type


class _ProgressLine:
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


def fsdp_plugin(precision: str):
    """The FSDP plugin of a job launched with an FSDP accelerate config (ACCELERATE_USE_FSDP; the rest of its
    settings accelerate reads from the launch's environment), else None.

    Under bf16-mixed, parameters are gathered in bf16 for compute and gradients are reduced in fp32. accelerate's
    own policy for `mixed_precision: bf16` reduces in bf16 too, and FSDP2 accumulates the gradients of the
    micro-batches it does not sync (`no_sync`) in the reduce dtype: 64 micro-batches summed in bf16 at the
    Llama preset's settings. With fp32 as the reduce dtype both happen in fp32."""
    from accelerate.utils import FullyShardedDataParallelPlugin, parse_flag_from_env

    if not parse_flag_from_env("ACCELERATE_USE_FSDP"):
        return None
    policy = None
    if MIXED_PRECISION[precision] == "bf16":
        policy = {"param_dtype": torch.bfloat16, "reduce_dtype": torch.float32}
        if int(os.environ.get("FSDP_VERSION", "1")) == 1:
            policy["buffer_dtype"] = torch.float32
    return FullyShardedDataParallelPlugin(mixed_precision_policy=policy)


def _fsdp_on_cpu(accelerator, plugin) -> None:
    """accelerate sets FSDP up only on accelerators: CPU processes joined over gloo (ACCELERATE_USE_CPU) under an
    FSDP config come up as MULTI_CPU, i.e. plain data parallel. FSDP2 itself runs on CPU with gloo, so the state is
    switched to FSDP: the same accelerate code path as on GPUs (fully_shard, the mixed-precision policy, activation
    checkpointing, state-dict gathering), which is how the tests run it on a machine without GPUs."""
    from accelerate import DistributedType
    from accelerate.state import PartialState

    if plugin is None or accelerator.distributed_type != DistributedType.MULTI_CPU:
        return
    state = accelerator.state
    state.distributed_type = DistributedType.FSDP
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP
    state.fsdp_plugin = plugin


def _finish_trackers(accelerator) -> None:
    # Not `end_training()`: it also destroys the process group, which the job's next run still needs.
    for tracker in accelerator.trackers:
        tracker.finish()


def _accelerator(accelerator_cls, precision: str, run_dir: Path, trackers: list):
    """An Accelerator with train.precision's mixed_precision, logging to `trackers` (accelerate's `log_with`).
    accelerate keeps one state per process and refuses to change its precision; a single process that trains
    runs of several precisions in turn (tests, a notebook) has no process group to keep, so its state is reset
    first. Under FSDP, with `fsdp_plugin`'s policy."""
    from accelerate.state import AcceleratorState
    from accelerate.utils import InitProcessGroupKwargs

    from entrodrop_bench.distributed import process_group_timeout

    wanted = MIXED_PRECISION[precision]
    current = AcceleratorState._shared_state.get("_mixed_precision")
    if current is not None and current != wanted and not torch.distributed.is_initialized():
        AcceleratorState._reset_state()
    plugin = fsdp_plugin(precision)
    accelerator = accelerator_cls(mixed_precision=wanted, log_with=trackers or None, project_dir=str(run_dir), fsdp_plugin=plugin,
                                  kwargs_handlers=[InitProcessGroupKwargs(timeout=process_group_timeout())])
    _fsdp_on_cpu(accelerator, plugin)
    return accelerator


def activation_recompute(accelerator, gradient_checkpointing: bool) -> str | None:
    """Who checkpoints the decoder layers' activations (each is then recomputed once in the backward): `fsdp`
    when the FSDP config turns `fsdp_activation_checkpointing` on (the trainer's own is then left off, or every
    layer would be recomputed twice), `trainer` for `train.gradient_checkpointing`, else None."""
    from accelerate import DistributedType

    if accelerator.distributed_type == DistributedType.FSDP and accelerator.state.fsdp_plugin.activation_checkpointing:
        return "fsdp"
    return "trainer" if gradient_checkpointing else None


def _lr_scheduler(optimizer, kind: str, warmup: int, total: int):
    from transformers import get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup

    if kind == "cosine":
        return get_cosine_schedule_with_warmup(optimizer, warmup, total)
    return get_constant_schedule_with_warmup(optimizer, warmup)
