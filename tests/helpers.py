"""Small helpers shared by several test files (pytest puts tests/ on sys.path: `from helpers import ...`)."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Literal

import pytest
import torch
from pydantic import Field

from entrodrop_bench.artifacts import (
    CheckpointManifest,
    CorpusRecord,
    EvalResult,
    ItemOutcomes,
    PreparedRecord,
    ResultProvenance,
    RunStatus,
    TrainLog,
    TrainLogRecord,
    ValCurve,
    ValPoint,
)
from entrodrop_bench.paths import Layout
from entrodrop_bench.regularizer import REGULARIZERS, LogSeries, ReportFields, TableRole

REPO = Path(__file__).resolve().parent.parent


def load_module_from_file(relative_path: str, name: str) -> ModuleType:
    """Import a file that is not part of an installed package (benchmarks/, tasks/), as lm-eval and the bench do."""
    spec = importlib.util.spec_from_file_location(name, REPO / relative_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class ForwardWrapper(torch.nn.Module):
    """Stands in for DDP/FSDP/accelerate/compile wrappers: a module whose forward calls the real model's forward."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.module = model

    def forward(self, **kwargs):
        return self.module(**kwargs)


# --- inter-stage files, written through the same artifact models as the stages (so format drift fails tests) ---
def write_status(layout: Layout, run: str, seed: int, *, state: str = "complete", total_steps: int = 0,
                 method: str | None = None, plugin: str = "plain", params: dict | None = None, reason: str | None = None,
                 stats: dict | None = None, run_key: str = "key", cost: dict | None = None) -> RunStatus:
    status = RunStatus(state=state, reason=reason, total_steps=total_steps, method=method or run.split("@")[0], plugin=plugin,
                       params=params or {}, seed=seed, config_hash="cafe", run_key=run_key, stats=stats or {},
                       cost=cost, updated="2026-01-01T00:00:00+00:00")
    status.write(RunStatus.path(layout, run, seed))
    return status


def write_val_curve(layout: Layout, run: str, seed: int, points: list[dict]) -> None:
    """points: {step, target_epoch, overall, low_entropy, high_entropy} each."""
    ValCurve(points=[ValPoint(**p) for p in points]).write(ValCurve.path(layout, run, seed))


def write_manifest(checkpoint_dir: Path, *, run: str, seed: int, step: int, total_steps: int, target_epoch: float,
                   method: str | None = None, plugin: str = "plain", params: dict | None = None,
                   val_loss: dict | None = None) -> CheckpointManifest:
    manifest = CheckpointManifest(
        run=run, method=method or run.split("@")[0], plugin=plugin, params=params or {}, seed=seed, step=step,
        total_steps=total_steps, target_epoch=target_epoch, tokens_seen={"target": step * 60, "general": step * 40},
        config_hash="cafe", run_key="key", git_commit=None, val_loss=val_loss or {}, weights_sha256="00",
        created="2026-01-01T00:00:00+00:00")
    manifest.write(CheckpointManifest.path(checkpoint_dir))
    return manifest


def eval_result(run: str, seed: int, step: int, benchmark: str, score: float | None, *, metric: str = "acc,none",
                method: str | None = None, target_epoch: float | None = None, harness: str = "lm-eval",
                checkpoint_sha256: str = "00", task_config_hash: str = "t", items: list[float] | None = None,
                **provenance) -> EvalResult:
    """A stored result as the evaluator writes it; `provenance` adds or overrides provenance fields. `items`:
    per-item scores, kept as the result's per-item outcomes with ids `<benchmark>/<index>`."""
    prov = {"checkpoint": f"{run}/seed{seed}/checkpoint-{step}", "checkpoint_sha256": checkpoint_sha256,
            "task_config_hash": task_config_hash, "seed": seed, "batch_size": 16, "num_fewshot": 0, "limit": None,
            "versions": {"lm_eval": "0.4.13", "transformers": "5.23.0", "torch": "2.13.0"},
            "date": "2026-01-01T00:00:00+00:00", **provenance}
    return EvalResult(run=run, method=method or run.split("@")[0], seed=seed, step=step, target_epoch=target_epoch,
                      benchmark=benchmark, harness=harness, metrics={metric: score}, primary_metric=metric, score=score,
                      provenance=ResultProvenance(**prov),
                      items=None if items is None else ItemOutcomes(ids=[f"{benchmark}/{i}" for i in range(len(items))],
                                                                    scores=[float(x) for x in items]))


def write_eval_result(layout: Layout, *args, **kwargs) -> EvalResult:
    """`eval_result`, written into the layout's store."""
    result = eval_result(*args, **kwargs)
    result.write(EvalResult.path(layout, result.run, result.seed, result.step, result.benchmark))
    return result


def write_prepared(layout: Layout, *, tokenizer_hash: str = "tok", target_train: dict | None = None,
                   target_val: dict | None = None, general: dict | None = None, plan: dict | None = None) -> PreparedRecord:
    """A prepare record; each corpus is {docs, tokens, hash} (defaults fill what is not given); `plan`:
    `TrainingPlan.to_json()` (empty when not given)."""
    def corpus(given: dict | None, name: str) -> CorpusRecord:
        return CorpusRecord(**{"docs": 1, "tokens": 100, "hash": f"{name}-hash", **(given or {})})

    record = PreparedRecord(config_hash="cafe", model_path="tiny", tokenizer_hash=tokenizer_hash,
                            target_train=corpus(target_train, "target_train"), target_val=corpus(target_val, "target_val"),
                            general=corpus(general, "general"), plan=plan or {}, writer_rank=0)
    record.write(PreparedRecord.path(layout))
    return record


def write_train_log(layout: Layout, run: str, seed: int, steps: int, refreshes: dict[int, float],
                    drift: dict[int, float] | None = None) -> TrainLog:
    """A per-step train log of `steps` optimizer steps; the steps in `refreshes` (step -> share of gates flipped)
    carry the keys the online stub declares (`STUB_FLIP_KEY`, and `STUB_DRIFT_KEY` from `drift` where given) and
    `online_recorded_fraction`."""
    records = []
    for step in range(1, steps + 1):
        extra = {STUB_FLIP_KEY: refreshes[step], "online_recorded_fraction": step / steps} if step in refreshes else {}
        if drift and step in drift:
            extra[STUB_DRIFT_KEY] = drift[step]
        records.append(TrainLogRecord(step=step, loss=2.0, lr=1e-4, step_s=0.1, tokens_per_s=1000.0, masked_fraction=0.05, **extra))
    log = TrainLog(records=records)
    log.write(TrainLog.path(layout, run, seed))
    return log


class BaseModelSignals(dict):
    """`PrepareContext.signals` for a plugin prepared outside the trainer: each kind the plugin reads, computed on first
    use by the prepare stage's own pass (`prepare.entropy.token_signals`) over the context's documents."""

    KINDS = ("entropy", "nll")

    def __init__(self, model: torch.nn.Module, docs: list[list[int]], seq_len: int) -> None:
        super().__init__()
        self._args = (model, docs, seq_len)

    def __contains__(self, kind: object) -> bool:
        return kind in self.KINDS

    def __missing__(self, kind: str):
        from entrodrop_bench.prepare.entropy import token_signals

        model, docs, seq_len = self._args
        self[kind] = token_signals(model, docs, kind=kind, seq_len=seq_len, device="cpu")
        return self[kind]


ONLINE_STUB = "online_gate_stub"
STUB_FLIP_KEY, STUB_DRIFT_KEY = "stub_flips", "stub_drift"
"""The log keys of the online stub's declared series (`write_train_log` writes them)."""


def register_online_stub(monkeypatch: pytest.MonkeyPatch) -> str:
    """Register, for one test, a plugin whose table role declares an online gate (`online_signal`, from its
    `online` param), as the online EntroDrop's does: the report reads only the declared role. Returns its name."""
    from baselines.entrodrop import EntroDrop, EntroDropConfig

    class OnlineStubConfig(EntroDropConfig):
        online: Literal["loss", "entropy"] = Field("loss", description="What the gate is refreshed from.")
        proposed: bool = Field(False, description="Declare the `proposed` kind, as a careless plugin might: the "
                                                  "report must still not take it for the paper's EntroDrop.")

    class OnlineStub(EntroDrop):
        Config = OnlineStubConfig
        name = ONLINE_STUB

        @classmethod
        def table_role(cls, config: OnlineStubConfig) -> TableRole:
            # It declares its gamma_max as a drop rate too, so Table 4 must leave it out on purpose.
            return TableRole(label=f"+EntroDrop (online {config.online})", kind="proposed" if config.proposed else "comparison",
                             targets=config.target, drop_rate=config.gamma_max, online_signal=config.online)

        @classmethod
        def report_fields(cls, config: OnlineStubConfig) -> ReportFields:
            # The online EntroDrop's series under keys of its own: Figure 5 reads what is declared, not EntroDrop's.
            return dataclasses.replace(super().report_fields(config), series=(
                LogSeries(STUB_FLIP_KEY, "gates flipped at the refresh"),
                LogSeries(STUB_DRIFT_KEY, "differs from the base model's gate", dashed=True)))

    REGULARIZERS.discover()
    monkeypatch.setitem(REGULARIZERS._items, ONLINE_STUB, OnlineStub)
    monkeypatch.setitem(REGULARIZERS._origins, ONLINE_STUB, f"{__name__}.OnlineStub")
    return ONLINE_STUB
