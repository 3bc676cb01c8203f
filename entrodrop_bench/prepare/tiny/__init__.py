"""The embedded tiny preset world: corpora, tokenizer, base model and benchmarks, generated offline from a seed."""

from entrodrop_bench.prepare.tiny.world import GENERATOR_VERSION, SOURCES, TinyWorld, build_world

__all__ = ["GENERATOR_VERSION", "SOURCES", "TinyWorld", "build_world"]
