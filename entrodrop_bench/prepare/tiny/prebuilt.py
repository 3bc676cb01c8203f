"""The tiny world's base model and tokenizer, shipped with the project so that a cold demo need not pre-train them.

Pre-training the base model is most of a cold world build (about 80-105 s of one core), and the only part of it
whose result depends on the machine: float rounding differs between CPUs, so two machines built different base
models and reported different numbers from the same code. A shipped copy (`paths.prebuilt_world_dir`, keyed by
the world hash) is used instead when it exists, is intact (every file's sha256 as recorded) and
`ENTRODROP_TINY_PREBUILT` is not `0`; everything else in the world (corpora, benchmarks) is still generated,
which is fast and exact on every machine. The build itself stays: it runs for any other world config, and

    python -m entrodrop_bench.prepare.tiny.prebuilt configs/tiny.yaml

builds the world of a config without the shipped copy and ships its base model and tokenizer (the slow test
`tests/test_tiny_prebuilt.py` checks that the shipped files equal what the build produces on a machine like the
one that built them).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
from pathlib import Path

from entrodrop_bench.atomic import atomic_dir, file_sha256, write_json
from entrodrop_bench.paths import Layout, WorldPaths, prebuilt_world_dir

PREBUILT_ENV = "ENTRODROP_TINY_PREBUILT"
# What a shipped world holds: the two folders the pre-training writes, nothing generated from the seed alone.
SHIPPED_DIRS = ("tokenizer", "base_model")
# The base model's build statistics a world built from the shipped copy reports as its own.
SHIPPED_STATS = ("n_params", "vocab_size", "pretrain_tokens", "pretrain_seconds", "pretrain_final_loss")


def enabled() -> bool:
    return os.environ.get(PREBUILT_ENV, "1") != "0"


def _shipped_files(world: WorldPaths) -> list[Path]:
    return sorted(p for folder in (world.tokenizer_dir, world.base_model_dir) for p in folder.rglob("*") if p.is_file())


def find_prebuilt(world_hash: str, log=print) -> tuple[WorldPaths, dict] | None:
    """The shipped base model and tokenizer of the world `world_hash` and their record, or None (then the world is
    built): none shipped, switched off, or a file missing or changed (said in the log)."""
    if not enabled():
        return None
    shipped = WorldPaths(prebuilt_world_dir(world_hash))
    try:
        record = json.loads(shipped.marker_file.read_text())
    except (OSError, ValueError):
        return None
    files = record.get("files") or {}
    present = {p.relative_to(shipped.root).as_posix(): p for p in _shipped_files(shipped)}
    changed = sorted(rel for rel, sha in files.items() if rel not in present or file_sha256(present[rel]) != sha)
    if not files or changed or set(present) != set(files):
        log(f"tiny world: the shipped base model in {shipped.root} does not match its record "
            f"({', '.join(changed or sorted(set(present) ^ set(files))) or 'no files recorded'}); building it instead")
        return None
    return shipped, record


def copy_prebuilt(shipped: WorldPaths, world: WorldPaths) -> None:
    """The shipped tokenizer and base model into a world being built."""
    shutil.copytree(shipped.tokenizer_dir, world.tokenizer_dir)
    shutil.copytree(shipped.base_model_dir, world.base_model_dir)


def export_prebuilt(world: WorldPaths, world_hash: str) -> Path:
    """Ship `world`'s tokenizer and base model as the prebuilt copy of `world_hash`, with each file's sha256 and
    what built it (its marker's build statistics, the CPU, torch and Python versions)."""
    import torch

    marker = json.loads(world.marker_file.read_text())
    dest = prebuilt_world_dir(world_hash)
    with atomic_dir(dest) as tmp:
        out = WorldPaths(tmp)
        copy_prebuilt(world, out)
        write_json(out.marker_file, {
            "world_hash": world_hash,
            "generator_version": marker["generator_version"],
            "config": marker["config"],
            **{k: marker.get(k) for k in SHIPPED_STATS},
            "built_on": machine(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),  # the vector kernels torch chose there
            "torch": torch.__version__,
            "python": platform.python_version(),
            "files": {p.relative_to(tmp).as_posix(): file_sha256(p) for p in _shipped_files(out)},
        })
    return dest


def machine() -> str:
    """The CPU model (what decides float rounding in the pre-training), as Linux reports it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    import tempfile

    from entrodrop_bench.config import load_config
    from entrodrop_bench.prepare.tiny.world import build_world, world_hash

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m entrodrop_bench.prepare.tiny.prebuilt CONFIG", file=sys.stderr)
        return 2
    config = load_config(args[0])
    if config.tiny is None:
        print(f"{args[0]}: not a tiny-world config (no `tiny:` section)", file=sys.stderr)
        return 2
    os.environ[PREBUILT_ENV] = "0"  # build it here, whatever is shipped
    if config.train.threads:
        import torch

        torch.set_num_threads(config.train.threads)  # as `prepare` builds it (the weights do not depend on it)
    with tempfile.TemporaryDirectory() as tmp:
        world = build_world(config.tiny, Layout(Path(tmp), Path(tmp)).world_dir)
        dest = export_prebuilt(world, world_hash(config.tiny))
    print(f"shipped the base model and tokenizer of world {world_hash(config.tiny)} in {dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
