"""Every input must have a reachable source before any compute: checked offline, naming the key to set."""

from __future__ import annotations

import pytest
import yaml

from entrodrop_bench.cli import main
from entrodrop_bench.config import load_config
from entrodrop_bench.orchestrate.sources import in_local_cache, is_gated, source_problems
from entrodrop_bench.paths import CONFIGS_DIR


def _write(tmp_path, data) -> str:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_unreachable_benchmark_fails_before_training_and_names_the_key(mini_config, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = mini_config().model_dump(mode="json")
    # allow_weak_isolation: on a machine without bubblewrap the code-evaluation refusal would come first.
    data["eval"].update(lm_eval_tasks=["gsm8k"], evalplus_datasets=["humaneval"], domains={"math": ["gsm8k", "humaneval"]},
                        allow_weak_isolation=True)
    argv = ["train", _write(tmp_path, data), "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "eval.data_overrides.gsm8k" in err and "'openai/gsm8k'" in err and "hub is off" in err
    assert "eval.data_overrides.humaneval" in err and "evalplus-schema" in err
    runs = tmp_path / "runs"
    assert not (runs / "train").exists() and not (runs / "prepared.json").exists(), "nothing may run before the check"


def test_a_local_override_or_cache_makes_the_benchmark_reachable(mini_config, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_DATASETS_CACHE", raising=False)
    local = tmp_path / "gsm8k.jsonl"
    local.write_text('{"question": "1+1?", "answer": "#### 2"}\n')
    config = mini_config(eval={"lm_eval_tasks": ["gsm8k", "hellaswag"], "data_overrides": {"gsm8k": str(local)},
                               "domains": {"math": ["gsm8k", "hellaswag"]}})
    problems = source_problems(config)
    assert len([p for p in problems if "hellaswag" in p]) == 1 and not any("gsm8k" in p for p in problems)
    assert not in_local_cache("Rowan/hellaswag", "dataset")
    (tmp_path / "hf" / "hub" / "datasets--Rowan--hellaswag").mkdir(parents=True)
    assert in_local_cache("Rowan/hellaswag", "dataset")
    assert source_problems(config) == []


def test_gated_sources_need_a_token_when_online(monkeypatch, tmp_path):
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HF_TOKEN_PATH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    config = load_config(CONFIGS_DIR / "llama3.1-8b-math.yaml")
    problems = source_problems(config)
    gated = [p for p in problems if "gated" in p]
    assert any(p.startswith("model.name_or_path: model 'meta-llama/Llama-3.1-8B-Instruct'") and "HF_TOKEN" in p for p in gated)
    assert any(p.startswith("data.general.source: dataset 'BAAI/Infinity-Instruct'") and "data.general.path" in p for p in gated)
    assert not any("NuminaMath" in p for p in problems), "an open dataset needs no token"
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "token").write_text("hf_example\n")  # what `hf auth login` writes
    assert [p for p in source_problems(config) if "gated" in p] == []
    monkeypatch.setenv("HF_TOKEN", "hf_example")
    (tmp_path / "hf" / "token").unlink()
    assert [p for p in source_problems(config) if "gated" in p] == []


def test_code_preset_without_code_data_fails_up_front_even_online(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_TOKEN", "hf_example")
    problems = source_problems(load_config(CONFIGS_DIR / "qwen3-0.6b-code.yaml"))
    assert {p.split(":")[0] for p in problems} == {f"eval.data_overrides.{b}" for b in ("humaneval", "mbpp", "livecodebench")}


@pytest.mark.parametrize("name", ["tiny.yaml", "tiny-code.yaml"])
def test_tiny_presets_need_nothing_from_the_hub(name, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert source_problems(load_config(CONFIGS_DIR / name)) == []


def test_gated_list():
    assert is_gated("meta-llama/Llama-3.1-8B") and is_gated("BAAI/Infinity-Instruct") and not is_gated("Qwen/Qwen3-0.6B-Base")
