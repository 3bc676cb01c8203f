"""Shared fixtures. Everything offline: caches inside pytest temp dirs, hub access off."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

REPO = Path(__file__).resolve().parent.parent
SHARED_BENCHMARKS = REPO.parent / "shared" / "benchmarks"


@pytest.fixture(autouse=True, scope="session")
def _isolated_caches(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    os.environ["HF_HOME"] = str(cache / "hf")
    os.environ["HF_DATASETS_CACHE"] = str(cache / "hf" / "datasets")
    yield


def _math_doc(rng: random.Random) -> str:
    a, b = rng.randint(2, 20), rng.randint(2, 20)
    return f"Tom has {a} apples and buys {b} more. How many apples?\n{a} + {b} = {a + b}\n#### {a + b}"


def _general_doc(rng: random.Random) -> str:
    words = ["river", "stone", "market", "winter", "song", "garden", "lamp", "train", "cloud", "bread"]
    return " ".join(f"The {rng.choice(words)} was {rng.choice(['quiet', 'bright', 'old', 'new'])}." for _ in range(rng.randint(3, 8)))


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture(scope="session")
def mini_assets(tmp_path_factory) -> dict[str, Path]:
    """A locally trained tokenizer, a random ~100k-parameter Qwen3 base model and two small local corpora."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

    root = tmp_path_factory.mktemp("mini")
    rng = random.Random(0)
    target = [_math_doc(rng) for _ in range(60)]
    general = [_general_doc(rng) for _ in range(400)]
    raw = Tokenizer(models.BPE(unk_token=None))
    raw.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)])
    raw.decoder = decoders.ByteLevel()
    raw.train_from_iterator(target + general, trainers.BpeTrainer(vocab_size=300, special_tokens=["<|pad|>", "<|eos|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, pad_token="<|pad|>", eos_token="<|eos|>", padding_side="left")
    model_dir = root / "base_model"
    tok.save_pretrained(model_dir)
    torch.manual_seed(0)
    config = Qwen3Config(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, max_position_embeddings=512, pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id, bos_token_id=tok.eos_token_id, tie_word_embeddings=True,
    )
    Qwen3ForCausalLM(config).save_pretrained(model_dir)
    return {
        "model": model_dir,
        "target": write_jsonl(root / "target.jsonl", [{"text": t} for t in target]),
        "general": write_jsonl(root / "general.jsonl", [{"text": t} for t in general]),
    }


@pytest.fixture
def mini_config(mini_assets, tmp_path):
    """A complete, fast experiment config over the mini assets; tests override what they need."""
    from entrodrop_bench.config import ExperimentConfig, check_config

    def make(**sections) -> ExperimentConfig:
        data = {
            "name": "mini",
            "model": {"name_or_path": str(mini_assets["model"])},
            "data": {
                "target": {"source": "json", "path": str(mini_assets["target"])},
                "general": {"source": "json", "path": str(mini_assets["general"])},
                "token_budget": 8192,
                "seq_len": 64,
                "validation_fraction": 0.2,
            },
            "train": {"lr": 3e-3, "global_batch_tokens": 512, "micro_batch_size": 4, "checkpoint_every_epochs": 4, "threads": 1},
            "methods": {"plain": {"plugin": "plain"}},
            "eval": {"lm_eval_tasks": ["tiny_math"], "domains": {"math": ["tiny_math"]}},
            "output": {"runs_dir": str(tmp_path / "runs"), "results_dir": str(tmp_path / "results")},
        }
        for key, value in sections.items():
            data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) and key != "methods" else value
        config = ExperimentConfig.model_validate(data)
        check_config(config)
        return config

    return make
