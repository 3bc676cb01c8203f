"""`entrodrop-bench plan CONFIG`: what an experiment will cost, before anything runs, without the hub.

For every run: token budget, target epochs, optimizer steps, checkpoints, evaluations (checkpoints x
benchmarks x items), checkpoint disk, and GPU hours for training and evaluation. Steps and checkpoints come
from the trainer's own `data.make_plan` and `TrainingPlan.checkpoint_steps`, so the plan cannot drift from
what training does. The rest comes from the documented tables below; every number that is not measured is
labelled an estimate.

Target-corpus size: the `prepare` record when this config's data was prepared already (exact), else the cap
`data.target.max_unique_tokens` minus the held-out `data.validation_fraction` (estimate), else unknown.

Backbones (`BACKBONES`): parameter counts from the model cards (Qwen3: total and non-embedding; Llama 3.1:
total), vocabulary and shape from the models' config.json; a local HF folder is read from its config.json.

Throughput (`train_throughput`), per H100 (bf16 dense peak 989 TFLOP/s):
- the tiny preset: measured, benchmarks/gpu/h100_tiny_train.json (median of its runs' tokens/s);
- real backbones: estimate, 35% MFU at 6 x (non-embedding + LM-head) params + 12 x layers x heads x head_dim x
  seq_len FLOPs per token (the PaLM count, attention over the full packed row), plus, when activations are
  checkpointed (`train.gradient_checkpointing`, or `fsdp_activation_checkpointing` in the launcher's accelerate
  config; the trainer applies one of them, once), the recomputed forward of the decoder layers: 2 x non-embedding
  params + 4 x layers x heads x head_dim x seq_len more (about a third of the count without it).
Evaluation (`eval_seconds`), estimates for both generation backends (`eval.backend`), on one H100 each:
- `hf` (lm-eval's HF model, batched `generate`): a generative item costs its decoded tokens (min(max_gen_toks,
  typical answer length)) at batch_size sequences per decoding step, one step taking `DECODE_STEP_S`;
- `vllm` (one engine per evaluation worker, each checkpoint's weights loaded into it): a benchmark's items go to
  vLLM's scheduler at once and decode `VLLM_MAX_NUM_SEQS` at a time (its default on GPUs; the KV cache of the
  presets' models at 0.85 of an H100 holds that many answers of their lengths), one step taking
  `VLLM_DECODE_STEP_S`; each checkpoint adds its weight load (checkpoint weights at `WEIGHT_LOAD_BYTES_PER_S`),
  and each evaluation worker one engine start (`VLLM_ENGINE_START_S`), spread over the checkpoints it evaluates;
- under both, prefill is not counted (short prompts, batched), a log-likelihood item (HF under both backends)
  costs choices x context tokens at 3x the training tokens/s (forward only), and code benchmarks' sandboxed test
  runs are CPU time and not counted.

Measured cost: once a run has trained (or been evaluated), its row carries what it cost (`cost.run_cost`: tokens
trained, training wall and device hours from its status, evaluation wall from the results store), and `plan`
prints it next to the estimate. Measured tokens/s is tokens trained over the whole training wall time (setup,
validation and checkpoint saves included), on whatever device trained it (shown), so it is not per H100 unless
that device is one.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from entrodrop_bench.artifacts import ArtifactError, PreparedRecord
from entrodrop_bench.config import ExperimentConfig, expand_grid, run_names
from entrodrop_bench.cost import flops_per_token as _flops_per_token
from entrodrop_bench.cost import run_cost
from entrodrop_bench.paths import PAPER_REFERENCE, PROJECT_ROOT, Layout
from entrodrop_bench.prepare.data import TrainingPlan, make_plan

H100_BF16_PEAK = 989e12
"""H100 SXM dense bf16 tensor-core peak, FLOP/s."""
ESTIMATED_MFU = 0.35
"""Model FLOPs utilization assumed for real backbones until measured (labelled an estimate wherever used)."""
TINY_MEASUREMENT = PROJECT_ROOT / "benchmarks" / "gpu" / "h100_tiny_train.json"


@dataclass(frozen=True)
class Backbone:
    name: str
    params: float
    """Total parameters (tied embeddings counted once)."""
    non_embedding: float
    vocab: int
    hidden: int
    layers: int
    heads: int
    head_dim: int
    tied: bool
    source: str

    @property
    def compute_params(self) -> float:
        """Parameters that cost FLOPs per token: everything but the input embedding lookup."""
        return self.non_embedding + self.vocab * self.hidden


BACKBONES: dict[str, Backbone] = {
    "Qwen/Qwen3-0.6B-Base": Backbone("Qwen3-0.6B-Base", 0.44e9 + 151_936 * 1024, 0.44e9, 151_936, 1024, 28, 16, 128, True,
                                     "model card: 0.6B params, 0.44B non-embedding; 28 layers, 16 query heads x 128, vocab 151,936, tied"),
    "Qwen/Qwen3-1.7B-Base": Backbone("Qwen3-1.7B-Base", 1.4e9 + 151_936 * 2048, 1.4e9, 151_936, 2048, 28, 16, 128, True,
                                     "model card: 1.7B params, 1.4B non-embedding; 28 layers, 16 query heads x 128, vocab 151,936, tied"),
    "meta-llama/Llama-3.1-8B": Backbone("Llama-3.1-8B", 8.03e9, 8.03e9 - 2 * 128_256 * 4096, 128_256, 4096, 32, 32, 128, False,
                                        "model card: 8.03B params; 32 layers, 32 query heads x 128, vocab 128,256, untied"),
}
BACKBONES["meta-llama/Llama-3.1-8B-Instruct"] = BACKBONES["meta-llama/Llama-3.1-8B"]

DECODE_STEP_S = {2e9: 0.03, 1e12: 0.05}
"""Seconds per batched decoding step of HF generate by model size (upper bound -> seconds); estimate."""
VLLM_MAX_NUM_SEQS = 256
"""Sequences one vLLM engine decodes together (its `max_num_seqs` default on GPUs); assumption."""
VLLM_DECODE_STEP_S = {2e9: 0.02, 1e12: 0.04}
"""Seconds per vLLM decoding step of up to `VLLM_MAX_NUM_SEQS` sequences (CUDA graphs, paged attention), by model
size (upper bound -> seconds); estimate: memory-bound steps that read the weights and every sequence's KV cache."""
VLLM_ENGINE_START_S = 90.0
"""One vLLM engine start on a GPU (weights, torch.compile, CUDA graph capture), once per evaluation worker;
estimate (measured with vLLM's CPU build on a 2-core machine: ~60 s for the tiny preset's model, `make bench`
row 14; 241 s at the Qwen3-0.6B shape)."""
WEIGHT_LOAD_BYTES_PER_S = 1e9
"""Checkpoint weights read from local disk into a running engine, bytes/s; estimate."""

# benchmark: (items, "gen" | "ll", choices, context tokens per choice, typical generated tokens, subtasks)
BENCHMARKS: dict[str, tuple[int, str, int, int, int, int]] = {
    "svamp": (300, "gen", 1, 0, 200, 1),            # ChilleD/SVAMP test
    "gsm8k": (1319, "gen", 1, 0, 250, 1),
    "minerva_math": (5000, "gen", 1, 0, 400, 7),    # hendrycks MATH test, 7 subtasks
    "college_math": (2818, "gen", 1, 0, 400, 1),
    "olympiadbench": (675, "gen", 1, 0, 600, 1),    # OE_TO_maths_en_COMP
    "hellaswag": (10042, "ll", 4, 110, 0, 1),
    "arc_challenge": (299, "gen", 1, 0, 10, 1),    # ARC-Challenge dev, lettered answer (OpenCompass gen)
    "piqa": (1838, "ll", 2, 60, 0, 1),
    "mmlu": (14042, "ll", 4, 130, 0, 57),
    "ifeval": (541, "gen", 1, 0, 400, 1),
    "humaneval": (164, "gen", 1, 0, 300, 1),
    "mbpp": (378, "gen", 1, 0, 300, 1),             # evalplus MBPP+
    "livecodebench": (400, "gen", 1, 0, 500, 1),    # release_v1
}
"""Test-set sizes (exact) and request shapes (typical lengths: estimates) per benchmark."""


# ------------------------------------------------------------------------------------------------ inputs
def backbone(config: ExperimentConfig) -> Backbone | None:
    name = config.model.name_or_path
    if name in BACKBONES:
        return BACKBONES[name]
    if config.tiny is not None and name == "tiny":
        t = config.tiny
        return _from_shape("tiny preset", t.vocab_size, t.hidden_size, t.num_layers, t.num_heads, t.num_heads,
                           t.hidden_size // t.num_heads, 3 * t.hidden_size, True, "computed from the `tiny:` section")
    cfg_file = Path(name) / "config.json"
    if cfg_file.is_file():
        c = json.loads(cfg_file.read_text())
        heads = c["num_attention_heads"]
        return _from_shape(Path(name).name, c["vocab_size"], c["hidden_size"], c["num_hidden_layers"], heads,
                           c.get("num_key_value_heads", heads), c.get("head_dim") or c["hidden_size"] // heads,
                           c["intermediate_size"], c.get("tie_word_embeddings", False), f"computed from {cfg_file}")
    return None


def _from_shape(name, vocab, hidden, layers, heads, kv_heads, head_dim, inter, tied, source) -> Backbone:
    attn = hidden * head_dim * (2 * heads + 2 * kv_heads)
    per_layer = attn + 3 * hidden * inter + 2 * hidden
    non_emb = layers * per_layer + hidden
    total = non_emb + vocab * hidden * (1 if tied else 2)
    return Backbone(name, total, non_emb, vocab, hidden, layers, heads, head_dim, tied, source)


def target_train_tokens(config: ExperimentConfig, layout: Layout) -> tuple[int | None, str]:
    """Unique target tokens trained on, and where the number comes from."""
    record = _prepared_record(config, layout)
    if record is not None:
        return record.target_train.tokens, f"measured by prepare ({PreparedRecord.path(layout)})"
    cap = config.data.target.max_unique_tokens
    if cap is not None:
        return int(cap * (1 - config.data.validation_fraction)), (
            f"estimate: the cap data.target.max_unique_tokens {cap:,} minus data.validation_fraction "
            f"{config.data.validation_fraction:g} held out")
    return None, "unknown until `entrodrop-bench prepare` has read the target corpus (then run plan again)"


def _prepared_record(config: ExperimentConfig, layout: Layout) -> PreparedRecord | None:
    """The prepare record, when it was written for this config's model and data (a record this version cannot
    read counts as none: the plan is an estimate, and `prepare` says what to do about the record)."""
    import yaml

    record_file = PreparedRecord.path(layout)
    if not (record_file.is_file() and layout.experiment_config_file.is_file()):
        return None
    try:
        prepared_config = yaml.safe_load(layout.experiment_config_file.read_text())
        record = PreparedRecord.read(record_file)
    except (OSError, ValueError, yaml.YAMLError, ArtifactError):
        return None
    mine = config.model_dump(mode="json")
    same = all(prepared_config.get(k) == mine.get(k) for k in ("model", "tiny", "data"))
    return record if same else None


# ------------------------------------------------------------------------------------------------ rates
def train_throughput(config: ExperimentConfig, bb: Backbone | None, *, recompute: bool = True) -> tuple[float | None, str]:
    """Training tokens/s per H100 and its source; `recompute` False: without activation recompute (the rate the
    forward-only evaluation estimate scales from)."""
    if config.model.name_or_path == "tiny" and TINY_MEASUREMENT.is_file():
        runs = json.loads(TINY_MEASUREMENT.read_text())
        rates = sorted(r["tok_s"] for r in runs.values() if isinstance(r, dict) and r.get("tok_s"))
        if rates:
            median = rates[len(rates) // 2]
            return median, f"measured: {TINY_MEASUREMENT.relative_to(PROJECT_ROOT)} (H100, median of {len(rates)} runs)"
    if bb is None:
        return None, "unknown backbone (add it to entrodrop_bench/orchestrate/plan.py BACKBONES)"
    flops = flops_per_token(bb, config.data.seq_len)
    recompute = activation_recompute(config) if recompute else None
    executed = flops + (recompute_flops_per_token(bb, config.data.seq_len) if recompute else 0.0)
    return ESTIMATED_MFU * H100_BF16_PEAK / executed, (
        f"estimate: {ESTIMATED_MFU:.0%} MFU of the H100 bf16 peak at {flops / 1e9:.2f} GFLOP/token"
        + (f" + {(executed - flops) / 1e9:.2f} recomputed ({recompute})" if recompute else ""))


def activation_recompute(config: ExperimentConfig) -> str | None:
    """What checkpoints activations in this config's training (each decoder layer then runs its forward twice),
    as the trainer decides (`trainer.activation_recompute`): FSDP's when the launcher's accelerate config turns it
    on, else `train.gradient_checkpointing`; None when neither."""
    import yaml

    from entrodrop_bench.paths import resolve_project_path

    accel = config.launcher.accelerate_config
    if accel:
        try:
            settings = yaml.safe_load(resolve_project_path(accel).read_text()) or {}
        except (OSError, yaml.YAMLError):
            settings = {}
        fsdp = settings.get("fsdp_config") or {}
        if settings.get("distributed_type") == "FSDP" and fsdp.get("fsdp_activation_checkpointing"):
            return "fsdp_activation_checkpointing"
    return "train.gradient_checkpointing" if config.train.gradient_checkpointing else None


def recompute_flops_per_token(bb: Backbone, seq_len: int) -> float:
    """FLOPs per token of recomputing the decoder layers' forward in the backward (the LM head is outside them)."""
    return 2.0 * bb.non_embedding + 4.0 * bb.layers * bb.heads * bb.head_dim * seq_len


def flops_per_token(bb: Backbone, seq_len: int) -> float:
    """The trainer's own count (`cost.flops_per_token`) for a backbone of the table."""
    return _flops_per_token(bb.compute_params, bb.layers, bb.heads, bb.head_dim, seq_len)


def measured(layout: Layout, run: str, seed: int) -> dict | None:
    """What a (run, seed) cost so far, measured (`cost.run_cost`); None before it trained or was evaluated."""
    cost = run_cost(layout, run, seed)
    if cost is None:
        return None
    t = cost.train
    return {
        "steps": t and t.steps, "tokens_trained": t and t.tokens_trained, "train_flops": t and t.train_flops,
        "train_wall_s": t and t.train_wall_s, "device": t and t.device, "device_count": t and t.device_count,
        "tokens_per_s": t.tokens_trained / t.train_wall_s if t and t.train_wall_s > 0 else None,
        "train_device_h": t and t.device_hours, "eval_wall_s": cost.eval_wall_s, "eval_results": cost.eval_results,
        "eval_device_h": cost.eval_wall_s / 3600 if cost.eval_results else None,
    }


def _decode_step_s(bb: Backbone | None) -> float:
    size = bb.params if bb else 1e9
    return next(s for limit, s in sorted(DECODE_STEP_S.items()) if size <= limit)


def benchmark_items(config: ExperimentConfig, bench: str) -> int | None:
    """Items evaluated per checkpoint (eval.limit applies per lm-eval subtask)."""
    if bench.startswith("tiny_"):
        n, subtasks = (config.tiny.n_benchmark if config.tiny else None), 1
    elif bench in BENCHMARKS:
        n, subtasks = BENCHMARKS[bench][0], BENCHMARKS[bench][5]
    else:
        return None
    if n is None:
        return None
    limit = config.eval.limit
    return n if limit is None else min(n, limit * subtasks)


def _vllm_decode_step_s(bb: Backbone | None) -> float:
    size = bb.params if bb else 1e9
    return next(s for limit, s in sorted(VLLM_DECODE_STEP_S.items()) if size <= limit)


def eval_seconds(config: ExperimentConfig, bench: str, items: int, bb: Backbone | None, train_tok_s: float | None,
                 backend: str = "hf") -> float | None:
    """GPU seconds to evaluate one checkpoint on one benchmark under `backend` (estimate; engine starts and
    weight loads are counted per checkpoint by `experiment_plan`)."""
    ev = config.eval
    if bench.startswith("tiny_"):
        kind, choices, ctx, typical = ("ll", 4, 40, 0) if bench == "tiny_general" else ("gen", 1, 0, ev.max_gen_toks)
    elif bench in BENCHMARKS:
        _, kind, choices, ctx, typical, _ = BENCHMARKS[bench]
    else:
        return None
    if kind == "gen":
        if backend == "vllm":
            return math.ceil(items / VLLM_MAX_NUM_SEQS) * min(ev.max_gen_toks, typical) * _vllm_decode_step_s(bb)
        steps = math.ceil(items / ev.batch_size) * min(ev.max_gen_toks, typical)
        return steps * _decode_step_s(bb)
    if not train_tok_s:
        return None
    return items * choices * ctx / (3 * train_tok_s)


def checkpoint_bytes(config: ExperimentConfig, bb: Backbone | None) -> tuple[float | None, str]:
    """Bytes of one checkpoint: weights at master precision plus AdamW's two moments (gathered under FSDP)."""
    if bb is None:
        return None, "unknown backbone"
    precision = getattr(config.train, "precision", None)
    master = 4 if precision in ("bf16-mixed", "fp32") else {"float32": 4, "bfloat16": 2, "float16": 2}[config.model.dtype]
    return bb.params * master * 3, f"weights + 2 AdamW moments at {master} bytes/param ({bb.params * master / 1e9:.2f} GB of weights)"


# ------------------------------------------------------------------------------------------------ the plan
def _gammas(config: ExperimentConfig) -> dict[float, str]:
    """gamma_max values this config trains (runs whose table role declares a drop rate: EntroDrop, low-entropy
    targeting, curriculum) -> run; the baseline is 0."""
    found: dict[float, str] = {}
    for run, spec in config.runs.items():
        role = spec.role
        if role.kind == "baseline":
            found.setdefault(0.0, run)
        elif role.drop_rate is not None:
            found.setdefault(float(role.drop_rate), run)
    return found


def paper_reach(config: ExperimentConfig, epochs: float | None) -> list[str]:
    """Where the budget stops before the epochs at which the paper saw what it reports (Table 4, section 4.4).

    A best epoch E is observable only if training goes past it by one checkpoint interval (so the rise after
    the minimum is seen); '>E' (still falling at the paper's last evaluation) needs the same past E."""
    if epochs is None:
        return []
    table4 = json.loads(PAPER_REFERENCE.read_text()).get("table4", {}).get(config.preset)
    if not table4:
        return []
    step = config.train.checkpoint_every_epochs
    trained = _gammas(config)
    flags = []
    for row in table4["rows"]:
        gamma = float(row["drop_rate"])
        if gamma not in trained:
            continue
        best = float(str(row["best_epoch"]).lstrip(">"))
        needed = best + step
        if epochs < needed:
            what = f"best epoch {row['best_epoch']}"
            flags.append(f"gamma_max {gamma:g} (run {trained[gamma]}): the paper's Table 4 reports {what}; this budget reaches "
                         f"{epochs:.1f} target epochs, short of the {needed:g} needed to see it (best epoch + one checkpoint "
                         f"interval of {step:g}). Raise data.token_budget to at least "
                         f"{_budget_for(config, needed):,} tokens")
    return flags


def _budget_for(config: ExperimentConfig, epochs: float) -> int:
    tokens, _ = target_train_tokens(config, Layout.from_config(config))
    step_tokens = make_plan(config.data.token_budget, config.data.seq_len, config.train.global_batch_tokens, config.data.mix_ratio[0], 1).tokens_per_step
    needed = epochs * (tokens or 0) / config.data.mix_ratio[0]
    return int(math.ceil(needed / step_tokens) * step_tokens)


def experiment_plan(config: ExperimentConfig, layout: Layout | None = None) -> dict:
    """Everything `plan` prints, as data (also what the tests compare with the trainer)."""
    layout = layout or Layout.from_config(config)
    data = config.data
    tokens, tokens_source = target_train_tokens(config, layout)
    plan: TrainingPlan = make_plan(data.token_budget, data.seq_len, config.train.global_batch_tokens, data.mix_ratio[0], tokens or 1)
    known = tokens is not None
    ckpts = plan.checkpoint_steps(config.train.checkpoint_every_epochs) if known else None
    bb = backbone(config)
    tok_s, tok_s_source = train_throughput(config, bb)
    ckpt_bytes, ckpt_source = checkpoint_bytes(config, bb)
    benches = config.eval.lm_eval_tasks + config.eval.evalplus_datasets
    per_bench = {b: benchmark_items(config, b) for b in benches}
    eval_s_per_ckpt = vllm_s_per_ckpt = None
    if all(v is not None for v in per_bench.values()):
        forward_tok_s = train_throughput(config, bb, recompute=False)[0]
        eval_s_per_ckpt = _eval_s_per_checkpoint(config, per_bench, bb, forward_tok_s, "hf")
        vllm_s_per_ckpt = _eval_s_per_checkpoint(config, per_bench, bb, forward_tok_s, "vllm")
    if vllm_s_per_ckpt is not None and ckpt_bytes:
        vllm_s_per_ckpt += ckpt_bytes / 3 / WEIGHT_LOAD_BYTES_PER_S  # the weights (not the AdamW moments) loaded
    eval_workers = config.eval.workers * config.launcher.eval_jobs
    keep = config.train.keep_checkpoints
    runs = []
    for run in run_names(config):
        for seed in config.train.seeds:
            n_ckpt = len(ckpts) if ckpts is not None else None
            items = n_ckpt * sum(per_bench.values()) if n_ckpt is not None and None not in per_bench.values() else None
            runs.append({
                "run": run, "seed": seed, "token_budget": plan.total_steps * plan.tokens_per_step,
                "target_epochs": plan.target_epoch(plan.total_steps) if known else None,
                "steps": plan.total_steps, "checkpoints": n_ckpt, "checkpoint_steps": ckpts,
                "evaluations": n_ckpt * len(benches) if n_ckpt is not None else None, "eval_items": items,
                "disk_bytes": ckpt_bytes * min(n_ckpt, keep or n_ckpt) if ckpt_bytes and n_ckpt else None,
                "train_gpu_h": plan.total_steps * plan.tokens_per_step / tok_s / 3600 if tok_s else None,
                "eval_gpu_h": n_ckpt * eval_s_per_ckpt / 3600 if eval_s_per_ckpt is not None and n_ckpt is not None else None,
                "eval_vllm_gpu_h": n_ckpt * vllm_s_per_ckpt / 3600 if vllm_s_per_ckpt is not None and n_ckpt is not None else None,
                "measured": measured(layout, run, seed),
            })
    epochs = plan.target_epoch(plan.total_steps) if known else None
    totals = _totals(runs)
    if totals["eval_vllm_gpu_h"] is not None:  # each worker's one engine start, counted once for the experiment
        totals["eval_vllm_gpu_h"] += eval_workers * VLLM_ENGINE_START_S / 3600
    return {
        "experiment": config.name, "preset": config.preset,
        "backbone": None if bb is None else {"name": bb.name, "params": bb.params, "non_embedding": bb.non_embedding,
                                             "vocab": bb.vocab, "source": bb.source},
        "token_budget": data.token_budget, "tokens_per_step": plan.tokens_per_step, "steps": plan.total_steps,
        "target_share": data.mix_ratio[0], "target_train_tokens": tokens, "target_train_tokens_source": tokens_source,
        "target_epochs": epochs, "checkpoint_every_epochs": config.train.checkpoint_every_epochs,
        "benchmarks": per_bench, "train_tokens_per_s": tok_s, "train_tokens_per_s_source": tok_s_source,
        "eval_gpu_s_per_checkpoint": eval_s_per_ckpt, "eval_vllm_gpu_s_per_checkpoint": vllm_s_per_ckpt,
        "eval_workers": eval_workers, "vllm_assumptions": vllm_assumptions(bb),
        "checkpoint_bytes": ckpt_bytes, "checkpoint_bytes_source": ckpt_source,
        "runs": runs, "totals": totals, "paper_reach": paper_reach(config, epochs),
        "n_grid_points": sum(len(expand_grid(m)) for m in config.methods.values()),
    }


def _eval_s_per_checkpoint(config: ExperimentConfig, per_bench: dict[str, int | None], bb: Backbone | None,
                           tok_s: float | None, backend: str) -> float | None:
    if any(v is None for v in per_bench.values()):
        return None
    parts = [eval_seconds(config, b, n, bb, tok_s, backend) for b, n in per_bench.items()]
    return sum(parts) if all(p is not None for p in parts) else None


def vllm_assumptions(bb: Backbone | None) -> str:
    """The `eval.backend: vllm` estimate's assumptions, in one line (printed by `plan`)."""
    return (f"{VLLM_MAX_NUM_SEQS} sequences per decoding step at {_vllm_decode_step_s(bb) * 1000:.0f} ms, one engine "
            f"start ({VLLM_ENGINE_START_S:.0f} s) per evaluation worker, each checkpoint's weights loaded into it at "
            f"{WEIGHT_LOAD_BYTES_PER_S / 1e9:g} GB/s; loglikelihood tasks on HF as under hf")


def _totals(runs: list[dict]) -> dict:
    def total(key):
        values = [r[key] for r in runs]
        return None if any(v is None for v in values) else sum(values)

    return {k: total(k) for k in ("token_budget", "steps", "checkpoints", "evaluations", "eval_items", "disk_bytes",
                                  "train_gpu_h", "eval_gpu_h", "eval_vllm_gpu_h")}


# ------------------------------------------------------------------------------------------------ printing
def _n(v, fmt: str = ",.0f", none: str = "?") -> str:
    return none if v is None else format(v, fmt)


def format_plan(p: dict) -> str:
    bb = p["backbone"]
    lines = [f"plan: {p['experiment']} (preset {p['preset']})"]
    lines.append(f"  backbone: {bb['name']}, {bb['params'] / 1e9:.3g}B params ({bb['non_embedding'] / 1e9:.3g}B non-embedding), "
                 f"vocab {bb['vocab']:,} [{bb['source']}]" if bb else "  backbone: unknown (not in the backbone table)")
    lines.append(f"  token budget {p['token_budget']:,} = {p['steps']:,} steps x {p['tokens_per_step']:,} tokens; "
                 f"target share {p['target_share']:g}")
    lines.append(f"  target corpus: {_n(p['target_train_tokens'])} unique training tokens [{p['target_train_tokens_source']}]")
    lines.append(f"  -> {_n(p['target_epochs'], '.1f')} target epochs; a checkpoint every {p['checkpoint_every_epochs']:g} target epochs")
    items = ", ".join(f"{b} {_n(n)}" for b, n in p["benchmarks"].items()) or "none"
    lines.append(f"  benchmarks (items per checkpoint): {items}")
    lines.append(f"  training throughput: {_n(p['train_tokens_per_s'])} tokens/s per H100 [{p['train_tokens_per_s_source']}]")
    lines.append(f"  evaluation: {_n(p['eval_gpu_s_per_checkpoint'] and p['eval_gpu_s_per_checkpoint'] / 60, '.1f')} GPU-minutes per "
                 f"checkpoint with eval.backend hf [estimate, see entrodrop_bench/orchestrate/plan.py]; "
                 f"{_n(p['eval_vllm_gpu_s_per_checkpoint'] and p['eval_vllm_gpu_s_per_checkpoint'] / 60, '.1f')} with "
                 f"eval.backend vllm [estimate: {p['vllm_assumptions']}]")
    lines.append(f"  checkpoint size: {_n(p['checkpoint_bytes'] and p['checkpoint_bytes'] / 1e9, '.2f')} GB [{p['checkpoint_bytes_source']}]")
    header = ["run", "seed", "tokens", "steps", "epochs", "ckpts", "evals", "eval items", "disk GB", "train GPU-h*", "eval GPU-h* hf",
              "vllm"]
    rows = [[r["run"], str(r["seed"]), _n(r["token_budget"]), _n(r["steps"]), _n(r["target_epochs"], ".1f"), _n(r["checkpoints"]), _n(r["evaluations"]),
             _n(r["eval_items"]), _n(r["disk_bytes"] and r["disk_bytes"] / 1e9, ".1f"), _n(r["train_gpu_h"], ".1f"),
             _n(r["eval_gpu_h"], ".1f"), _n(r["eval_vllm_gpu_h"], ".1f")] for r in p["runs"]]
    t = p["totals"]
    rows.append(["total", "", _n(t["token_budget"]), _n(t["steps"]), "", _n(t["checkpoints"]), _n(t["evaluations"]), _n(t["eval_items"]),
                 _n(t["disk_bytes"] and t["disk_bytes"] / 1e9, ".1f"), _n(t["train_gpu_h"], ".1f"), _n(t["eval_gpu_h"], ".1f"),
                 _n(t["eval_vllm_gpu_h"], ".1f")])
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines.append("")
    for row in [header, *rows]:
        lines.append("  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    lines.append("  * GPU hours on H100s: an estimate unless the throughput above says measured. Evaluation under eval.backend hf "
                 f"and vllm; the vllm total adds one engine start per evaluation worker ({p['eval_workers']}).")
    lines += _format_measured(p)
    if p["paper_reach"]:
        lines.append("")
        lines.append("  WARNING: this budget cannot reach what the paper reports:")
        lines += [f"  - {flag}" for flag in p["paper_reach"]]
    return "\n".join(lines)


def _format_measured(p: dict) -> list[str]:
    """Estimate next to measured cost for each run that has one (nothing when no run has trained yet)."""
    done = [r for r in p["runs"] if r.get("measured")]
    if not done:
        return []
    header = ["run", "seed", "steps", "device", "tok/s est*", "tok/s", "train GPU-h est*", "train dev-h",
              "eval GPU-h est*", "eval dev-h"]
    rows = []
    for r in done:
        m = r["measured"]
        device = m["device"] and (m["device"] if m["device_count"] == 1 else f"{m['device_count']} x {m['device']}")
        rows.append([r["run"], str(r["seed"]), f"{_n(m['steps'], ',', '-')}/{r['steps']:,}", device or "-",
                     _n(p["train_tokens_per_s"]), _n(m["tokens_per_s"], none="-"), _n(r["train_gpu_h"], ".3g"),
                     _n(m["train_device_h"], ".3g", "-"), _n(r["eval_gpu_h"], ".3g"), _n(m["eval_device_h"], ".3g", "-")])
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["", "  measured so far (entrodrop_bench/cost.py), next to the estimate:"]
    for row in [header, *rows]:
        lines.append("  " + "  ".join(c.ljust(w) if i in (0, 3) else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    lines.append("  measured tok/s: tokens trained over the whole training wall time, on the device shown; "
                 "dev-h: wall x devices; '-': not recorded (a run trained before cost accounting, or not evaluated)")
    return lines


def plan_header(p: dict, config_file: str) -> str:
    """The plan as the comment block each real preset carries (`entrodrop-bench plan --header CONFIG` prints it;
    a test keeps every shipped preset's block equal to it)."""
    t, n_runs = p["totals"], len(p["runs"])
    per_run = p["runs"][0]
    lines = [
        f"Plan (`entrodrop-bench plan {config_file}`, offline; GPU hours on H100s, estimates unless measured):",
        f"  {p['steps']:,} steps x {p['tokens_per_step']:,} tokens = {_n(p['target_epochs'], '.1f')} target epochs "
        f"(target corpus {_n(p['target_train_tokens'])} tokens, {p['target_train_tokens_source'].split(':')[0]}); "
        f"{_n(per_run['checkpoints'])} checkpoints per run",
        f"  {n_runs} runs: {_n(t['checkpoints'])} checkpoints, {_n(t['evaluations'])} evaluations ({_n(t['eval_items'])} items), "
        f"{_n(t['disk_bytes'] and t['disk_bytes'] / 1e9)} GB of checkpoints",
        f"  training ~{_n(t['train_gpu_h'])} GPU-h ({_n(p['train_tokens_per_s'])} tokens/s per GPU), "
        f"evaluation ~{_n(t['eval_gpu_h'])} GPU-h ({_n(p['eval_gpu_s_per_checkpoint'] and p['eval_gpu_s_per_checkpoint'] / 60)} min per checkpoint)",
        f"  evaluation with eval.backend vllm ~{_n(t['eval_vllm_gpu_h'])} GPU-h "
        f"({_n(p['eval_vllm_gpu_s_per_checkpoint'] and p['eval_vllm_gpu_s_per_checkpoint'] / 60, '.1f')} min per checkpoint, "
        f"one engine per evaluation worker; assumptions in `plan`)",
    ]
    if p["paper_reach"]:
        lines.append(f"  WARNING: short of the epochs the paper reports for {len(p['paper_reach'])} gamma_max value(s); see `plan`")
    return "\n".join("# " + line for line in lines) + "\n"
