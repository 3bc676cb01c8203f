"""Prepare once: in a job of several processes joined by accelerate, only the main process tokenizes and
computes the entropy caches; the others wait, then read them. Run for real: two CPU processes over gloo."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from safetensors import safe_open

from entrodrop_bench.artifacts import PreparedRecord, RunStatus, TrainLog, ValCurve
from entrodrop_bench.config import CorpusConfig
from entrodrop_bench.paths import Layout
from entrodrop_bench.prepare.corpora import iter_texts, tokenized_documents
from entrodrop_bench.prepare.data import pack_documents, tokenize_texts


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(argv: list[str], *, join: bool, cwd: Path) -> subprocess.CompletedProcess:
    """`torchrun --nproc_per_node 2` (what `accelerate launch` runs), with the environment accelerate reads."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("ACCELERATE_USE_CPU", None)
    if join:
        env["ACCELERATE_USE_CPU"] = "true"  # joins CPU processes into one MULTI_CPU job (gloo)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "entrodrop_bench.cli", *argv]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def _writer_ranks(runs: Path) -> dict[str, str]:
    ranks = {}
    for path in sorted((runs / "cache").rglob("*.safetensors")):
        with safe_open(str(path), framework="np") as f:
            ranks[str(path.relative_to(runs))] = (f.metadata() or {}).get("writer_rank")
    return ranks


def test_two_joined_processes_prepare_once_then_train(mini_config, tmp_path):
    online = {"plugin": "entrodrop", "params": {"gamma_max": 0.3, "j0": 0.2, "signal": "online_loss", "refresh": 2}}
    config = mini_config(methods={"plain": {"plugin": "plain"}, "entrodrop": {"plugin": "entrodrop", "params": {"gamma_max": 0.1}},
                                  "online": online})
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    # `train` prepares first; then both processes train each run, the second reading the entropy caches.
    proc = _launch(["train", str(cfg), "--no-progress"], join=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "process 1 of 2 read the caches the main process wrote" in proc.stdout
    runs = Path(config.output.runs_dir)
    ranks = _writer_ranks(runs)
    corpora = [k for k in ranks if k.startswith("cache/data/")]
    signals = [k for k in ranks if k.startswith("cache/entropy/")]
    # target + general; target-train entropy (entrodrop) and nll (online_loss starts from it) + validation entropy
    assert len(corpora) == 2 and len(signals) == 3, ranks
    assert set(ranks.values()) == {"0"}, f"only the main process writes: {ranks}"
    layout = Layout.from_config(config)
    assert PreparedRecord.read(PreparedRecord.path(layout)).writer_rank == 0
    assert not list(runs.rglob("*.tmp*")), "no leftovers"
    # Online EntroDrop: each process records its own micro-batches; every refresh checks that the processes' gates
    # agree (a checksum over the job), so a run that completes gated identically on both.
    refreshes = [r for r in TrainLog.read(TrainLog.path(layout, "online", 0)).records if "gate_flip_fraction" in r.model_extra]
    assert len(refreshes) >= 3 and all(r.model_extra["online_recorded_fraction"] > 0 for r in refreshes)
    for run in ("plain", "entrodrop", "online"):
        assert RunStatus.read(RunStatus.path(layout, run, 0)).state == "complete"
        # every process validates the whole set: the per-document losses the main process wrote are complete
        curve = ValCurve.read(ValCurve.path(layout, run, 0))
        w = np.array(curve.doc_tokens, dtype=float)
        for point in curve.points:
            assert float((np.array(point.doc_losses) * w).sum() / w.sum()) == pytest.approx(point.overall, rel=1e-5)


def test_processes_that_accelerate_did_not_join_are_refused_before_any_work(mini_config, tmp_path):
    config = mini_config()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    proc = _launch(["prepare", str(cfg), "--no-progress"], join=False, cwd=tmp_path)
    assert proc.returncode != 0
    assert "joined them into no job" in proc.stderr and "ACCELERATE_USE_CPU" in proc.stderr
    assert not Path(config.output.runs_dir, "cache").exists()


@pytest.mark.parametrize("cap", [None, 700])
def test_parallel_tokenization_gives_the_streaming_corpus(tmp_path, mini_assets, monkeypatch, cap):
    """The hub path (`datasets.map` over windows, several processes) keeps the same documents, order and cap."""
    from transformers import AutoTokenizer

    import entrodrop_bench.prepare.corpora as corpora

    monkeypatch.setattr(corpora, "WINDOW_DOCS_PER_PROC", 50)  # several windows over 400 documents
    lines = mini_assets["general"].read_text().splitlines()
    lines[3] = json.dumps({"text": "   "})  # blank documents are skipped on both paths
    data = tmp_path / "general.jsonl"
    data.write_text("\n".join(lines) + "\n")
    corpus = CorpusConfig(source="json", path=str(data), shuffle_seed=3)
    tok = AutoTokenizer.from_pretrained(mini_assets["model"])
    streaming = tokenize_texts(iter_texts(corpus, "data.general"), tok, source="data.general", max_tokens=cap)
    parallel = pack_documents(tokenized_documents(corpus, "data.general", tok, num_proc=2), tok.eos_token_id,
                              source="data.general", max_tokens=cap)
    assert parallel.content_hash() == streaming.content_hash()
    assert len(parallel) == (399 if cap is None else len(streaming)) and (cap is None or len(parallel) < 399)


def test_the_process_group_waits_long_enough_for_the_main_process_to_prepare(monkeypatch):
    """In a launched job the other processes wait in a barrier while the main one prepares (download, tokenization,
    entropy pass); torch's default timeout (10 minutes under NCCL) would kill the job. The harness joins every job
    with its own timeout (the 2-process FSDP test reads it back from the live process group)."""
    from datetime import timedelta

    from entrodrop_bench.distributed import PROCESS_GROUP_TIMEOUT_MIN, process_group_timeout
    from entrodrop_bench.errors import UserError

    monkeypatch.delenv("ENTRODROP_PROCESS_GROUP_TIMEOUT_MIN", raising=False)
    assert process_group_timeout() == timedelta(minutes=PROCESS_GROUP_TIMEOUT_MIN) >= timedelta(hours=1)
    monkeypatch.setenv("ENTRODROP_PROCESS_GROUP_TIMEOUT_MIN", "300")
    assert process_group_timeout() == timedelta(hours=5)
    for bad in ("0", "-5", "soon"):
        monkeypatch.setenv("ENTRODROP_PROCESS_GROUP_TIMEOUT_MIN", bad)
        with pytest.raises(UserError, match=f"ENTRODROP_PROCESS_GROUP_TIMEOUT_MIN.*positive number of minutes, got '{bad}'"):
            process_group_timeout()
