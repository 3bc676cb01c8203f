"""Build (once) and locate the embedded tiny world: corpora, tokenizer, base model, held-out benchmarks.

    <root>/world.json                      marker: config hash + generator version + build stats (written last)
    <root>/corpora/<source>.jsonl          tiny_math, tiny_code, tiny_general training corpora
    <root>/benchmarks/<name>.jsonl         held-out tiny_math (GSM8K), tiny_code (evalplus), tiny_general (MC)
    <root>/tokenizer/                      PreTrainedTokenizerFast
    <root>/base_model/                     Qwen3ForCausalLM (safetensors) + tokenizer

Paths inside it come from `paths.WorldPaths`. The whole folder is built under a temp name and renamed into place, so a crash never leaves half a world.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from pathlib import Path

from entrodrop_bench.atomic import atomic_dir, json_sha256, write_json
from entrodrop_bench.config import TinyWorldConfig
from entrodrop_bench.errors import DataError
from entrodrop_bench.paths import WorldPaths
from entrodrop_bench.prepare.tiny import benchmarks as bench
from entrodrop_bench.prepare.tiny.corpora import (
    code_function,
    general_doc,
    math_problem,
    split_entities,
    town_products,
    world_entities,
)
from entrodrop_bench.prepare.tiny.prebuilt import PREBUILT_ENV, SHIPPED_STATS, copy_prebuilt, find_prebuilt

# Bump whenever a generator changes what it writes: worlds built by an older version are rebuilt.
GENERATOR_VERSION = 2
SOURCES = ("tiny_math", "tiny_code", "tiny_general")
# The base model sees the format mostly on 1-step problems; the target corpus is mostly multi-step.
PRETRAIN_MATH_STEP_WEIGHTS = {1: 0.6, 2: 0.4}
TOKENIZER_GENERAL_DOCS = 5000


class TinyWorld(WorldPaths):
    """Paths into a tiny world (`paths.WorldPaths`), refusing corpora and benchmarks the world does not have."""

    def corpus_file(self, source: str) -> Path:
        if source not in SOURCES:
            raise DataError(f"tiny corpus {source!r} does not exist (expected one of {', '.join(SOURCES)})")
        return super().corpus_file(source)

    def benchmark_file(self, name: str) -> Path:
        if name not in SOURCES:
            raise DataError(f"tiny benchmark {name!r} does not exist (expected one of {', '.join(SOURCES)})")
        return super().benchmark_file(name)


def world_hash(cfg: TinyWorldConfig) -> str:
    ident = {"cfg": cfg.model_dump(mode="json"), "generator_version": GENERATOR_VERSION}
    return json_sha256(ident, length=16)


def _is_built(world: TinyWorld, key: str) -> bool:
    try:
        marker = json.loads(world.marker_file.read_text())
    except (OSError, ValueError):
        return False
    files = [world.corpus_file(s) for s in SOURCES] + [world.benchmark_file(s) for s in SOURCES]
    return (
        marker.get("world_hash") == key
        and marker.get("generator_version") == GENERATOR_VERSION
        and all(f.is_file() for f in files)
        and world.base_model_config.is_file()
    )


def build_world(cfg: TinyWorldConfig, root: Path, *, log: Callable[[str], None] = print) -> TinyWorld:
    """The world for `cfg` under `root`: returned at once when already built for this cfg, else (re)built."""
    root = Path(root)
    world, key = TinyWorld(root), world_hash(cfg)
    if _is_built(world, key):
        return world
    log(f"tiny world: building {root} (seed {cfg.seed}, target {cfg.target_domain})")
    tic = time.perf_counter()
    shipped = find_prebuilt(key, log)
    with atomic_dir(root) as tmp:
        building = TinyWorld(tmp)
        stats = _build_into(building, cfg, log, shipped)
        stats["build_seconds"] = round(time.perf_counter() - tic, 1)
        write_json(building.marker_file, {"world_hash": key, "generator_version": GENERATOR_VERSION, "config": cfg.model_dump(mode="json"), **stats})
    log(f"tiny world: built in {time.perf_counter() - tic:.0f}s")
    return world


def _rng(cfg: TinyWorldConfig, stream: str) -> random.Random:
    return random.Random(f"{cfg.seed}:{stream}")


def _write_jsonl(path: Path, records: list[dict]) -> None:
    from entrodrop_bench.atomic import write_text

    write_text(path, "".join(json.dumps(r) + "\n" for r in records))


def _unique(make: Callable[[], object], key: Callable[[object], str], n: int, exclude: set[str]) -> list:
    """n items from `make` whose keys are distinct and not in `exclude`."""
    out, seen = [], set(exclude)
    for _ in range(n * 200):
        if len(out) == n:
            return out
        item = make()
        if key(item) not in seen:
            seen.add(key(item))
            out.append(item)
    raise DataError(f"tiny world: the generator ran out of distinct items ({len(out)} of {n}); lower the requested count")


def _build_into(world: TinyWorld, cfg: TinyWorldConfig, log: Callable[[str], None],
                shipped: tuple[WorldPaths, dict] | None = None) -> dict:
    """Every file of the world; with `shipped` (`prebuilt.find_prebuilt`), its tokenizer and base model are copied
    from there instead of trained (the rest is generated either way, and uses that tokenizer)."""
    entities = world_entities(cfg.seed)
    towns = town_products(cfg.seed, entities)

    # Benchmarks are drawn first; every training stream then excludes their items.
    math_bench = bench.math_benchmark(_rng(cfg, "bench:math"), cfg.n_benchmark, set())
    code_bench = bench.code_benchmark(_rng(cfg, "bench:code"), cfg.n_benchmark, set())
    bench_questions = {b["question"] for b in math_bench}
    bench_prompts = {b["prompt"] for b in code_bench}

    r = _rng(cfg, "corpus:math")
    math_docs = _unique(lambda: math_problem(r), lambda p: p.question, cfg.n_target_docs, bench_questions)
    r = _rng(cfg, "corpus:code")
    code_docs = _unique(lambda: code_function(r), lambda f: f.prompt, cfg.n_target_docs, bench_prompts)
    r = _rng(cfg, "corpus:general")
    replayed, held_back = split_entities(entities)
    general_docs = [general_doc(r, replayed, towns) for _ in range(cfg.n_general_docs)]

    if shipped is not None:
        copy_prebuilt(shipped[0], world)
        from entrodrop_bench.prepare.tiny.tokenizer import load_tokenizer

        tokenizer = load_tokenizer(world.tokenizer_dir)
    else:
        tokenizer = _tokenizer(world, cfg, math_docs, code_docs, general_docs)
    pretrain_texts = _pretrain_texts(cfg, tokenizer, entities, towns, bench_questions | {p.question for p in math_docs},
                                     bench_prompts | {f.prompt for f in code_docs})

    general_text = "\n".join(general_docs) + "\n" + "\n".join(pretrain_texts["general"])
    general_bench = bench.general_benchmark(_rng(cfg, "bench:general"), cfg.n_benchmark, held_back, general_text)
    for item in code_bench:
        bench.run_code_item(item)  # a canonical solution that fails its own tests is a generator bug

    _write_jsonl(world.corpus_file("tiny_math"), [p.record() for p in math_docs])
    _write_jsonl(world.corpus_file("tiny_code"), [f.record() for f in code_docs])
    _write_jsonl(world.corpus_file("tiny_general"), [{"text": t} for t in general_docs])
    _write_jsonl(world.benchmark_file("tiny_math"), math_bench)
    _write_jsonl(world.benchmark_file("tiny_code"), code_bench)
    _write_jsonl(world.benchmark_file("tiny_general"), general_bench)

    if shipped is not None:
        log(f"tiny world: base model and tokenizer from the shipped copy ({shipped[0].root.name}, built on {shipped[1].get('built_on')}); "
            f"{PREBUILT_ENV}=0 pre-trains them here instead")
        stats = {k: shipped[1].get(k) for k in SHIPPED_STATS} | {"base_model": "shipped", "shipped_built_on": shipped[1].get("built_on")}
    else:
        stats = _base_model(world, cfg, tokenizer, pretrain_texts, log)
    stats["entities"] = len(entities)
    return stats


def _tokenizer(world: TinyWorld, cfg: TinyWorldConfig, math_docs, code_docs, general_docs):
    from entrodrop_bench.prepare.tiny.tokenizer import save_tokenizer, train_tokenizer

    texts = [p.text for p in math_docs] + [f.text for f in code_docs] + general_docs[:TOKENIZER_GENERAL_DOCS]
    tokenizer = train_tokenizer(texts, cfg.vocab_size)
    save_tokenizer(tokenizer, world.tokenizer_dir)
    return tokenizer


def _fill(tokenizer, make: Callable[[], str], n_tokens: int) -> list[str]:
    """Generated documents until they hold n_tokens tokens (eos included)."""
    texts, count = [], 0
    while count < n_tokens:
        batch = [make() for _ in range(256)]
        for text, ids in zip(batch, tokenizer(batch, add_special_tokens=False)["input_ids"]):
            if count >= n_tokens:
                break
            texts.append(text)
            count += len(ids) + 1
    return texts


def _pretrain_texts(cfg: TinyWorldConfig, tokenizer, entities, towns, math_excluded: set[str], code_excluded: set[str]) -> dict[str, list[str]]:
    """Fresh general text plus a little domain-format text: separate from every corpus doc and benchmark item."""
    n_domain = int(round(cfg.pretrain_tokens * cfg.pretrain_domain_fraction))
    r_gen, r_dom = _rng(cfg, "pretrain:general"), _rng(cfg, "pretrain:domain")
    general = _fill(tokenizer, lambda: general_doc(r_gen, entities, towns), cfg.pretrain_tokens - n_domain)

    def domain_doc() -> str:
        while True:
            if cfg.target_domain == "math":
                p = math_problem(r_dom, PRETRAIN_MATH_STEP_WEIGHTS)
                if p.question not in math_excluded:
                    return p.text
            else:
                f = code_function(r_dom)
                if f.prompt not in code_excluded:
                    return f.text

    domain = _fill(tokenizer, domain_doc, n_domain) if n_domain > 0 else []
    return {"general": general, "domain": domain}


def _base_model(world: TinyWorld, cfg: TinyWorldConfig, tokenizer, texts: dict[str, list[str]], log: Callable[[str], None]) -> dict:
    from entrodrop_bench.prepare.tiny.base_model import PRETRAIN_SEQ_LEN, make_model, pack, pretrain

    model = make_model(tokenizer, cfg.hidden_size, cfg.num_layers, cfg.num_heads, cfg.seed)
    docs = tokenizer(texts["general"] + texts["domain"], add_special_tokens=False)["input_ids"]
    rows = pack(docs, PRETRAIN_SEQ_LEN, tokenizer.eos_token_id)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"tiny world: pre-training a {n_params / 1e6:.2f}M-parameter base model on {rows.numel():,} tokens")
    tic = time.perf_counter()
    losses = pretrain(model, rows, seed=cfg.seed, log=log) if len(rows) else []
    model.save_pretrained(str(world.base_model_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(world.base_model_dir))
    return {
        "n_params": n_params,
        "vocab_size": len(tokenizer),
        "pretrain_tokens": int(rows.numel()),
        "pretrain_seconds": round(time.perf_counter() - tic, 1),
        "pretrain_final_loss": round(float(sum(losses[-20:]) / max(1, len(losses[-20:]))), 4) if losses else None,
    }
