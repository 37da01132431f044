"""`testbed analyze ...`: laws, predictions and reports from a results table.

Each subcommand is an `_add_<name>(commands)` function that declares its arguments and sets
`run`, a function of the parsed arguments returning the exit code; add new ones to SUBCOMMANDS.
Errors are AnalysisError: one line on stderr, exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from analysis.errors import AnalysisError
from analysis.extrapolate import Extrapolation, Split, extrapolate, loss_law
from analysis.fitting import Fit
from analysis.laws import LAWS
from analysis.report import save_report
from analysis.select import OWN, load_table

PROG = "testbed analyze"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse would print usage and exit; we want one line
        raise AnalysisError(f"{self.prog}: {message}")


def _add_extrapolation_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", metavar="RESULTS", help="results table (.parquet, .csv or .jsonl)")
    parser.add_argument(
        "--law", default="overtrain", help=f"loss law (default overtrain; known: {', '.join(LAWS)})"
    )
    parser.add_argument(
        "--x",
        default=OWN,
        metavar="NAME",
        help="validation set on the loss axis; 'own' (default): each run's own dataset",
    )
    parser.add_argument(
        "--task",
        nargs="+",
        metavar="NAME",
        help="task(s) whose (mean) error is predicted; default: all tasks",
    )
    parser.add_argument("--metric", default="acc", help="task metric; error = 1 - metric (default acc)")
    parser.add_argument(
        "--heldout",
        nargs="+",
        default=(),
        metavar="RUN_ID",
        help="runs to predict (default: the largest model's)",
    )
    parser.add_argument(
        "--fit-runs",
        nargs="+",
        default=(),
        metavar="RUN_ID",
        help="runs to fit on (default: all not held out)",
    )
    parser.add_argument(
        "--error-fit-runs",
        nargs="+",
        default=(),
        metavar="RUN_ID",
        help="runs to fit Err(L) on (default: the loss fit runs)",
    )
    parser.add_argument(
        "--max-fit-params", type=float, metavar="N", help="hold out every run with more params"
    )
    parser.add_argument(
        "--bootstrap", type=int, default=0, metavar="B", help="bootstrap resamples for CIs (0: none)"
    )
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")


@contextmanager
def _about(path: str) -> Iterator[None]:
    """Name the results file in errors raised while analysing it."""
    try:
        yield
    except AnalysisError as err:
        raise AnalysisError(f"{path}: {err}") from None


def _extrapolate(args: argparse.Namespace) -> Extrapolation:
    loss_law(args.law)  # a bad --law is the command's error, not the file's
    table = load_table(args.results)
    split = Split(tuple(args.heldout), tuple(args.fit_runs), args.max_fit_params, tuple(args.error_fit_runs))
    with _about(args.results):
        return extrapolate(table, args.law, args.x, args.task, args.metric, split, args.bootstrap, args.seed)


def _add_fit(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("fit", help="fit a loss law per training dataset and predict held-out runs")
    _add_extrapolation_options(parser)
    parser.add_argument("--json", action="store_true", help="machine-readable output only")
    parser.set_defaults(run=_run_fit)


def _run_fit(args: argparse.Namespace) -> int:
    result = _extrapolate(args)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, allow_nan=False))
    else:
        print(format_extrapolation(result))
    return 0


def _add_report(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("report", help="write an HTML report with figures")
    _add_extrapolation_options(parser)
    parser.add_argument("--out", required=True, metavar="DIR", help="report directory (replaced atomically)")
    parser.set_defaults(run=_run_report)


def _run_report(args: argparse.Namespace) -> int:
    index = save_report(_extrapolate(args), args.out, source=args.results)
    print(f"report written to {index}")
    return 0


SUBCOMMANDS = (_add_fit, _add_report)


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = _Parser(prog=prog, description="Scaling-law analysis of a results table.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.run(args)
    except AnalysisError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except SystemExit as exit_:  # --help and --version exit through argparse
        return exit_.code if isinstance(exit_.code, int) else 0


def format_extrapolation(result: Extrapolation) -> str:
    """The fits and held-out predictions as readable text."""
    lines = [
        f"law: {result.law.name}   loss axis: {result.x}   downstream: {result.target or 'no task rows'}"
    ]
    for dataset, fits in result.fits.items():
        lines += ["", *_fit_lines(dataset, fits.loss)]
        if fits.bootstrap is not None:
            boot = fits.bootstrap
            intervals = ", ".join(
                f"{k} [{lo:.4g}, {hi:.4g}]" for k, (lo, hi) in boot.param_intervals().items()
            )
            lines.append(
                f"  {boot.level:.0%} bootstrap CI ({boot.n_ok}/{boot.n_resamples} refits): {intervals}"
            )
        if fits.error is not None:
            lines += _fit_lines(dataset, fits.error)
        heldout = result.heldout()
        heldout = heldout[heldout["dataset"] == dataset].drop(
            columns=["dataset", "arch", "seed", "tokens", "flops", "role"]
        )
        if heldout.empty:
            lines.append("  no held-out runs")
        else:
            lines.append("  held out:")
            table = heldout.to_string(index=False, float_format="{:.4g}".format, na_rep="-")
            lines += [f"    {line}" for line in table.splitlines()]
    return "\n".join(lines)


def _fit_lines(dataset: str, fit: Fit) -> list[str]:
    if not fit.ok:
        return [f"{dataset}: {fit.law.name} fit failed ({fit.status}): {fit.reason}"]
    head = f"{dataset}: {fit.law.name} fit on {fit.n_points} runs, residual {fit.residual:.4g}"
    return [head, *(f"  {line}" for line in fit.law.describe(fit.params).splitlines())]


if __name__ == "__main__":
    sys.exit(main())
