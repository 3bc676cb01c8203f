"""A fast CLI: loading a config, `plan`, `status`, `config`, `benchmarks` and `--help` import neither torch nor a
plugin that the config does not name (the registry looks a plugin up by name; plugins import torch on first use).
Checked on what each command imports, in a fresh interpreter; the start-up time itself is in `make bench`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from entrodrop_bench.paths import CONFIGS_DIR, PROJECT_ROOT

FIXTURES = Path(__file__).parent / "fixtures_thirdparty"
PROBE = """
import contextlib, io, json, sys
from entrodrop_bench.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    try:
        rc = main(sys.argv[1:])
    except SystemExit as exc:
        rc = exc.code
heavy = [m for m in ("torch", "transformers", "lm_eval", "matplotlib", "my_reg_plugin") if m in sys.modules]
print(json.dumps({"rc": rc, "heavy": heavy, "baselines": sorted(m for m in sys.modules if m.startswith("baselines."))}))
"""


def _probe(*argv: str) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), str(FIXTURES)])}
    proc = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, env=env, cwd=PROJECT_ROOT,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("argv", [
    ["--help"],
    ["plan", str(CONFIGS_DIR / "qwen3-0.6b-math.yaml")],
    ["config", str(CONFIGS_DIR / "qwen3-0.6b-math.yaml")],
    ["status", str(CONFIGS_DIR / "tiny.yaml")],
    ["benchmarks", str(CONFIGS_DIR / "tiny.yaml")],
], ids=lambda a: a[0])
def test_read_only_commands_import_no_torch(argv):
    found = _probe(*argv)
    assert found["rc"] == 0
    # a third-party plugin is on the path (its entry point is listed) but the config does not name it: not imported
    assert found["heavy"] == [], f"{argv[0]} imported {found['heavy']}"


def test_a_config_imports_only_the_plugins_it_names():
    found = _probe("plan", str(CONFIGS_DIR / "qwen3-0.6b-math.yaml"))
    names = {"baselines." + m for m in ("plain", "weight_decay", "hidden_dropout", "neftune", "token_dropout", "entrodrop")}
    assert set(found["baselines"]) <= names | {"baselines.common", "baselines.masking", "baselines.online_signal"}
    one = _probe("config", str(CONFIGS_DIR / "tiny.yaml"), "methods={plain: {plugin: plain}}", "eval.domains={math: [tiny_math]}",
                 "eval.lm_eval_tasks=[tiny_math]")
    assert one["rc"] == 0 and one["baselines"] == ["baselines.plain"], one
