"""Command line: `entrodrop-bench run CONFIG [key.path=value ...]` and one command per stage.

Errors in the user's input print one paragraph and exit 2; `--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

STAGES = ("prepare", "train", "eval", "select", "tables", "figures")

_HELP = {
    "run": "run every stage (prepare, train, eval, select, tables, figures, leaderboard), skipping finished work",
    "prepare": "build the tiny world (if used), tokenize and split corpora, cache base-model entropies",
    "train": "train every method and seed (or those named with --run/--seed); resumes interrupted runs",
    "eval": "evaluate every checkpoint on every benchmark through lm-eval and evalplus; fills the results store",
    "select": "pick each method's representative checkpoint (config eval.selection); writes selection.json",
    "tables": "write Tables 1-4 as Markdown, LaTeX and CSV from selection.json (run `select` first)",
    "figures": "write Figures 1c, 2a, 2b, 2c, 3 and 4 as PNG and PDF from selection.json (run `select` first)",
    "leaderboard": "build this experiment's leaderboard entries from selection.json, or `publish RUN_DIR` / "
                   "`validate FILE` / `schema` (regenerate the schema file)",
    "plugins": "list registered regularizer plugins and their config fields",
    "config": "print the resolved config (base files merged, overrides applied, defaults filled) as YAML; "
              "--explain: every field with its value, type and docstring, and each run's typed plugin params",
    "benchmarks": "list a config's benchmarks: harness, source, item count, metric, offline availability",
    "plan": "print, offline, each run's steps, target epochs, checkpoints, evaluations, disk and GPU hours",
    "launch": "submit the experiment as jobs (prepare, one per run and seed, evaluation workers, report) to SLURM "
              "through submitit, or run them as local processes; skips complete work and jobs still in flight",
    "status": "runs, checkpoints, evaluations and launched jobs (queued, running, done, failed) with job ids and logs",
}


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="experiment YAML, e.g. configs/tiny.yaml")
    p.add_argument("overrides", nargs="*", metavar="key.path=value", help="config overrides, e.g. train.lr=3e-4")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="entrodrop-bench", description="EntroDrop and regularization baselines for multi-epoch CPT.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for user errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in ("run", *STAGES):
        p = sub.add_parser(name, help=_HELP[name], description=_HELP[name])
        _add_config_args(p)
        p.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        if name == "tables":
            p.add_argument("--from-items", metavar="FILE", default=None,
                           help="rebuild every table from a per-item outcomes file (results/<experiment>/"
                                "item_outcomes.jsonl.gz, written by `select`) and selection.json, without the runs folder")
        if name == "train":
            p.add_argument("--run", action="append", help="train only this run (repeatable); default: all")
            p.add_argument("--seed", type=int, action="append", help="train only this seed (repeatable)")
    lb = sub.add_parser("leaderboard", help=_HELP["leaderboard"], description=_HELP["leaderboard"])
    lb.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    lb_sub = lb.add_subparsers(dest="action", required=True, metavar="ACTION")
    build = lb_sub.add_parser("build", help="write this experiment's entries (results_dir/leaderboard_entries.json)")
    _add_config_args(build)
    publish = lb_sub.add_parser("publish", help="merge a run's selected results into results/leaderboard.json")
    publish.add_argument("run_dir", help="an experiment's results directory (e.g. results/tiny)")
    publish.add_argument("--into", default=None, help="leaderboard file (default results/leaderboard.json); the "
                         "experiment's own RUN_DIR/leaderboard.json keeps exactly its current entries")
    publish.add_argument("--allow-dirty", action="store_true",
                         help="publish entries built or published from a work tree with uncommitted changes to tracked "
                              "files (outside results/); they are marked as such")
    render = lb_sub.add_parser("render", help="rewrite a leaderboard's HTML page from its JSON (no publish)")
    render.add_argument("file", help="a leaderboard .json file (e.g. results/tiny/leaderboard.json)")
    render.add_argument("--screenshot", action="store_true",
                        help="also save a screenshot of the page beside it (.png; needs chromium and playwright)")
    validate = lb_sub.add_parser("validate", help="check a leaderboard file against results/leaderboard.schema.json")
    validate.add_argument("file")
    lb_sub.add_parser("schema", help="regenerate results/leaderboard.schema.json from the entry model (artifacts.py)")
    plan = sub.add_parser("plan", help=_HELP["plan"], description=_HELP["plan"])
    _add_config_args(plan)
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    plan.add_argument("--header", action="store_true", help="print the plan as the comment block a preset's YAML carries")
    plan.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    launch = sub.add_parser("launch", help=_HELP["launch"], description=_HELP["launch"])
    _add_config_args(launch)
    launch.add_argument("--executor", choices=("slurm", "local"), required=True,
                        help="slurm: sbatch jobs with dependencies (returns once submitted); local: the same jobs as "
                             "local processes (waits for them)")
    launch.add_argument("--wait", action="store_true", help="slurm: wait until the submitted jobs have ended")
    launch.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    status = sub.add_parser("status", help=_HELP["status"], description=_HELP["status"])
    _add_config_args(status)
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    plugins = sub.add_parser("plugins", help=_HELP["plugins"], description=_HELP["plugins"])
    plugins.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    cfg = sub.add_parser("config", help=_HELP["config"], description=_HELP["config"])
    _add_config_args(cfg)
    cfg.add_argument("--explain", action="store_true", help="every field with value, type and docstring")
    cfg.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    benchmarks = sub.add_parser("benchmarks", help=_HELP["benchmarks"], description=_HELP["benchmarks"])
    _add_config_args(benchmarks)
    benchmarks.add_argument("--json", action="store_true", help="print the rows as JSON")
    benchmarks.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def _load(args):
    from entrodrop_bench.config import load_config
    from entrodrop_bench.paths import Layout

    config = load_config(args.config, args.overrides)
    return config, Layout.from_config(config)


def _leaderboard(args) -> int:
    from entrodrop_bench.report import leaderboard

    if args.action == "build":
        config, layout = _load(args)
        from entrodrop_bench.pipeline import selection_failures, stage_leaderboard, written_selection

        stage_leaderboard(config, layout)
        return _report("leaderboard build", selection_failures(written_selection(config, layout)))
    if args.action == "publish":
        from entrodrop_bench.paths import LEADERBOARD_JSON

        target = Path(args.into) if args.into else LEADERBOARD_JSON
        done = leaderboard.publish(Path(args.run_dir), target, allow_dirty=args.allow_dirty)
        print(f"published {args.run_dir} into {target}: {done.entries} entries"
              + (", marked as from a modified work tree" if done.modified_tree else ""))
        for key in done.removed:
            print(f"  removed {key}: the experiment's config no longer produces it")
        for key in done.superseded:
            print(f"  marked superseded {key}: the experiment's config no longer produces it")
        return 0
    if args.action == "render":
        from entrodrop_bench.paths import leaderboard_screenshot

        page = leaderboard.render_page(Path(args.file))
        print(f"wrote {page}")
        if args.screenshot:
            from entrodrop_bench.report.screenshot import screenshot

            screenshot(page, leaderboard_screenshot(Path(args.file)))
            print(f"wrote {leaderboard_screenshot(Path(args.file))}")
        return 0
    if args.action == "schema":
        print(f"wrote {leaderboard.write_schema()}")
        return 0
    problems = leaderboard.validate_file(Path(args.file))
    for problem in problems:
        print(problem)
    print(f"{args.file}: {'valid' if not problems else f'{len(problems)} violation(s)'}")
    return 0 if not problems else 1


def _plugins() -> int:
    from entrodrop_bench.config import type_name
    from entrodrop_bench.regularizer import REGULARIZERS

    for name in REGULARIZERS.names():
        cls = REGULARIZERS.get(name)
        print(f"{name}  ({cls.__module__}, version {cls.version})")
        for field, info in cls.Config.model_fields.items():
            print(f"    {field} = {info.default!r}  [{type_name(info.annotation)}]  {' '.join((info.description or '').split())}")
    return 0


def _benchmarks(args) -> int:
    import json

    from entrodrop_bench.catalog import describe, format_rows

    config, layout = _load(args)
    rows = describe(config, layout)
    print(json.dumps(rows, indent=2) if args.json else format_rows(rows))
    return 0


def dispatch(args) -> int:
    # Only what a command needs is imported: `plan`, `status`, `config`, `benchmarks` and `--help` import no torch.
    if args.command == "leaderboard":
        return _leaderboard(args)
    if args.command == "plugins":
        return _plugins()
    if args.command == "benchmarks":
        return _benchmarks(args)
    config, layout = _load(args)
    if args.command == "config":
        import yaml

        from entrodrop_bench.config import explain_config

        print(explain_config(config) if args.explain else yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), end="")
        return 0
    if args.command == "plan":
        import json

        from entrodrop_bench.plan import experiment_plan, format_plan, plan_header

        plan = experiment_plan(config, layout)
        if args.header:
            print(plan_header(plan, args.config), end="")
        else:
            print(json.dumps(plan, indent=1) if args.json else format_plan(plan))
        return 0
    if args.command in ("launch", "status"):
        return _launch_or_status(args, config, layout)
    from entrodrop_bench import pipeline

    progress = not args.no_progress and sys.stderr.isatty()
    if args.command in ("run", "prepare", "train", "eval"):
        # An unreachable benchmark or gated repo fails now, not after hours of training; the GPU that
        # `eval.backend: vllm` needs is asked for only by the commands that evaluate.
        pipeline.preflight(config, evaluates_here=args.command in ("run", "eval"))
    failures: list[str] = []
    if args.command == "run":
        failures = pipeline.run_all(config, layout, progress=progress)
    elif args.command == "prepare":
        pipeline.stage_prepare(config, layout)
    elif args.command == "train":
        states = pipeline.stage_train(config, layout, only=args.run, seeds=args.seed, progress=progress)
        failures = pipeline.train_failures(states)
    elif args.command == "eval":
        failures = pipeline.eval_failures(pipeline.stage_eval(config, layout, progress=progress))
    elif args.command == "select":
        failures = pipeline.selection_failures(pipeline.stage_select(config, layout))
    elif args.command == "tables" and args.from_items:
        pipeline.stage_tables(config, layout, from_items=Path(args.from_items))
    else:  # tables, figures: drawn from the written selection; nothing selected at all is a failure
        getattr(pipeline, f"stage_{args.command}")(config, layout)
        failures = pipeline.selection_failures(pipeline.written_selection(config, layout))
    return _report(args.command, failures)


def _launch_or_status(args, config, layout) -> int:
    from entrodrop_bench import launch

    if args.command == "launch":
        return launch.launch(config, layout, args.executor, wait=args.wait)
    report = launch.status(config, layout)
    if args.json:
        import json

        print(json.dumps(report, indent=1))
    else:
        print(launch.format_status(report))
    return 0


def _report(command: str, failures: list[str]) -> int:
    """A stage that left work undone says what, on stderr, and exits 1; re-running it retries exactly that."""
    if not failures:
        return 0
    shown = failures[:20]
    more = f"\n  ... and {len(failures) - len(shown)} more" if len(failures) > len(shown) else ""
    print(f"error: `{command}` finished with {len(failures)} failure(s):\n  " + "\n  ".join(shown) + more, file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Libraries' own bars (dataset splits, weight loading, shard writing) bury the harness's progress
    # and error messages; the harness shows its own bars over runs, steps and checkpoints.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    args = build_parser().parse_args(argv)
    from entrodrop_bench.errors import UserError

    try:
        return dispatch(args)
    except UserError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; re-run the same command to continue where it stopped", file=sys.stderr)
        return 130
    finally:
        _close_process_group()


def _close_process_group() -> None:
    """A launched job's process group lives for the whole command (several runs train in it); close it at the end."""
    if "torch" not in sys.modules:  # nothing was launched into a job (and torch is not worth importing for this)
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
