"""The CLI: --help everywhere, clean one-paragraph errors, --debug tracebacks."""

from __future__ import annotations

import subprocess
import sys

import pytest

from entrodrop_bench.cli import build_parser, main

COMMANDS = ["run", "prepare", "train", "eval", "select", "tables", "figures", "leaderboard", "plugins"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_for_every_command(command, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([command, "--help"])
    assert exc.value.code == 0
    assert "usage: entrodrop-bench" in capsys.readouterr().out


def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "entrodrop_bench.cli", "--help"], capture_output=True, text=True, check=True).stdout
    assert all(c in out for c in COMMANDS)


def test_user_error_is_one_paragraph_without_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmethods: {}\ndata: {token_budget: 0}\n")
    assert main(["prepare", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Invalid config") and "Traceback" not in err and "data.token_budget" in err


def test_debug_shows_traceback(tmp_path):
    from entrodrop_bench.errors import ConfigError

    with pytest.raises(ConfigError):
        main(["--debug", "prepare", str(tmp_path / "absent.yaml")])


def test_plugins_lists_registered_methods(capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    for name in ("plain", "entrodrop", "token_dropout", "neftune", "weight_decay", "hidden_dropout"):
        assert name in out
    # each field with its default, type and description
    assert "    percentile = 0.5  [float]  k of Eq. 2: share of each document's eligible tokens" in out
    assert "    p = 0.1  [float]  Dropout probability on attention and MLP outputs" in out
