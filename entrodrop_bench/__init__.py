"""entrodrop-bench: multi-epoch continual pre-training on scarce domain data.

Stages pass files on disk: prepare -> train (checkpoints) -> eval (results store) -> select -> tables,
figures, leaderboard. Every stage is idempotent; `entrodrop_bench.paths` is the one module that knows
where those files live.
"""

__version__ = "0.1.0"
# Bumped when the on-disk layout of a run changes incompatibly; readers refuse other versions.
RUN_FORMAT_VERSION = 1
