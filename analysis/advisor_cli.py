"""`testbed analyze advise-backtest | forecast | score`: planning a study (docs/planning.md).

`add_commands(commands)` adds the three subcommands to `testbed analyze`'s parser; each sets `run`, a function of
the parsed arguments returning the exit code. Errors are AnalysisError: one line on stderr, exit code 2.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from analysis.advise_backtest import backtest, protocol_for
from analysis.errors import AnalysisError
from analysis.forecast import forecast, read_forecast, read_plan, score, score_summary
from analysis.json_output import print_json, strict
from analysis.select import OWN, load_table
from analysis.studies import STUDIES


def add_commands(commands: argparse._SubParsersAction) -> None:
    _add_backtest(commands)
    _add_forecast(commands)
    _add_score(commands)


def _add_backtest(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "advise-backtest",
        help="the advisor against the paper's fit set, random and largest-first choices on a published grid",
        description="From a small seed set, the advisor picks runs one by one from the pool of small runs under "
        "a FLOP budget (a fraction of the paper's fit set's); every strategy is scored at the paper's held-out "
        "targets with the paper's fits. --json: one record per (strategy, dataset, target, quantity).",
    )
    parser.add_argument("study", choices=STUDIES.names(), help="which published grid")
    parser.add_argument("--data", metavar="DIR", help="released data directory or imported results file")
    parser.add_argument("--budget-fraction", type=float, default=0.5, metavar="F",
                        help="budget as a fraction of the paper's fit set's FLOPs (default 0.5)")  # fmt: skip
    parser.add_argument("--min-multiplier", type=float, default=0.0, metavar="M",
                        help="pool: only runs with at least this multiplier (default: all)")  # fmt: skip
    parser.add_argument("--draws", type=int, default=100, metavar="N", help="random draws (default 100)")
    parser.add_argument("--bootstrap", type=int, default=200, metavar="B", help="resamples of each score (default 200)")
    parser.add_argument("--advisor-draws", type=int, default=64, metavar="B", help="the criterion's draws (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draws and bootstraps")
    parser.add_argument("--json", action="store_true", help="machine-readable output only")
    parser.set_defaults(run=_run_backtest)


def _run_backtest(args: argparse.Namespace) -> int:
    study = STUDIES.get(args.study)
    start = time.monotonic()
    table = study.table(args.data)
    protocol = protocol_for(study, table, args.seed, args.min_multiplier)
    result = backtest(table, protocol, args.budget_fraction, args.draws, args.bootstrap, args.seed, args.advisor_draws)
    if args.json:
        print_json(result.records)
    else:
        print(result.summary())
        print(f"\npool: runs with M >= {args.min_multiplier:g}" if args.min_multiplier else "\npool: all multipliers")
        print(f"wall time {time.monotonic() - start:.0f} s")
    return 0


def _add_forecast(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "forecast",
        help="register predictions for a sweep's runs not done yet (loss; predictable tasks' error)",
        description="For every run of the plan not in RESULTS: the loss law fitted on the done runs of its dataset "
        "predicts its loss with a bootstrap interval; each task the classifier calls predictable gets its chained "
        "error and interval, any other is marked with its class and no interval. Written as JSON with the fit set "
        "(run ids, hash of their rows) and the time.",
    )
    parser.add_argument("results", metavar="RESULTS", help="results table (.parquet, .csv or .jsonl)")
    parser.add_argument("--runs", required=True, metavar="PLAN",
                        help="the sweep's plan: testbed sweep plan SWEEP --json > PLAN")  # fmt: skip
    parser.add_argument("--out", required=True, metavar="FILE", help="the forecast (JSON)")
    parser.add_argument("--x", default=OWN, metavar="NAME", help="validation set of the loss (default: own)")
    parser.add_argument("--law", default="overtrain", help="loss law (default overtrain)")
    parser.add_argument("--metric", default="acc", help="task metric; error = 1 - metric (default acc)")
    parser.add_argument("--bootstrap", type=int, default=1000, metavar="B", help="resamples (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.set_defaults(run=_run_forecast)


def _run_forecast(args: argparse.Namespace) -> int:
    plan = read_plan(args.runs)
    table = load_table(args.results)
    try:
        record = forecast(table, plan, args.x, args.law, args.metric, args.bootstrap, args.seed)
    except AnalysisError as err:
        raise AnalysisError(f"{args.results}: {err}") from None
    record |= {"results": str(args.results), "plan": str(args.runs)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(strict(record), indent=1, allow_nan=False) + "\n")
    runs = {f["run_id"] for f in record["forecasts"]}
    marked = sum(1 for f in record["forecasts"] if not f["predictable"])
    print(f"{len(record['forecasts'])} forecasts for {len(runs)} runs not done ({marked} for tasks not predictable: "
          f"no interval) -> {out}")  # fmt: skip
    return 0


def _add_score(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("score", help="score a forecast against the runs done since: error and coverage")
    parser.add_argument("forecast", metavar="FORECAST", help="a file written by `analyze forecast`")
    parser.add_argument("results", metavar="RESULTS", help="results table with the finished runs")
    parser.add_argument("--json", action="store_true", help="machine-readable output only")
    parser.set_defaults(run=_run_score)


def _run_score(args: argparse.Namespace) -> int:
    record = read_forecast(args.forecast)
    table = load_table(args.results)
    try:
        result = score(record, table)
    except (AnalysisError, KeyError, TypeError) as err:
        raise AnalysisError(f"{args.forecast}: cannot score ({err})") from None
    if args.json:
        print_json(result)
    else:
        print(score_summary(result))
    return 0
