"""Cost accounting: what a run cost, measured, and the FLOP count the trainer and `plan` share.

The trainer records a `TrainCost` in the run's status and in every checkpoint manifest (`artifacts`); the
evaluator already records each result's wall time (`ResultProvenance.wall_time_s`). `run_cost` joins the two
for one (run, seed); `select` (and so the leaderboard), `status` and `plan` read it from here.

Definitions:
- tokens trained: optimizer steps in the model x tokens per step (`TrainingPlan.tokens_per_step`, i.e.
  train.global_batch_tokens rounded down to whole rows of data.seq_len; padded positions included, as in the
  token budget). Steps redone after a resume are not counted twice: this is the model's training, not the work.
- training FLOPs: `flops_per_token` x tokens trained.
- training wall time: seconds the trainer ran, summed over every session of the run (a resume adds to it).
  Each session's time is recorded at each checkpoint and at the end, so a session killed mid-way counts up to
  its last checkpoint; the time of steps redone after such a kill is counted (the devices were busy).
- evaluation wall time: the sum of the stored results' own wall times (one benchmark on one checkpoint each);
  results written without one count as 0 and are reported in `eval_results_untimed`.
- device hours: training wall x training processes (accelerate's world size, one device each; summed per
  session), plus evaluation wall x 1 (an evaluation runs in one process on one device).
"""

from __future__ import annotations

from typing import Any

from entrodrop_bench.artifacts import ArtifactError, EvalResult, RunCost, RunStatus, TrainCost
from entrodrop_bench.paths import Layout


def flops_per_token(compute_params: float, layers: int, heads: int, head_dim: int, seq_len: int) -> float:
    """Training FLOPs per token: 6·N + 12·L·H·d·S.

    The standard approximation for a dense decoder trained with backprop: the forward pass does about 2 FLOPs
    per parameter per token (one multiply-add) and the backward about twice that, hence 6·N (Kaplan et al.,
    2020, "Scaling Laws for Neural Language Models"); attention scores and their weighted sum add 2·2·d·S per
    head per layer forward, so 12·L·H·d·S with the backward (the count of Chowdhery et al., 2022, "PaLM",
    appendix B). Here:
    - N counts every parameter that multiplies activations: all parameters except the input embedding table
      (a lookup, no FLOPs), with the LM head counted once whether or not it is tied to the embedding (its
      matmul runs either way). It is the non-embedding count plus vocab x hidden.
    - L layers, H query heads of d dimensions each; S the packed row length (data.seq_len): every position
      attends over the whole row, without halving for the causal mask, as PaLM counts.
    Norms, activations, softmax and the optimizer are left out (small next to the matmuls).
    """
    return 6.0 * compute_params + 12.0 * layers * heads * head_dim * seq_len


def model_compute_params(model: Any) -> int:
    """N of `flops_per_token` for a loaded transformers model: its unique parameters, minus the input embedding
    table unless the LM head shares it (tied: the shared matrix is counted once, as the LM head)."""
    total = sum(p.numel() for p in model.parameters())  # parameters() yields a tied matrix once
    embedding = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    tied = head is not None and head.weight is embedding
    return int(total - (0 if tied else embedding.numel()))


def model_shape(model_config: Any) -> tuple[int, int, int]:
    """(layers, query heads, head dim) of a transformers model config."""
    heads = model_config.num_attention_heads
    head_dim = getattr(model_config, "head_dim", None) or model_config.hidden_size // heads
    return model_config.num_hidden_layers, heads, head_dim


def eval_wall(results: list[EvalResult]) -> tuple[float, int]:
    """(summed wall seconds, results without a wall time) of stored results."""
    walls = [r.provenance.wall_time_s for r in results]
    return float(sum(w for w in walls if w is not None)), sum(w is None for w in walls)


def stored_run_results(layout: Layout, run: str, seed: int) -> list[EvalResult]:
    """One run's stored results, every checkpoint and benchmark; a file this version cannot read is left out."""
    found = []
    for path in layout.run_result_files(run, seed):
        try:
            found.append(EvalResult.read(path))
        except ArtifactError:
            continue
    return found


def cost_of(status: RunStatus | None, results: list[EvalResult]) -> RunCost | None:
    """What one (run, seed) cost so far: its training (from its status; None when the status predates cost
    accounting) and its evaluations (its stored results). None when it has neither a status nor a result."""
    if status is None and not results:
        return None
    train: TrainCost | None = status.cost if status else None
    seconds, untimed = eval_wall(results)
    return RunCost(train=train, eval_wall_s=seconds, eval_results=len(results), eval_results_untimed=untimed,
                   device_hours=None if train is None else train.device_hours + seconds / 3600)


def run_cost(layout: Layout, run: str, seed: int) -> RunCost | None:
    """`cost_of` a (run, seed), read from its status and the results store (an unreadable status counts as none)."""
    try:
        status = RunStatus.read_or_none(RunStatus.path(layout, run, seed))
    except ArtifactError:
        status = None
    return cost_of(status, stored_run_results(layout, run, seed))


def summed_cost(costs: list[RunCost | None]) -> dict[str, Any]:
    """Several seeds' costs as one leaderboard `cost` record: totals, with null where any seed lacks the value."""
    def total(values: list[float | None]) -> float | None:
        return None if not values or any(v is None for v in values) else float(sum(values))

    trains = [c.train if c else None for c in costs]
    devices = sorted({t.device for t in trains if t})
    tokens = total([t and t.tokens_trained for t in trains])
    return {
        "tokens_trained": None if tokens is None else int(tokens),
        "train_flops": total([t and t.train_flops for t in trains]),
        "train_wall_s": total([t and t.train_wall_s for t in trains]),
        "eval_wall_s": total([c and c.eval_wall_s for c in costs]),
        "device": ", ".join(devices) or None,
        "device_count": max((t.device_count for t in trains if t), default=None),
        "device_hours": total([c and c.device_hours for c in costs]),
    }


def duration(seconds: float | None) -> str:
    """Wall seconds as a short text (`-` when unknown)."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.2f}h"


def si(value: float | None) -> str:
    """A count with an SI suffix (`1.2G`; `-` when unknown)."""
    if value is None:
        return "-"
    for factor, suffix in ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g}{suffix}"
    return f"{value:.3g}"
