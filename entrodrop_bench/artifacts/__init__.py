"""Typed files that pass between stages: one pydantic model per file, one `read` and one `write` each.

Every stage reads the previous stage's files only through these models, and writes its own only through
them (atomically: a reader sees the old file or the new one, never half of one). A file written by an
incompatible version of this code is refused with what wrote it and which stage to re-run, instead of
being half-understood.

    file                                                    model               written by
    prepared.json                                           PreparedRecord      prepare
    cache/gate_shares.json                                  GateShares          prepare
    train/<run>/seed<k>/status.json                         RunStatus           train
    train/<run>/seed<k>/val_curve.json                      ValCurve            train
    train/<run>/seed<k>/train_log.jsonl                     TrainLog            train
    train/<run>/seed<k>/checkpoint-<step>/manifest.json     CheckpointManifest  train
    store/<run>/seed<k>/checkpoint-<step>/<benchmark>.json  EvalResult          evaluate
    store/.../checkpoint-<step>/work/checkpoint_hash.json   CheckpointHashMemo  evaluate
    <results_dir>/sample_entropy.json                       SampleEntropy       prepare
    <results_dir>/selection.json                            Selection           select
    <results_dir>/leaderboard_entries.json                  LeaderboardEntries  leaderboard build
    launch/jobs.json                                        LaunchJobs          launch

Paths come from `paths.Layout`; nothing here forms a file name. The `Artifact` base (read, atomic write, format
check) is in `base`; each stage's files are in a module of their own (`prepare`, `train`, `evaluate`, `report`,
and `launch` for the launcher's job list). Import every name from this package.
"""

from entrodrop_bench.artifacts.base import (
    Artifact,
    ArtifactError,
)
from entrodrop_bench.artifacts.evaluate import (
    CheckpointHashMemo,
    EvalResult,
    ItemOutcomes,
    ResultProvenance,
    stored_results,
)
from entrodrop_bench.artifacts.launch import (
    LaunchedJob,
    LaunchJobs,
)
from entrodrop_bench.artifacts.prepare import (
    CorpusRecord,
    GateShare,
    GateShares,
    PreparedRecord,
    SampleEntropy,
)
from entrodrop_bench.artifacts.report import (
    LEADERBOARD_SCHEMA_VERSION,
    Aggregate,
    AggregateValMinimum,
    CheckpointScores,
    Comparisons,
    Contrast,
    HeldoutPick,
    HeldoutSummary,
    LeaderboardBackbone,
    LeaderboardBudget,
    LeaderboardCheckpoint,
    LeaderboardComparison,
    LeaderboardContrast,
    LeaderboardCost,
    LeaderboardDocument,
    LeaderboardEntries,
    LeaderboardEntry,
    LeaderboardMethod,
    LeaderboardProvenance,
    LeaderboardScore,
    LeaderboardSelection,
    LeaderboardSummary,
    LeaderboardSuperseded,
    LeaderboardValCurve,
    LeaderboardVsBaseline,
    LogSeriesRecord,
    MethodSelection,
    MissingResult,
    PairedDifference,
    ReportFieldsRecord,
    RowComparison,
    RunCost,
    RunSelection,
    SeedSelection,
    Selection,
    SelectionInputs,
    SkippedRun,
    Summary,
    TableComparisons,
    TableRoleRecord,
    ValMinimum,
    interval_fields,
    leaderboard_json_schema,
)
from entrodrop_bench.artifacts.train import (
    DOC_LOSS_DECIMALS,
    CheckpointManifest,
    RunStatus,
    TrainCost,
    TrainLog,
    TrainLogRecord,
    ValCurve,
    ValPoint,
)

__all__ = [
    "ArtifactError",
    "Artifact",
    "CorpusRecord",
    "PreparedRecord",
    "GateShare",
    "GateShares",
    "TrainCost",
    "RunCost",
    "RunStatus",
    "ValPoint",
    "DOC_LOSS_DECIMALS",
    "ValCurve",
    "TrainLogRecord",
    "TrainLog",
    "SampleEntropy",
    "CheckpointManifest",
    "ResultProvenance",
    "ItemOutcomes",
    "EvalResult",
    "stored_results",
    "CheckpointHashMemo",
    "Summary",
    "CheckpointScores",
    "ValMinimum",
    "HeldoutPick",
    "SeedSelection",
    "AggregateValMinimum",
    "HeldoutSummary",
    "Aggregate",
    "TableRoleRecord",
    "LogSeriesRecord",
    "ReportFieldsRecord",
    "RunSelection",
    "MethodSelection",
    "SkippedRun",
    "MissingResult",
    "SelectionInputs",
    "PairedDifference",
    "RowComparison",
    "Contrast",
    "TableComparisons",
    "Comparisons",
    "Selection",
    "LeaderboardSummary",
    "interval_fields",
    "LeaderboardMethod",
    "LeaderboardBackbone",
    "LeaderboardBudget",
    "LeaderboardCheckpoint",
    "LeaderboardSelection",
    "LeaderboardScore",
    "LeaderboardProvenance",
    "LeaderboardCost",
    "LeaderboardComparison",
    "LeaderboardVsBaseline",
    "LeaderboardContrast",
    "LeaderboardSuperseded",
    "LeaderboardValCurve",
    "LeaderboardEntry",
    "LEADERBOARD_SCHEMA_VERSION",
    "LeaderboardDocument",
    "leaderboard_json_schema",
    "LeaderboardEntries",
    "LaunchedJob",
    "LaunchJobs",
]
