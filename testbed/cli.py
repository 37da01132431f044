"""The `testbed` command (DESIGN.md 3.2). Bad input: one line on stderr, exit code 2."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from testbed.errors import TestbedError

OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "WANDB_MODE": "offline"}


def _sweep_runs(args):
    from testbed.config import load_sweep_config
    from testbed.sweep.expand import expand

    sweep = load_sweep_config(args.sweep, args.overrides)
    return sweep, expand(sweep, str(args.sweep))


def cmd_train(args) -> int:
    from testbed.config import load_run_config
    from testbed.train import train

    config, overrides = args.config, list(args.overrides)
    if config is not None and "=" in config:  # no file given: the first word is an override
        config, overrides = None, [config, *overrides]
    print(train(load_run_config(config, overrides)))
    return 0


def cmd_sweep_plan(args) -> int:
    from testbed.sweep.plan import format_plan, plan_rows

    _, runs = _sweep_runs(args)
    rows = plan_rows(runs)
    print(json.dumps(rows, indent=1) if args.json else format_plan(rows))
    return 0


def cmd_sweep_run(args) -> int:
    from testbed.sweep.launch import run_sweep

    sweep, runs = _sweep_runs(args)
    if args.quiet:  # also the bars and notices of lm-eval and datasets inside the eval stage
        os.environ["TQDM_DISABLE"] = "1"
        logging.getLogger("lm_eval").setLevel(logging.ERROR)
    return run_sweep(sweep, runs, args.backend, progress=not args.quiet, wait=args.wait)


def cmd_sweep_status(args) -> int:
    from testbed.sweep.status import format_status, sweep_status

    sweep, runs = _sweep_runs(args)
    rows = sweep_status(runs, sweep.eval_suite)
    print(json.dumps(rows, indent=1) if args.json else format_status(rows))
    return 0


def cmd_eval(args) -> int:
    from testbed.evaluate.suite import eval_run

    written = eval_run(Path(args.run_dir), args.suite, steps=args.steps)
    print(f"{written} rows written to {Path(args.run_dir) / 'rows.jsonl'}")
    return 0


def cmd_results_collect(args) -> int:
    from testbed.results import collect, write_table

    table = collect(Path(args.workdir))
    write_table(table, Path(args.out))
    print(f"{len(table)} rows from {table['run_id'].nunique()} runs -> {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="testbed", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="one run")
    p.add_argument("config", nargs="?", help="run config YAML (default: built-in defaults)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.multiplier=10")
    p.set_defaults(func=cmd_train)

    sweep = sub.add_parser("sweep", help="plan, run and watch a grid").add_subparsers(dest="action", required=True)
    for name, func, helptext in (("plan", cmd_sweep_plan, "the runs with N, D, FLOPs, device-hours"),
                                 ("run", cmd_sweep_run, "train (and evaluate) every run; idempotent"),
                                 ("status", cmd_sweep_status, "TODO / QUEUED / RUNNING / PARTIAL / DONE / FAILED")):
        p = sweep.add_parser(name, help=helptext)
        p.add_argument("sweep", help="sweep YAML")
        p.add_argument("overrides", nargs="*", help="key=value overrides (defaults.train.seed=1, name=...)")
        if name in ("plan", "status"):
            p.add_argument("--json", action="store_true")
        if name == "run":
            p.add_argument("--backend", default="local", help="local (default) | slurm")
            p.add_argument("--wait", action="store_true", help="slurm: block until the jobs end")
            p.add_argument("--quiet", action="store_true", help="no progress bars")
        p.set_defaults(func=func)

    p = sub.add_parser("eval", help="downstream evaluation of a run's checkpoints")
    p.add_argument("run_dir")
    p.add_argument("--suite", default="synthetic")
    p.add_argument("--steps", choices=("final", "all"), default="final")
    p.set_defaults(func=cmd_eval)

    results = sub.add_parser("results", help="the results table").add_subparsers(dest="action", required=True)
    p = results.add_parser("collect", help="one table from all runs under a directory")
    p.add_argument("workdir")
    p.add_argument("--out", required=True, help="a .parquet or .csv path")
    p.set_defaults(func=cmd_results_collect)

    p = sub.add_parser("analyze", help="laws, fits, predictions, report (see `testbed analyze -h`)",
                       add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=lambda args: _analyze(args.rest))
    return parser


def _analyze(argv: list[str]) -> int:
    from analysis.cli import main as analysis_main

    return analysis_main(argv)


def main(argv: list[str] | None = None) -> int:
    for key, value in OFFLINE.items():
        os.environ.setdefault(key, value)
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except TestbedError as err:
        print(f"testbed: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
