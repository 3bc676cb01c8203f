"""The embedded tiny world: deterministic, reusable, loadable, schema-valid and disjoint from training data."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from entrodrop_bench.config import TinyWorldConfig
from entrodrop_bench.errors import DataError
from entrodrop_bench.prepare.tiny import SOURCES, TinyWorld, build_world
from entrodrop_bench.prepare.tiny.corpora import split_entities, world_entities
from entrodrop_bench.prepare.tiny.eval_sets import run_code_item

SMALL = {
    "seed": 7,
    "n_target_docs": 60,
    "n_general_docs": 1500,
    "n_benchmark": 25,
    "vocab_size": 400,
    "hidden_size": 32,
    "num_layers": 2,
    "num_heads": 4,
    "pretrain_tokens": 6000,
    "pretrain_domain_fraction": 0.2,
}
GENERATED = [f"corpora/{s}.jsonl" for s in SOURCES] + [f"benchmarks/{s}.jsonl" for s in SOURCES]


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="session")
def small_cfg() -> TinyWorldConfig:
    return TinyWorldConfig(**SMALL)


@pytest.fixture(scope="session")
def world(small_cfg, tmp_path_factory) -> TinyWorld:
    import torch

    torch.set_num_threads(1)
    return build_world(small_cfg, tmp_path_factory.mktemp("world") / "world", log=lambda _: None)


def test_layout_and_marker(world, small_cfg):
    for rel in GENERATED:
        assert (world.root / rel).is_file(), rel
    marker = json.loads(world.marker_file.read_text())
    assert marker["config"] == small_cfg.model_dump(mode="json")
    assert not [p for p in world.root.parent.iterdir() if p.name.endswith(".partial")]
    with pytest.raises(DataError, match="tiny_physics"):
        world.corpus_file("tiny_physics")


def test_second_build_does_no_work(world, small_cfg):
    before = {rel: (world.root / rel).stat().st_mtime_ns for rel in [*GENERATED, "world.json"]}
    logs: list[str] = []
    tic = time.perf_counter()
    again = build_world(small_cfg, world.root, log=logs.append)
    assert time.perf_counter() - tic < 0.5
    assert again == world and logs == []
    assert {rel: (world.root / rel).stat().st_mtime_ns for rel in before} == before


def test_same_seed_same_bytes_and_changed_config_rebuilds(world, small_cfg, tmp_path):
    other = tmp_path / "world"
    build_world(small_cfg.model_copy(update={"seed": 8}), other, log=lambda _: None)
    differs = [rel for rel in GENERATED if (other / rel).read_bytes() != (world.root / rel).read_bytes()]
    assert differs, "a different seed produced an identical world"
    logs: list[str] = []
    build_world(small_cfg, other, log=logs.append)  # cfg changed back: must rebuild, not reuse
    assert logs and "building" in logs[0]
    for rel in GENERATED:
        assert (other / rel).read_bytes() == (world.root / rel).read_bytes(), rel


def test_tokenizer_round_trips_and_splits_digits(world):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(world.tokenizer_dir)
    assert tok.pad_token_id is not None and tok.eos_token_id is not None and tok.pad_token_id != tok.eos_token_id
    assert tok.padding_side == "left"
    texts = [r["text"] for s in SOURCES for r in _read(world.corpus_file(s))[:20]]
    texts += [r["prompt"] + r["canonical_solution"] for r in _read(world.benchmark_file("tiny_code"))[:5]]
    texts.append("Numbers 12345 and 907, unicode ü and    spaces\n\tend")
    for text in texts:
        assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
    digits = [t for t in tok.tokenize("x 12345 = 67") if any(c.isdigit() for c in t)]
    assert digits == list("1234567")


def test_base_model_loads_and_generates(world):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert (world.base_model_dir / "model.safetensors").is_file()
    tok = AutoTokenizer.from_pretrained(world.base_model_dir)
    model = AutoModelForCausalLM.from_pretrained(world.base_model_dir)
    assert model.config.model_type == "qwen3"
    assert model.config.vocab_size == len(tok)
    assert model.config.pad_token_id == tok.pad_token_id == model.generation_config.pad_token_id
    assert model.config.eos_token_id == tok.eos_token_id == model.generation_config.eos_token_id
    enc = tok(["Ada has 3 apples.", "The"], return_tensors="pt", padding=True)
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=5, do_sample=False)
    assert out.shape[0] == 2 and out.shape[1] > enc["input_ids"].shape[1]


def test_corpora_records(world, small_cfg):
    math_docs = _read(world.corpus_file("tiny_math"))
    code_docs = _read(world.corpus_file("tiny_code"))
    general = _read(world.corpus_file("tiny_general"))
    assert len(math_docs) == len(code_docs) == small_cfg.n_target_docs
    assert len(general) == small_cfg.n_general_docs
    assert len({d["text"] for d in general}) == len(general), "general docs repeat"
    for d in math_docs:
        assert d["text"] == d["question"] + "\n" + d["answer"]
        assert re.search(r"\n#### -?\d+$", d["answer"])
    for d in code_docs:
        assert d["text"].startswith(d["prompt"] + d["solution"])
        exec(d["text"], {})  # the doc's own asserts are its unit tests


def _check_math_answer(answer: str) -> None:
    *steps, final = answer.split("\n")
    value = None
    for step in steps:
        lhs, rhs = step.split(" = ")
        assert eval(lhs) == int(rhs), step  # noqa: S307 - our own generated arithmetic
        value = int(rhs)
    assert final == f"#### {value}"


def test_benchmarks_schema(world, small_cfg):
    n = small_cfg.n_benchmark
    math_items = _read(world.benchmark_file("tiny_math"))
    assert len(math_items) == n
    for item in math_items:
        assert set(item) == {"question", "answer"}
        _check_math_answer(item["answer"])
    general = _read(world.benchmark_file("tiny_general"))
    assert len(general) == n and len({g["id"] for g in general}) == n
    for item in general:
        assert set(item) == {"id", "question", "choices", "label"}
        assert len(item["choices"]) == 4 and len(set(item["choices"])) == 4
        assert 0 <= item["label"] < 4
    labels = {g["label"] for g in general}
    assert len(labels) > 1, "the right answer is always in the same position"
    code = _read(world.benchmark_file("tiny_code"))
    assert [c["task_id"] for c in code] == [f"HumanEval/{i}" for i in range(n)]
    required = {"task_id", "prompt", "entry_point", "canonical_solution", "base_input", "plus_input", "atol", "contract", "test"}
    for item in code:
        assert required <= set(item)
        assert item["prompt"].startswith(f"def {item['entry_point']}(")
        assert all(isinstance(a, list) for a in item["base_input"] + item["plus_input"])


def test_code_canonical_solutions_pass(world):
    for item in _read(world.benchmark_file("tiny_code")):
        run_code_item(item)
        broken = {**item, "canonical_solution": "    return None\n"}
        with pytest.raises(AssertionError):
            run_code_item(broken)


def test_benchmarks_disjoint_from_training(world):
    train_questions = {d["question"] for d in _read(world.corpus_file("tiny_math"))}
    assert not train_questions & {b["question"] for b in _read(world.benchmark_file("tiny_math"))}
    train_prompts = {d["prompt"] for d in _read(world.corpus_file("tiny_code"))}
    assert not train_prompts & {b["prompt"] for b in _read(world.benchmark_file("tiny_code"))}
    general_text = "\n".join(d["text"] for d in _read(world.corpus_file("tiny_general")))
    for item in _read(world.benchmark_file("tiny_general")):
        assert f"{item['question']} {item['choices'][item['label']]}" not in general_text
        assert item["question"] not in general_text


def test_general_benchmark_measures_retention(world, small_cfg):
    """tiny_general asks only about entities the base model learned in pre-training and the CPT replay corpus
    never mentions, so its score measures what continual pre-training preserves; each answer is the true fact."""
    entities = world_entities(small_cfg.seed)
    replayed, held_back = split_entities(entities)
    assert replayed and held_back and not set(replayed) & set(held_back)
    general_text = "\n".join(d["text"] for d in _read(world.corpus_file("tiny_general")))
    kind_items = [g for g in _read(world.benchmark_file("tiny_general")) if "is a kind of" in g["question"]]
    assert kind_items
    for item in kind_items:
        entity = item["question"].split("the ")[-1].split(" is a kind of")[0]
        assert entity in held_back, entity
        assert re.search(rf"\b{entity}\b", general_text) is None, f"{entity} leaks into the CPT corpus"
        assert item["choices"][item["label"]].rstrip(".") == held_back[entity]
