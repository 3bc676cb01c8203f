"""The paper's phenomenon on the real tiny preset (`configs/tiny.yaml`, full size): multi-epoch CPT overfits,
the loss rise comes from high-entropy tokens, and EntroDrop slows it. A scientific regression test: if a
change to the world, the trainer or a plugin erases the effect, the demo stops being informative.

Slow (~1.5 min on 2 idle CPU cores): it trains `plain`, then `entrodrop`, on the full tiny world (its base model is
the shipped one) at the demo's settings.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from entrodrop_bench.artifacts import ValCurve
from entrodrop_bench.paths import CONFIGS_DIR, Layout

pytestmark = pytest.mark.slow

METHODS = "methods={plain: {plugin: plain}, entrodrop: {plugin: entrodrop, params: {gamma_max: 0.1, j0: auto}}}"


@pytest.fixture(scope="module")
def curves(tmp_path_factory) -> dict[str, list[dict]]:
    tmp = tmp_path_factory.mktemp("phenomenon")
    cmd = [sys.executable, "-m", "entrodrop_bench.cli", "train", str(CONFIGS_DIR / "tiny.yaml"), METHODS,
           f"output.runs_dir={tmp / 'runs'}", f"output.results_dir={tmp / 'results'}", "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    layout = Layout(tmp / "runs", tmp / "results")
    return {run: [p.model_dump() for p in ValCurve.read(ValCurve.path(layout, run, 0)).points] for run in ("plain", "entrodrop")}


def test_plain_overfits_after_a_few_epochs(curves):
    plain = curves["plain"]
    best = min(plain, key=lambda p: p["overall"])
    assert 0 < best["target_epoch"] <= 15, f"minimum at epoch {best['target_epoch']}: no early optimum"
    assert plain[-1]["overall"] > 1.15 * best["overall"], "validation loss barely rises: degradation not visible"


def test_the_rise_comes_from_high_entropy_tokens(curves):
    plain = curves["plain"]
    best = min(plain, key=lambda p: p["overall"])
    high_rise = plain[-1]["high_entropy"] - best["high_entropy"]
    low_rise = plain[-1]["low_entropy"] - best["low_entropy"]
    assert high_rise > 0.2 and abs(low_rise) < 0.05, (high_rise, low_rise)


def test_entrodrop_slows_the_degradation(curves):
    plain, entro = curves["plain"][-1], curves["entrodrop"][-1]
    assert entro["overall"] < plain["overall"] - 0.02, (entro["overall"], plain["overall"])
    assert entro["high_entropy"] < plain["high_entropy"], (entro["high_entropy"], plain["high_entropy"])
