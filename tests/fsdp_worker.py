"""One process of a job launched by tests/test_fsdp.py under `accelerate launch --config_file
configs/accelerate/fsdp.yaml` (CPU processes joined over gloo): prepares, trains the jobs it is given through the real
Trainer, and writes what it observed to <out>/rank<r>.json. Not a test file itself (pytest collects test_*.py only).

argv: CONFIG OUT JOBS, JOBS a JSON list of [run, stop_after_step or null, runs_dir or null] (trained in order, in this
one process, as a launched job trains its runs; a job with a stop step followed by the same run resumes it).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch


def main(config_file: str, out: str, jobs: str) -> None:
    import accelerate
    import torch.distributed as dist

    from entrodrop_bench.config import load_config
    from entrodrop_bench.paths import Layout
    from entrodrop_bench.pipeline import stage_prepare
    from entrodrop_bench.prepare.stage import Prepared
    from entrodrop_bench.train.trainer import Trainer

    facts: dict = {"loads": [], "prepared": [], "layer_forwards_training": 0, "micro_batch_forwards": 0}
    load = Prepared.load_base_model

    def counted_load(self):
        model = load(self)
        params = list(model.parameters())
        facts["loads"].append({"devices": sorted({str(p.device) for p in params}), "dtypes": sorted({str(p.dtype) for p in params})})
        return model

    Prepared.load_base_model = counted_load
    prepare = accelerate.Accelerator.prepare

    def observed_prepare(self, *args):
        before = next(o for o in args if isinstance(o, torch.nn.Module))
        dtypes = sorted({str(p.dtype) for p in before.parameters()})  # what this process holds before sharding
        out = prepare(self, *args)
        model = next(o for o in out if isinstance(o, torch.nn.Module))
        fact = {"distributed_type": str(self.distributed_type), "class": type(model).__name__,
                "hf_gradient_checkpointing": bool(getattr(model, "is_gradient_checkpointing", False)),
                "checkpoint_wrappers": sum("CheckpointWrapper" in type(m).__name__ for m in model.modules()),
                "layers": model.config.num_hidden_layers, "dtypes_before_sharding": dtypes}
        state = getattr(model, "_get_fsdp_state", None)
        if state is not None:
            policy = state()._mp_policy
            fact["mp_policy"] = {"param_dtype": str(policy.param_dtype), "reduce_dtype": str(policy.reduce_dtype)}
        facts["prepared"].append(fact)
        return out

    accelerate.Accelerator.prepare = observed_prepare

    def count(module, args):
        # A pre-hook: the backward's recompute stops early (once it has what it needs), so forward hooks miss it.
        name = type(module).__name__
        if name == "Qwen3DecoderLayer" and module.training:
            facts["layer_forwards_training"] += 1
        elif name.endswith("Qwen3ForCausalLM") and module.training:
            facts["micro_batch_forwards"] += 1

    torch.nn.modules.module.register_module_forward_pre_hook(count)
    config = load_config(config_file)
    states = []
    for run, stop, runs_dir in json.loads(jobs):
        cfg = config if runs_dir is None else load_config(config_file, [f"output.runs_dir={runs_dir}"])
        prepared = stage_prepare(cfg, Layout.from_config(cfg), echo=lambda s: None)
        facts["loads"].append("train")  # the loads after this marker are the training run's
        states.append(Trainer(prepared, run, 0, progress=False, stop_after_step=stop).train())
    facts["states"] = states
    facts["world"] = dist.get_world_size()
    facts["pg_timeout_s"] = _timeout_s()
    Path(out, f"rank{dist.get_rank()}.json").write_text(json.dumps(facts))
    print(f"facts of rank {dist.get_rank()}: {json.dumps(facts)}", flush=True)


def _timeout_s() -> float | None:
    """The default process group's collective timeout, where this torch exposes it."""
    import torch.distributed as dist

    try:
        return dist.group.WORLD._get_backend(torch.device("cpu")).options._timeout.total_seconds()
    except (AttributeError, RuntimeError):
        return None


if __name__ == "__main__":
    main(*sys.argv[1:4])
