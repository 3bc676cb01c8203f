"""The documented make targets expand to the commands the README promises (`make -n`, nothing runs)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from entrodrop_bench.paths import PROJECT_ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="no make")


def _dry_run(*args: str) -> str:
    # `-W` marks the install stamp as fresh so that the dry run never plans a reinstall.
    proc = subprocess.run(["make", "-n", "-W", ".venv/.installed", *args], cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_demo_is_table1_on_the_tiny_preset():
    out = _dry_run("demo")
    assert "reproduce-table1 PRESET=tiny" in out


@pytest.mark.parametrize(
    ("table", "configs"),
    [("1", ["qwen3-0.6b-math", "qwen3-1.7b-math", "llama3.1-8b-math"]), ("2", ["qwen3-0.6b-code"]),
     ("3", ["qwen3-0.6b-math-ablations"]), ("4", ["qwen3-0.6b-math-ablations"])],
)
def test_reproduce_targets_run_and_publish_every_config(table, configs):
    real = _dry_run(f"reproduce-table{table}")
    for name in configs:
        assert f"configs/{name}.yaml" in real
    assert "HF_HUB_OFFLINE" not in real, "real presets need the hub"
    for var in ("HF_HOME=", "XDG_CACHE_HOME=", "NLTK_DATA="):
        assert var not in real, f"real presets must use the user's own {var[:-1]} (hub cache, token)"
    tiny = _dry_run(f"reproduce-table{table}", "PRESET=tiny")
    assert "configs/tiny" in tiny and "HF_HUB_OFFLINE=1" in tiny
    assert f"HF_HOME={PROJECT_ROOT}/.cache/hf" in tiny and f"XDG_CACHE_HOME={PROJECT_ROOT}/.cache" in tiny
    for out in (real, tiny):
        assert "entrodrop-bench run $cfg" in out and "leaderboard publish $out --into $out/leaderboard.json" in out


@pytest.mark.parametrize("target", ["test", "test-slow", "bench"])
def test_tests_and_bench_keep_caches_in_the_project(target):
    out = _dry_run(target)
    assert f"HF_HOME={PROJECT_ROOT}/.cache/hf" in out and "HF_HUB_OFFLINE=1" in out


def test_makefile_exports_no_cache_location_to_every_recipe():
    """A global `export HF_HOME` would hide a user's own hub cache and token from the real presets."""
    text = (PROJECT_ROOT / "Makefile").read_text()
    for var in ("HF_HOME", "XDG_CACHE_HOME", "NLTK_DATA"):
        assert f"export {var}" not in text


def test_setup_installs_system_packages_through_the_script_ci_uses():
    assert ".ci/system-deps.sh" in _dry_run("setup")
    assert ".ci/system-deps.sh" in (PROJECT_ROOT / ".ci" / "run").read_text()


def test_system_deps_say_why_and_go_on_where_they_cannot_install(tmp_path):
    """A fresh machine without apt-get (nor bubblewrap, chromium, SLURM): the script explains and succeeds."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "id", "mktemp", "tail", "sed", "rm"):
        if shutil.which(tool):
            (bin_dir / tool).symlink_to(shutil.which(tool))
    proc = subprocess.run([str(bin_dir / "bash"), str(PROJECT_ROOT / ".ci" / "system-deps.sh")],
                          env={"PATH": str(bin_dir)}, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    # slurm-wlm and munge follow where /usr/sbin lacks them too
    assert "cannot install bubblewrap chromium" in proc.stdout and "no apt-get" in proc.stdout and "skip" in proc.stdout


def test_study_runs_the_seeds_study_offline_and_publishes_its_leaderboard():
    out = _dry_run("study")
    assert "entrodrop-bench run configs/tiny-study.yaml" in out and "HF_HUB_OFFLINE=1" in out
    assert f"HF_HOME={PROJECT_ROOT}/.cache/hf" in out
    assert "leaderboard publish results/tiny-study --into results/tiny-study/leaderboard.json" in out
    assert ".PHONY:" in (PROJECT_ROOT / "Makefile").read_text() and " study " in (PROJECT_ROOT / "Makefile").read_text()


def test_vllm_tests_run_in_their_own_environment_set_up_from_the_project_and_ci_can_skip_them():
    out = _dry_run("test-vllm")
    assert ".ci/vllm-env.sh .venv-vllm" in out and ".venv-vllm/bin/python -m pytest -q -m vllm" in out
    assert f"HF_HOME={PROJECT_ROOT}/.cache/hf" in out and "HF_HUB_OFFLINE=1" in out
    ci = (PROJECT_ROOT / ".ci" / "run").read_text()
    assert "make test-vllm" in ci and "ENTRODROP_SKIP_VLLM" in ci
    assert ".venv-vllm" in (PROJECT_ROOT / ".gitignore").read_text().split()


def test_publishing_targets_check_the_work_tree_first_and_pass_allow_dirty():
    for target in ("reproduce-table1", "study"):
        out = _dry_run(target, "PRESET=tiny")
        assert out.index("-m entrodrop_bench.provenance") < out.index("entrodrop-bench run"), target
        assert "--allow-dirty" not in out
        assert _dry_run(target, "PRESET=tiny", "ALLOW_DIRTY=1").count("--allow-dirty") == 2, target
