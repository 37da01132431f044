"""The `testbed` command (docs/design.md, "Commands"). Bad input: one line on stderr, exit code 2."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from testbed.errors import TestbedError

# What the `train` extra brings (pyproject.toml): a command that needs one of them says so in one line
TRAIN_EXTRA_MODULES = {"torch", "transformers", "tokenizers", "safetensors", "datasets", "accelerate", "lm_eval",
                       "wandb", "sacrebleu", "rouge_score", "omegaconf", "submitit", "tqdm"}  # fmt: skip
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "WANDB_MODE": "offline"}


def _sweep_runs(args):
    from testbed.config import load_sweep_config
    from testbed.sweep.expand import expand

    sweep = load_sweep_config(args.sweep, args.overrides)
    return sweep, expand(sweep, str(args.sweep))


def cmd_train(args) -> int:
    from testbed import preempt

    preempt.install()  # before torch is imported: a SIGTERM from here on ends in a resumable stop (exit 75)
    from testbed.preempt import Preempted
    from testbed.resolve import load_run_config
    from testbed.sweep.stages import FAILED, PREEMPTED
    from testbed.train import NonFiniteLoss, train

    config, overrides = args.config, list(args.overrides)
    if config is not None and "=" in config:  # no file given: the first word is an override
        config, overrides = None, [config, *overrides]
    try:
        print(train(load_run_config(config, overrides)))
    except Preempted as err:  # an expected stop, not a crash: no traceback
        print(f"testbed: {err}; run the same command again to resume", file=sys.stderr)
        return PREEMPTED
    except NonFiniteLoss as err:
        print(f"testbed: {err}; the run is marked FAILED", file=sys.stderr)
        return FAILED
    return 0


def cmd_sweep_plan(args) -> int:
    from testbed.sweep.plan import format_plan, plan_rows
    from testbed.sweep.stages import StageSpec

    sweep, runs = _sweep_runs(args)
    rows = plan_rows(runs, StageSpec.of(sweep), sweep.gpu)
    print(json.dumps(rows, indent=1) if args.json else format_plan(rows, sweep.cpu_workers or 1))
    return 0


def cmd_sweep_run(args) -> int:
    from testbed.sweep.launch import run_sweep

    sweep, runs = _sweep_runs(args)
    if args.quiet:  # also the bars and notices of lm-eval and datasets inside the eval stage
        os.environ["TQDM_DISABLE"] = "1"
        logging.getLogger("lm_eval").setLevel(logging.ERROR)
    return run_sweep(sweep, runs, args.backend, progress=not args.quiet, wait=args.wait)


def cmd_sweep_status(args) -> int:
    from testbed.sweep.stages import StageSpec
    from testbed.sweep.status import format_status, sweep_status

    sweep, runs = _sweep_runs(args)
    rows = sweep_status(runs, StageSpec.of(sweep))
    print(json.dumps(rows, indent=1) if args.json else format_status(rows))
    return 0


def cmd_eval(args) -> int:
    from testbed.evaluate.suite import FAILURES_FILE, evaluate_run
    from testbed.rundir import owned

    with owned(Path(args.run_dir)):
        report = evaluate_run(Path(args.run_dir), args.suite, steps=args.steps)
    print(
        f"{report.written} rows written to {Path(args.run_dir) / 'rows.jsonl'}"
        + (f"; {len(report.unmapped)} unmapped tasks listed in the suite" if report.unmapped else "")
    )
    for failure in report.failed:
        print(f"testbed: step {failure['step']} {failure['task']}: {failure['reason']}", file=sys.stderr)
    if report.failed:
        print(
            f"testbed: {len(report.failed)} task(s) failed; see {Path(args.run_dir) / FAILURES_FILE}", file=sys.stderr
        )
    return 1 if report.failed else 0


def cmd_finetune(args) -> int:
    from testbed.sweep.finetune import finetune_sweep
    from testbed.translation.run import finetune_run

    def log(line: str) -> None:
        print(f"testbed: {line}", file=sys.stderr, flush=True)

    target = Path(args.target)
    if target.suffix in (".yaml", ".yml"):
        reports = finetune_sweep(target, args.overrides, args.task and [args.task], args.size, args.steps, log)
    else:
        if not args.task or not args.size:
            raise TestbedError(f"{target}: --task and --size are needed for a run dir")
        from testbed.rundir import owned

        with owned(target):
            reports = {
                str(target): finetune_run(target, args.task, args.size, args.steps or "final", args.protocol, log)
            }
    failed = [(run, f) for run, report in reports.items() for f in report.failed]
    print(f"{sum(r.written for r in reports.values())} translation rows written over {len(reports)} runs")
    for run, failure in failed:
        print(f"testbed: {Path(run).name}: {failure.get('task')}: {failure['reason']}", file=sys.stderr)
    return 1 if failed else 0


def cmd_results_collect(args) -> int:
    from analysis.schema import write_table
    from testbed.results import collect

    table = collect(Path(args.workdir))
    try:
        write_table(table, Path(args.out))
    except ValueError as err:  # an unknown format
        raise TestbedError(str(err)) from None
    print(f"{len(table)} rows from {table['run_id'].nunique()} runs -> {args.out}")
    return 0


def cmd_list(args) -> int:
    from testbed.listing import LISTS, format_rows

    rows = LISTS[args.what]()
    print(json.dumps(rows, indent=1) if args.json else format_rows(rows))
    return 0


def version() -> str:
    """The installed distribution's version, else the package's own (a checkout run without installing)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("testbed")
    except PackageNotFoundError:
        from testbed import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    from testbed.listing import LISTS
    from testbed.paths import CONFIG_PATH_ENV

    parser = argparse.ArgumentParser(prog="testbed", description=__doc__)
    parser.add_argument("--version", action="version", version=f"testbed {version()}")
    parser.add_argument(
        "--config-path",
        action="append",
        default=[],
        metavar="DIR",
        help=f"a directory of your own configs (data/, eval/, ladders/, sweeps/) searched before the packaged "
        f"ones; repeat for several (also {CONFIG_PATH_ENV}, colon-separated)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="one run")
    p.add_argument("config", nargs="?", help="run config YAML (default: built-in defaults)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.multiplier=10")
    _skip_bad_rows_flag(p)
    p.set_defaults(func=cmd_train)

    sweep = sub.add_parser("sweep", help="plan, run and watch a grid").add_subparsers(dest="action", required=True)
    for name, func, helptext in (
        ("plan", cmd_sweep_plan, "the runs with N, D, FLOPs, device-hours"),
        ("run", cmd_sweep_run, "train (and evaluate) every run; idempotent"),
        ("status", cmd_sweep_status, "TODO / QUEUED / RUNNING / PARTIAL / DONE / FAILED"),
    ):
        p = sweep.add_parser(name, help=helptext)
        p.add_argument("sweep", help="sweep YAML")
        p.add_argument("overrides", nargs="*", help="key=value overrides (defaults.train.seed=1, name=...)")
        if name in ("plan", "status"):
            p.add_argument("--json", action="store_true")
        if name == "run":
            p.add_argument("--backend", default="local", help="local (default) | slurm")
            p.add_argument("--wait", action="store_true", help="slurm: block until the jobs end")
            p.add_argument("--quiet", action="store_true", help="no progress bars")
            _skip_bad_rows_flag(p)
        p.set_defaults(func=func)
    from testbed.sweep.advise import add_parser as add_sweep_advise  # light: the command imports the planner

    add_sweep_advise(sweep)

    p = sub.add_parser("eval", help="downstream evaluation of a run's checkpoints")
    p.add_argument("run_dir")
    p.add_argument("--suite", default="synthetic")
    p.add_argument("--steps", choices=("final", "all"), default="final")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("finetune", help="translation finetuning of a run's checkpoints (or a sweep's runs)")
    p.add_argument("target", help="a run dir, or a sweep YAML with a finetune: section")
    p.add_argument("overrides", nargs="*", help="sweep key=value overrides")
    p.add_argument("--task", help="translation task, e.g. syn_en-syn_fr or a parallel corpus name")
    p.add_argument("--size", action="append", help="finetuning-set size in tokens (repeat for several)")
    p.add_argument("--steps", choices=("final", "all"), default=None, help="checkpoints (default: final)")
    p.add_argument("--protocol", default="finetune", help="configs/eval/<protocol>.yaml (run dir only)")
    p.set_defaults(func=cmd_finetune)

    results = sub.add_parser("results", help="the results table").add_subparsers(dest="action", required=True)
    p = results.add_parser("collect", help="one table from all runs under a directory")
    p.add_argument("workdir")
    p.add_argument("--out", required=True, help="a .parquet or .csv path")
    _skip_bad_rows_flag(p)
    p.set_defaults(func=cmd_results_collect)

    p = sub.add_parser("list", help="what is known: ladders, sizes, mixtures, suites, laws or tasks")
    p.add_argument("what", choices=list(LISTS))
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("analyze", help="laws, fits, predictions, report (see `testbed analyze -h`)", add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=lambda args: _analyze(args.rest))
    return parser


def _skip_bad_rows_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--skip-bad-rows",
        action="store_true",
        help="skip malformed lines of rows.jsonl with a warning (a resume keeps them in "
        "rows.jsonl.bad) instead of stopping at the first",
    )


def _analyze(argv: list[str]) -> int:
    """`testbed analyze ...` is analysis.cli's command line; alone, it lists its commands (exit 2)."""
    from analysis.cli import build_parser as analysis_parser
    from analysis.cli import main as analysis_main

    if not argv:
        analysis_parser().print_help(sys.stderr)
        return 2
    return analysis_main(argv)


def main(argv: list[str] | None = None) -> int:
    for key, value in OFFLINE.items():
        os.environ.setdefault(key, value)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.config_path:  # through the environment: workers and Slurm jobs inherit it
        from testbed.paths import add_config_dirs

        add_config_dirs(args.config_path)
    if args.command == "analyze":  # analysis.cli parses the rest; an option first (-h) comes back as an extra
        return _analyze([*extra, *args.rest])
    # argparse fills `overrides` only up to the first option: key=value words after one come back as extras
    if extra and hasattr(args, "overrides") and all("=" in w and not w.startswith("-") for w in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if getattr(args, "skip_bad_rows", False):  # through the environment: workers and Slurm jobs inherit it
        from testbed.results import SKIP_BAD_ROWS_ENV

        os.environ[SKIP_BAD_ROWS_ENV] = "1"
    try:
        return args.func(args)
    except TestbedError as err:
        print(f"testbed: error: {err}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as err:
        if err.name is None or err.name.split(".")[0] not in TRAIN_EXTRA_MODULES:
            raise
        print(
            f"testbed: error: `testbed {args.command}` needs the training extra (pip install 'testbed[train]'): "
            f"no module named {err.name!r}",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
