"""Online EntroDrop (`signal: online_loss | online_entropy`): the gate refreshed from values recorded in the training
forward pass. No extra forward pass, refresh cadence, masked visits skipped, exact resume, and processes that gate
identically."""

from __future__ import annotations

import dataclasses
import socket

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from test_plugins import SEQ, ctx_for, meta_from, target_docs, tiny_model, whole_doc_batch

from baselines.entrodrop import document_gates
from entrodrop_bench.artifacts import TrainLog
from entrodrop_bench.errors import ConfigError
from entrodrop_bench.paths import Layout
from entrodrop_bench.pipeline import (
    stage_prepare as prepare,  # the whole stage: training only reads its caches
)
from entrodrop_bench.regularizer import build_regularizer, resolve_params
from entrodrop_bench.train.trainer import Trainer

HIDDEN = 32


def _online(model, docs, tmp_path, *, num_processes: int = 1, rank: int = 0, **params):
    reg = build_regularizer("entrodrop", {"gamma_max": 0.0, "schedule": "static", "signal": "online_loss", **params})
    ctx = dataclasses.replace(ctx_for(model, docs, tmp_path), target_epoch=lambda step: step * 0.4,
                              num_processes=num_processes, process_index=rank)
    reg.prepare(ctx)
    return reg


def _visit(reg, docs: list[int], all_docs, step: int, values: torch.Tensor, *, micro: int = 0, micro_batches: int = 1):
    """One training micro-batch of whole documents `docs` (row i = document docs[i]) whose per-token losses are
    `values`, through the hooks in the trainer's order."""
    batch = whole_doc_batch([all_docs[d] for d in docs])
    batch["doc_id"] = torch.tensor(docs)[:, None].expand(-1, SEQ).clone()
    meta = dataclasses.replace(meta_from(batch, step=step, seed=step * 100 + micro), micro_batch=micro, micro_batches=micro_batches)
    reg.before_forward(meta)
    reg.transform_embeddings(torch.zeros(len(docs), SEQ, HIDDEN), meta)
    reg.observe_tokens(meta, {"loss": values})
    return meta


def _losses(rows: int, seed: int) -> torch.Tensor:
    values = torch.rand(rows, SEQ, generator=torch.Generator().manual_seed(seed)) * 5
    values[:, 0] = float("nan")  # nothing in a row predicts its first token
    return values


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return tiny_model(), target_docs(n=12), tmp_path_factory.mktemp("online")


def test_declarations_and_config_errors():
    cls, cfg = resolve_params("entrodrop", {"signal": "online_loss"})
    assert cls.signals(cfg) == {"nll"} and cls.observes(cfg) == {"loss"}
    role = cls.table_role(cfg)
    assert (role.online_signal, role.kind, role.targets, role.drop_rate) == ("loss", "comparison", "low", None)
    _, cfg = resolve_params("entrodrop", {"signal": "online_entropy", "refresh": 50})
    assert cls.signals(cfg) == {"entropy"} and cls.observes(cfg) == {"entropy"} and cfg.refresh == 50
    _, static = resolve_params("entrodrop", {})
    assert cls.observes(static) == frozenset() and cls.table_role(static).online_signal is None
    for params, message in [({"refresh": 10}, r"params\.refresh: refresh applies to online signals"),
                            ({"signal": "online_loss", "refresh": 0}, "refresh is `epoch` or a number"),
                            ({"signal": "online_loss", "target": "all"}, "nothing to gate"),
                            ({"signal": "online_nll"}, "signal")]:
        with pytest.raises(ConfigError, match=message):
            resolve_params("entrodrop", params)


def test_gate_is_recomputed_from_recorded_losses_at_the_cadence(setup):
    model, docs, tmp = setup
    reg = _online(model, docs, tmp, refresh=3)
    offsets, eligible = reg.offsets.numpy(), reg.eligible
    table = reg.online.host_values().copy()  # the base model's nll: the starting values
    assert np.array_equal(reg.gates.numpy(), document_gates(table, offsets, eligible, 0.5, "low"))
    history = []
    for step in range(7):
        before = reg.gates.clone()
        reg.begin_step(step)
        if step in (3, 6):
            assert np.array_equal(reg.gates.numpy(), document_gates(table, offsets, eligible, 0.5, "low"))
            assert not torch.equal(reg.gates, before)
            history.append(reg.log_values())
        else:
            assert torch.equal(reg.gates, before), f"gate changed at step {step}, not a refresh step"
        rows = [(2 * step) % 12, (2 * step + 1) % 12]
        values = _losses(2, step)
        _visit(reg, rows, docs, step, values)
        for i, d in enumerate(rows):
            span = slice(offsets[d], offsets[d + 1])
            table[span] = np.where(eligible[span], values[i].numpy(), table[span])
    assert [round(h["online_recorded_fraction"], 6) for h in history] == [round(6 / 12, 6), 1.0]
    assert all(0 < h["gate_flip_fraction"] < 1 for h in history)
    base = document_gates(_online(model, docs, tmp).online.host_values(), offsets, eligible, 0.5, "low")  # static gate
    drift = float((reg.gates.numpy() != base)[eligible].sum() / eligible.sum())
    assert history[-1]["gate_drift_fraction"] == pytest.approx(drift) and drift > 0


def test_epoch_refresh_follows_target_epoch_boundaries(setup):
    model, docs, tmp = setup
    reg = _online(model, docs, tmp)  # target_epoch(step) = 0.4 * step
    assert [s for s in range(1, 11) if reg.refresh_due(s)] == [3, 5, 8, 10]


def test_values_of_masked_visits_are_not_recorded(setup):
    model, docs, tmp = setup
    reg = _online(model, docs, tmp, gamma_max=1.0)
    base = reg.online.host_values().copy()
    values = _losses(4, 7)
    _visit(reg, [0, 1, 2, 3], docs, 5, values)
    mask = reg.last_mask
    touched = mask.clone()
    touched[:, 1:] |= mask[:, :-1]
    now = reg.online.host_values()[: 4 * SEQ].reshape(4, SEQ)
    eligible = torch.from_numpy(reg.eligible[: 4 * SEQ].reshape(4, SEQ))
    assert mask.any() and (eligible & ~touched).any()
    kept = (eligible & touched).numpy()
    assert np.array_equal(now[kept], base[: 4 * SEQ].reshape(4, SEQ)[kept])  # the clean (base) value stays
    fresh = (eligible & ~touched).numpy()
    assert np.array_equal(now[fresh], values.numpy()[fresh])
    assert reg.log_values()["online_skipped_fraction"] == pytest.approx(float(kept.sum() / eligible.sum()))


def test_a_token_twice_in_one_micro_batch_keeps_the_larger_value(setup):
    model, docs, tmp = setup
    reg = _online(model, docs, tmp)
    values = _losses(2, 3)
    _visit(reg, [4, 4], docs, 0, values)
    span = slice(int(reg.offsets[4]), int(reg.offsets[5]))
    eligible = reg.eligible[span]
    assert np.array_equal(reg.online.host_values()[span][eligible], values.max(dim=0).values.numpy()[eligible])


def test_state_round_trip_and_a_checkpoint_without_the_table(setup):
    model, docs, tmp = setup
    reg = _online(model, docs, tmp, refresh=1)
    for step in range(3):
        reg.begin_step(step)
        _visit(reg, [step], docs, step, _losses(1, step))
    state = reg.state_dict()
    fresh = _online(model, docs, tmp, refresh=1)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.gates, reg.gates) and fresh.refreshed_at == reg.refreshed_at == 2
    assert np.array_equal(fresh.online.host_values(), reg.online.host_values(), equal_nan=True)
    assert torch.equal(fresh.online.state_dict()["stamps"], state["stamps"]) and (state["stamps"] >= 0).any()
    with pytest.raises(ValueError, match="holds no online signal table"):
        _online(model, docs, tmp).load_state_dict({})


# --------------------------------------------------------------------------------------------------
# Several processes: each records only its own micro-batches; the gates must not depend on that
# --------------------------------------------------------------------------------------------------
MICRO_BATCHES, STEPS = 4, 6


def _run_schedule(reg, docs, rank: int, world: int) -> list[np.ndarray]:
    """Steps of MICRO_BATCHES micro-batches of two documents each (micro m: documents m and m+1, so neighbouring
    micro-batches, on different processes, visit one document in the same step); this process runs micro m when
    m % world == rank, as the trainer splits them. Returns the gate after every step's refresh."""
    gates = []
    for step in range(STEPS):
        reg.begin_step(step)
        gates.append(reg.gates.numpy().copy())
        for micro in range(rank, MICRO_BATCHES, world):
            first = (step * 3 + micro) % 11
            _visit(reg, [first, first + 1], docs, step, _losses(2, step * 10 + micro), micro=micro, micro_batches=MICRO_BATCHES)
    reg.state_dict()  # the checkpoint's combine step
    return gates + [reg.online.host_values()]


def _process(rank: int, world: int, port: int, tmp: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        from pathlib import Path

        out = Path(tmp)
        reg = _online(tiny_model(), target_docs(n=12), out / f"rank{rank}", num_processes=world, rank=rank,
                      gamma_max=0.5, refresh=2)
        np.savez(out / f"rank{rank}.npz", *_run_schedule(reg, target_docs(n=12), rank, world))
    finally:
        torch.distributed.destroy_process_group()


def test_two_processes_gate_identically_and_as_one_process_would(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_process, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    one = _run_schedule(_online(tiny_model(), target_docs(n=12), tmp_path / "one", gamma_max=0.5, refresh=2),
                        target_docs(n=12), 0, 1)
    ranks = [np.load(tmp_path / f"rank{r}.npz") for r in range(2)]
    for i, expected in enumerate(one):
        for rank in ranks:
            assert np.array_equal(rank[f"arr_{i}"], expected, equal_nan=True), f"item {i} differs from one process"
    assert not np.array_equal(one[0], one[-2]), "the gate never changed: nothing was tested"


# --------------------------------------------------------------------------------------------------
# Through the trainer
# --------------------------------------------------------------------------------------------------
def _count_forwards() -> tuple[list[int], object]:
    """Counts every forward of the causal LM (training micro-batches and validation); remove the handle after."""
    calls = [0]

    def count(module, args, output):
        if type(module).__name__ == "Qwen3ForCausalLM":
            calls[0] += 1

    return calls, torch.nn.modules.module.register_module_forward_hook(count)


def test_online_signal_makes_no_extra_forward_pass(mini_config):
    methods = {"static": {"plugin": "entrodrop", "params": {"gamma_max": 0.3, "j0": 0.3, "signal": "entropy"}},
               "online": {"plugin": "entrodrop", "params": {"gamma_max": 0.3, "j0": 0.3, "signal": "online_entropy", "refresh": 3}}}
    config = mini_config(methods=methods)
    prepared = prepare(config, Layout.from_config(config), echo=lambda s: None)  # the base-model passes happen here
    counts = {}
    for run in methods:
        calls, handle = _count_forwards()
        try:
            assert Trainer(prepared, run, 0, progress=False).train() == "complete"
        finally:
            handle.remove()
        counts[run] = calls[0]
    micro_batches = prepared.plan.total_steps * -(-prepared.plan.rows_per_step // config.train.micro_batch_size)
    assert counts["online"] == counts["static"] > micro_batches
    log = TrainLog.read(TrainLog.path(Layout.from_config(config), "online", 0)).records
    refreshes = [r.step for r in log if "gate_flip_fraction" in r.model_extra]
    assert refreshes == [s + 1 for s in range(3, prepared.plan.total_steps, 3)]  # logged by the step it began
    assert log[-1].model_extra.get("online_recorded_fraction") or any(r.model_extra.get("online_recorded_fraction") for r in log)


def test_kill_and_resume_give_the_weights_and_table_of_an_uninterrupted_run(mini_config, tmp_path):
    method = {"plugin": "entrodrop", "params": {"gamma_max": 0.4, "schedule": "static", "signal": "online_loss", "refresh": 2}}
    train = {"checkpoint_every_epochs": 1}
    configs = [mini_config(methods={"m": method}, train=train,
                           output={"runs_dir": str(tmp_path / f"r{i}"), "results_dir": str(tmp_path / f"o{i}")}) for i in range(2)]
    Trainer(prepare(configs[0], Layout.from_config(configs[0]), echo=lambda s: None), "m", 0, progress=False).train()
    prepared = prepare(configs[1], Layout.from_config(configs[1]), echo=lambda s: None)
    first_ckpt = prepared.plan.checkpoint_steps(1)[0]
    assert first_ckpt + 3 < prepared.plan.total_steps
    assert Trainer(prepared, "m", 0, progress=False, stop_after_step=first_ckpt + 3).train() == "running"
    assert Trainer(prepared, "m", 0, progress=False).train() == "complete"
    whole, split = (Layout.from_config(c).checkpoints("m", 0)[-1][1] for c in configs)
    wa, wb = load_file(str(whole / "model.safetensors")), load_file(str(split / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    sa, sb = (torch.load(Layout.trainer_state_file(p), weights_only=True)["regularizer"] for p in (whole, split))
    assert sa["refreshed_at"] == sb["refreshed_at"] > first_ckpt
    assert torch.equal(sa["gates"], sb["gates"]) and torch.equal(sa["stamps"], sb["stamps"])
    assert torch.equal(torch.nan_to_num(sa["values"]), torch.nan_to_num(sb["values"]))
    assert (sa["stamps"] >= 0).any()


def test_packed_rows_record_only_the_target_tokens_their_row_predicts(setup):
    """A packed row holds a target segment that starts mid-document, a general document and padding: only the
    segment's tokens after its first (which nothing in the row predicts) are recorded."""
    from test_plugins import packed_batch

    from entrodrop_bench.prepare.data import IGNORE_INDEX
    from entrodrop_bench.train.trainer import token_aligned

    model, docs, tmp = setup
    reg = _online(model, docs, tmp)
    batch = packed_batch(docs, rows=4)
    labels = batch["input_ids"].clone()
    labels[:, [0, 30]] = IGNORE_INDEX  # segment starts: the target segment and the general document
    labels[batch["is_pad"]] = IGNORE_INDEX
    per_position = torch.rand(4, SEQ - 1, generator=torch.Generator().manual_seed(1)) + 100
    before = reg.online.host_values().copy()
    meta = meta_from(batch, step=0)
    reg.before_forward(meta)
    reg.observe_tokens(meta, {"loss": token_aligned(per_position, labels)})
    values = reg.online.host_values()
    changed = np.flatnonzero(~np.isclose(values, before, equal_nan=True))
    expected = [int(reg.offsets[r]) + p for r in range(4) for p in range(11, 40)
                if reg.eligible[int(reg.offsets[r]) + p]]
    assert changed.tolist() == sorted(expected)
    for r in range(4):  # the value recorded is the one the row's previous position predicted
        p = 20  # document position 20 sits at row position 10, predicted by row position 9
        assert values[int(reg.offsets[r]) + p] == pytest.approx(float(per_position[r, 9]))


def test_the_gate_computed_on_tensors_matches_numpy_quantiles_with_ties_and_gaps():
    """The refresh computes Eq. 2 with torch on the training device: per document, numpy's linear quantile of the
    eligible values (ties, NaN, empty and all-ineligible documents included)."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(0, 40, 60)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    values = np.round(rng.random(int(offsets[-1])), 1).astype(np.float32)
    values[rng.random(len(values)) < 0.1] = np.nan
    eligible = np.isfinite(values) & (rng.random(len(values)) < 0.9)
    for target, k in (("low", 0.5), ("low", 0.3), ("high", 0.5)):
        gates = document_gates(values, offsets, eligible, k, target)
        for d in range(len(lengths)):
            span = slice(offsets[d], offsets[d + 1])
            sig, ok = values[span], eligible[span]
            want = np.zeros(len(sig), dtype=bool)
            if ok.any():
                if target == "low":
                    want[ok] = sig[ok] <= np.quantile(sig[ok].astype(np.float64), k)
                else:
                    want[ok] = sig[ok] > np.quantile(sig[ok].astype(np.float64), 1 - k)
            assert np.array_equal(gates[span], want), (target, k, d)
