"""Rate-matched token dropout (`gamma_max: {match: <method>}`): refused at load when it cannot work, resolved before
training from the gated share `prepare` measured, trained to the target method's masked fraction, and shown in
Table 3 beside the paper's equal-gamma_max row."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from test_selection import make_config, write_run

from baselines.masking import TokenDropoutConfig
from baselines.token_dropout import TokenDropout
from entrodrop_bench.artifacts import GateShares, RunStatus
from entrodrop_bench.config import load_config, run_key
from entrodrop_bench.errors import ConfigError
from entrodrop_bench.paths import CONFIGS_DIR, Layout
from entrodrop_bench.pipeline import stage_prepare, stage_train
from entrodrop_bench.prepare.fingerprints import weights_fingerprint
from entrodrop_bench.prepare.signals import gate_shares, read_gate_shares, run_signals
from entrodrop_bench.regularizer import PrepareContext, RateMatch
from entrodrop_bench.report.selection import select
from entrodrop_bench.report.tables import write_tables
from entrodrop_bench.train.trainer import rate_match

TINY = CONFIGS_DIR / "tiny.yaml"
MATCHED = "methods.token_dropout_matched.params.gamma_max"
# The tiny preset, shrunk: a small world and 20 optimizer steps. EntroDrop (the matched method) at gamma_max 0.4 with
# the static schedule, so that each run masks ~2,000 tokens and the realized fractions are not sampling noise.
SMALL = ["tiny.n_target_docs=60", "tiny.n_general_docs=300", "tiny.n_benchmark=20", "tiny.pretrain_tokens=4000",
         "data.token_budget=40960", "train.checkpoint_every_epochs=8", "train.parallel_runs=1",
         "methods.entrodrop.params.gamma_max=0.4", "methods.entrodrop.params.schedule=static",
         "methods.token_dropout_matched.params.schedule=static"]


# --------------------------------------------------------------------------- refused at load
@pytest.mark.parametrize(("override", "message"), [
    (f"{MATCHED}={{match: nope}}", r"methods\.token_dropout_matched\.params\.gamma_max: \{match: nope\} names no method of "
                                   r"this experiment \(methods: plain, .*\)"),
    (f"{MATCHED}={{match: plain}}", r"gamma_max: \{match: plain\}: method 'plain' \(plugin plain\) masks no tokens: its "
                                    r"plugin declares no masking rate"),
    (f"{MATCHED}={{match: neftune}}", r"gamma_max: \{match: neftune\}: method 'neftune' \(plugin neftune\) masks no tokens"),
    (f"{MATCHED}={{match: entrodrop_gamma}}", r"gamma_max: \{match: entrodrop_gamma\}: method 'entrodrop_gamma' has 3 runs"),
    (f"{MATCHED}={{match: token_dropout_matched}}", r"gamma_max: \{match: token_dropout_matched\} names this method itself"),
    (f"{MATCHED}={{method: entrodrop}}", r"gamma_max: .*expected \{match: <method name>\}"),
    (f"{MATCHED}=1.5", r"gamma_max: .*must be a number in \[0, 1\] or \{match: <method>\} \(got 1\.5\)"),
    ("methods.entrodrop.params.gamma_max={match: token_dropout}",
     r"methods\.entrodrop\.params\.gamma_max: .*rate matching \(\{match: <method>\}\) is offered by token_dropout only"),
    ("methods.neftune.params.alpha={match: entrodrop}", r"methods\.neftune\.params\.alpha: .*valid number"),
    ("methods.chained={plugin: token_dropout, params: {gamma_max: {match: token_dropout_matched}, j0: auto}}",
     r"methods\.chained\.params\.gamma_max: \{match: token_dropout_matched\}: method 'token_dropout_matched' is "
     r"rate-matched itself"),
], ids=["unknown method", "baseline masks nothing", "neftune masks nothing", "grid", "itself", "malformed", "above 1",
        "entrodrop refuses match", "other plugin", "chain"])
def test_a_match_that_cannot_work_is_refused_at_load(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(TINY, [override])


def test_the_tiny_preset_declares_the_dependency_and_keys_the_run_on_its_target():
    config = load_config(TINY)
    spec = config.runs["token_dropout_matched"]
    assert spec.settings.gamma_max == RateMatch(match="entrodrop")
    assert spec.rate_dependency == ("gamma_max", "entrodrop") and spec.role.rate_matched_to == "entrodrop"
    assert config.runs["token_dropout"].rate_dependency is None and config.runs["token_dropout"].role.rate_matched_to is None
    # the resolved gamma_max follows EntroDrop's settings: changing them changes the matched run's key (shared runs)
    other = load_config(TINY, ["methods.entrodrop.params.gamma_max=0.2"])
    assert run_key(config, "token_dropout_matched", 0) != run_key(other, "token_dropout_matched", 0)
    assert run_key(config, "token_dropout", 0) == run_key(other, "token_dropout", 0)


# --------------------------------------------------------------------------- resolved on a prepared tiny world
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rate_match")
    config = load_config(TINY, [*SMALL, f"output.runs_dir={tmp / 'runs'}", f"output.results_dir={tmp / 'results'}"])
    layout = Layout.from_config(config)
    return config, layout, stage_prepare(config, layout, echo=lambda _: None)


def _context(prepared, **extra) -> PrepareContext:
    model = prepared.load_base_model()
    return PrepareContext(model=model, tokenizer=prepared.tokenizer,
                          target_docs=prepared.target_train.docs(), cache_dir=prepared.layout.entropy_cache_dir,
                          seq_len=prepared.plan.seq_len, total_steps=prepared.plan.total_steps,
                          device=torch.device("cpu"), seed=0,
                          signals=run_signals(prepared, prepared.config.runs["entrodrop"], model), **extra)


def test_prepare_measures_each_masking_runs_gated_share(world):
    config, layout, prepared = world
    path = GateShares.path(layout)
    shares = GateShares.read(path).runs
    assert set(shares) == {r for r, s in config.runs.items() if s.plugin in ("entrodrop", "token_dropout")}
    entro, vanilla = shares["entrodrop"], shares["token_dropout"]
    assert entro.signal == "entropy" and 0.45 < entro.gated_fraction < 0.6, entro  # k = 0.5, ties at the median
    assert vanilla.signal is None and vanilla.gated_fraction == 1.0 and vanilla.gated_tokens == vanilla.eligible_tokens
    assert entro.eligible_tokens == vanilla.eligible_tokens > 1000
    assert shares["entrodrop_high"].gated_fraction < entro.gated_fraction  # `> (1-k)` strictly, `<= k` inclusive
    # the same share EntroDrop computes for itself from the same cache, through its own prepare
    entrodrop = config.runs["entrodrop"].build()
    entrodrop.prepare(_context(prepared))
    assert entrodrop.static_gated_fraction == entro.gated_fraction
    # measured once: asking again reads the file and rewrites nothing
    before = path.stat().st_mtime_ns
    assert gate_shares(prepared, prepared.load_base_model()) == shares and path.stat().st_mtime_ns == before
    assert read_gate_shares(prepared, _weights(prepared)) == shares  # training's reader: checked, never measured


def _weights(prepared) -> str:
    return weights_fingerprint(prepared.load_base_model())


def _curriculum(kind: str, total: int, j0: float, sharpness: float = 10.0) -> float:
    """C = mean over steps of gamma_max(j) / gamma_max, times 1/2 (the mean of U(0, 1)), written out here."""
    if kind == "static":
        return 0.5
    steps = np.arange(total)
    return float(np.mean(1 / (1 + np.exp(-sharpness / total * (steps - j0))))) / 2


def test_matched_gamma_max_is_the_targets_rate_over_its_own(world):
    config, _, prepared = world
    g = read_gate_shares(prepared, _weights(prepared))["entrodrop"].gated_fraction
    total = prepared.plan.total_steps
    # same curriculum on both sides (static): C cancels, gamma_max = 0.4 * g
    fraction, own = rate_match(prepared, "token_dropout_matched", 0, prepared.load_base_model())
    assert own == 1.0 and fraction == pytest.approx(0.4 * g * 0.5, rel=1e-12)
    matched = config.runs["token_dropout_matched"].build()
    matched.prepare(_context(prepared, matched_masked_fraction=fraction, gated_fraction=own))
    assert matched.resolved_params()["gamma_max"] == pytest.approx(0.4 * g, rel=1e-12)
    # another curriculum (sigmoid, j0 at 30% of the run) against the static target: C enters the ratio
    sigmoid = TokenDropoutConfig(gamma_max={"match": "entrodrop"}, schedule="sigmoid", j0=0.3)
    run = TokenDropout(sigmoid)
    run.prepare(_context(prepared, matched_masked_fraction=fraction, gated_fraction=1.0))
    want = 0.4 * g * 0.5 / _curriculum("sigmoid", total, 0.3 * total)
    assert run.resolved_params()["gamma_max"] == pytest.approx(want, rel=1e-9) and want > 0.4 * g
    resolved = sigmoid.model_copy(update={"gamma_max": run.resolved_params()["gamma_max"]})
    assert TokenDropout.expected_masked_fraction(resolved, gated_fraction=1.0, total_steps=total,
                                                 baseline_min_val_step=None) == pytest.approx(fraction, rel=1e-9)
    # a rate this run cannot reach even at gamma_max 1 is refused, saying what it would need
    with pytest.raises(ConfigError, match=r"gamma_max: \{match: entrodrop\}: method 'entrodrop' masks 0\.6000 .* more "
                                          r"than this run can at gamma_max 1"):
        TokenDropout(sigmoid).prepare(_context(prepared, matched_masked_fraction=0.6, gated_fraction=1.0))


def test_rate_matched_run_masks_what_its_target_masks(world):
    """The issue's acceptance test: trained on the (shrunk) tiny preset, the rate-matched run's realized masked
    fraction is within 10% of its target method's."""
    config, layout, prepared = world
    states = stage_train(config, layout, only=["entrodrop", "token_dropout_matched"], progress=False, echo=lambda _: None)
    assert set(states.values()) == {"complete"}, states
    entro = RunStatus.read(RunStatus.path(layout, "entrodrop", 0))
    matched = RunStatus.read(RunStatus.path(layout, "token_dropout_matched", 0))
    g = read_gate_shares(prepared, _weights(prepared))["entrodrop"].gated_fraction
    assert matched.resolved["gamma_max"] == pytest.approx(0.4 * g, rel=1e-9)
    assert entro.resolved["gamma_max"] == 0.4
    realized, target = matched.stats["masked_fraction"], entro.stats["masked_fraction"]
    assert abs(realized / target - 1) < 0.10, (realized, target)
    # both near their expectation g * 0.4 / 2, and far from the equal-gamma_max vanilla rate 0.4 / 2 (1/g times more)
    assert target == pytest.approx(0.2 * g, rel=0.15) and realized < 0.75 * 0.2
    assert matched.stats["gated_fraction"] == 1.0 and entro.stats["gated_fraction"] == pytest.approx(g, rel=0.1)


# --------------------------------------------------------------------------- Table 3 shows both rows
def test_table3_shows_the_equal_gamma_and_the_rate_matched_rows(tmp_path):
    methods = {
        "plain": {"plugin": "plain"},
        "entrodrop": {"plugin": "entrodrop", "params": {"gamma_max": 0.1}},
        "token_dropout": {"plugin": "token_dropout", "params": {"gamma_max": 0.1}},
        "token_dropout_matched": {"plugin": "token_dropout", "params": {"gamma_max": {"match": "entrodrop"}},
                                  "table": "targeting"},
    }
    config = make_config(tmp_path, methods=methods, domains={"math": ["gsm8k", "svamp"]})
    layout = Layout.from_config(config)
    realized = {"plain": None, "entrodrop": 0.0262, "token_dropout": 0.0501, "token_dropout_matched": 0.0255}
    for run, score in {"plain": 0.40, "entrodrop": 0.46, "token_dropout": 0.44, "token_dropout_matched": 0.43}.items():
        write_run(layout, run, 0, [(10, 5.0, {"gsm8k": score, "svamp": score}, 0.7)], plugin=methods[run]["plugin"],
                  params=methods[run].get("params"))
        path = RunStatus.path(layout, run, 0)
        status = RunStatus.read(path)
        stats = {} if realized[run] is None else {"masked_fraction": realized[run]}
        resolved = {"gamma_max": 0.0523, "j0": 12.0} if run == "token_dropout_matched" else {}
        status.model_copy(update={"stats": stats, "resolved": resolved}).write(path)
    select(config, layout)
    write_tables(config, layout)
    text = (layout.tables_dir / "table3.md").read_text()
    rows = {line.split(" | ")[0].strip("| "): [c.strip() for c in line.strip("|").split(" | ")]
            for line in text.split("\n\n")[1].splitlines()[2:]}
    assert list(rows) == ["Random masking", "Random masking, rate-matched", "High-entropy", "Low-entropy (EntroDrop)"]
    assert rows["High-entropy"][1:] == ["top 50% entropy", "–", "–", "–"]  # not configured: dashes, as before
    assert rows["Random masking"][1:] == ["all tokens", "44.00", "–", "5.01%"]
    assert rows["Random masking, rate-matched"][1:] == ["all tokens, γ_max 0.0523 (rate of entrodrop)", "43.00", "-1.00",
                                                        "2.55%"]
    assert rows["Low-entropy (EntroDrop)"][-1] == "2.62%"
    assert "Masked (realized)" in text and "rate-matched row's γ_max was set before training" in text
    records = list(csv.DictReader((layout.tables_dir / "table3.csv").open()))
    masked = {r["run"]: float(r["mean"]) for r in records if r["column"] == "masked fraction"}
    assert masked == {"token_dropout": 0.0501, "token_dropout_matched": 0.0255, "entrodrop": 0.0262}
    assert r"rate-matched & all tokens, $\gamma$\_max 0.0523" in (layout.tables_dir / "table3.tex").read_text()
    # Table 1: the main methods' realized rates, a dash for the Baseline
    table1 = (layout.tables_dir / "table1.md").read_text()
    assert "| Baseline |" in table1 and table1.split("| Baseline |")[1].splitlines()[0].endswith("| – |")
    assert table1.split("| +Token Dropout |")[1].splitlines()[0].endswith("| 5.01% |")
    # the rate-matched row joins Table 3's paired comparisons (Holm across its rows)
    selection = json.loads(layout.selection_file.read_text())
    assert selection["runs"]["token_dropout_matched"]["role"]["rate_matched_to"] == "entrodrop"
    assert selection["runs"]["token_dropout_matched"]["seeds"]["0"]["resolved"]["gamma_max"] == 0.0523
    assert [r["run"] for r in selection["comparisons"]["tables"]["table3"]["rows"]] == [
        "token_dropout", "token_dropout_matched", "entrodrop"]
