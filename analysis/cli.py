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
from dataclasses import replace
from typing import NoReturn

import pandas as pd

from analysis.advisor_cli import add_commands as add_planning_commands
from analysis.backtest import backtest
from analysis.backtest import plot as plot_backtest
from analysis.classify import checkpoints_as_runs, classify, taxonomy_band
from analysis.context import context_sensitivity
from analysis.errors import AnalysisError
from analysis.extrapolate import ASYMPTOTES, FREE, LOSS_FLOORS, Extrapolation, Split, extrapolate, loss_law
from analysis.import_csv import load as import_csv
from analysis.import_csv import parse_pairs
from analysis.json_output import print_json
from analysis.ladder_plots import write_ladder_plots
from analysis.laws import LAWS
from analysis.lr_sweep import SCALES, join_sweeps, lr_sweep
from analysis.narrative import chained_task_errors, replication_story, task_story
from analysis.replicate import LOSS_LAW, replicate
from analysis.report import Extras, save_report
from analysis.schema import write_table
from analysis.seeds import SeedSpread, seed_spread
from analysis.select import OWN, PARAM_COUNTS, TOTAL, load_table
from analysis.studies import STUDIES, Study, release_of
from analysis.translation import HOLDOUT, JUMP, QUANTITIES, TOLERANCE, TranslationAnalysis, analyze_translation

PROG = "testbed analyze"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse would print usage and exit; we want one line
        raise AnalysisError(f"{self.prog}: {message}")


def fit_start(text: str) -> float | str:
    """--fit-from's value: a pretraining token count, or "jump"."""
    if text == JUMP:
        return JUMP
    try:
        tokens = float(text)
    except ValueError:
        tokens = float("nan")
    if not 0 <= tokens < float("inf"):  # NaN, inf and negative counts too
        raise argparse.ArgumentTypeError(f"{text!r} is neither a pretraining token count nor {JUMP!r}")
    return tokens


def _add_extrapolation_options(parser: argparse.ArgumentParser) -> None:
    _add_table_and_axes(parser, "default: all tasks")
    parser.add_argument("--law", default="overtrain", help=f"loss law (default overtrain; known: {', '.join(LAWS)})")
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
    parser.add_argument("--max-fit-params", type=float, metavar="N", help="hold out every run with more params")
    _add_params(parser)
    parser.add_argument("--bootstrap", type=int, default=0, metavar="B", help="bootstrap resamples for CIs (0: none)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")


def _add_params(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--params",
        choices=PARAM_COUNTS,
        default=TOTAL,
        help="how the laws count N, and C = 6 N D with it: total (default: every parameter) or nonembed "
        "(without the embeddings, as Kaplan et al. 2020)",
    )


def _add_table_and_axes(parser: argparse.ArgumentParser, default_tasks: str) -> None:
    """RESULTS, the loss axis --x, the downstream --task(s) and --metric."""
    parser.add_argument("results", metavar="RESULTS", help="results table (.parquet, .csv or .jsonl)")
    parser.add_argument(
        "--x",
        default=OWN,
        metavar="NAME",
        help="validation set on the loss axis; 'own' (default): each run's own dataset",
    )
    parser.add_argument(
        "--task", nargs="+", metavar="NAME", help=f"task(s) whose (mean) error is predicted; {default_tasks}"
    )
    parser.add_argument("--metric", default="acc", help="task metric; error = 1 - metric (default acc)")


def _add_resampling_and_output(parser: argparse.ArgumentParser, bootstrap: int, run) -> None:
    """--bootstrap (default `bootstrap` resamples), --seed, --json, and the function that runs the command."""
    parser.add_argument(
        "--bootstrap", type=int, default=bootstrap, metavar="B", help=f"resamples (default {bootstrap})"
    )
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--json", action="store_true", help="machine-readable output only")
    parser.set_defaults(run=run)


@contextmanager
def _about(path: str) -> Iterator[None]:
    """Name the results file in errors raised while analysing it."""
    try:
        yield
    except AnalysisError as err:
        raise AnalysisError(f"{path}: {err}") from None


def _extrapolate(args: argparse.Namespace, table: pd.DataFrame | None = None) -> Extrapolation:
    loss_law(args.law)  # a bad --law is the command's error, not the file's
    table = load_table(args.results) if table is None else table
    split = Split(tuple(args.heldout), tuple(args.fit_runs), args.max_fit_params, tuple(args.error_fit_runs))
    study = release_of(table)  # a published release keeps its protocol: the mean of every task
    with _about(args.results):
        return extrapolate(table, args.law, args.x, args.task, args.metric, split, args.bootstrap, args.seed,
                           informative=not study, params=args.params)  # fmt: skip


def _add_fit(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("fit", help="fit a loss law per training dataset and predict held-out runs")
    _add_extrapolation_options(parser)
    parser.add_argument("--json", action="store_true", help="machine-readable output only")
    parser.set_defaults(run=_run_fit)


def _run_fit(args: argparse.Namespace) -> int:
    """Exit 1 when a requested fit (a dataset's loss law, or its Err(L)) failed; an unphysical fit is
    printed with its status and exits 0."""
    result = _extrapolate(args)
    _show(result, args.json)
    failures = [f"{dataset}: {fit.law.name} fit failed ({fit.status}): {fit.reason}"
                for dataset, fits in result.fits.items() for fit in (fits.loss, fits.error)
                if fit is not None and not fit.fitted]  # fmt: skip
    for failure in failures:
        print(f"error: {failure}", file=sys.stderr)
    return 1 if failures else 0


def _show(result, as_json: bool) -> int:
    """Print a result: its to_dict() as JSON, or its summary()."""
    if as_json:
        print_json(result.to_dict())
    else:
        print(result.summary())
    return 0


def _add_report(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "report",
        help="write an HTML report with figures",
        description="Loss law and held-out runs, then (with task rows) one panel per task with its class, "
        "and the context-sensitivity table. On an imported gadre2024 table without split options the "
        "loss part follows the paper's protocol and the reproduction table is added. With translation rows, "
        "the translation section (`analyze translation` with its defaults, and its figures); a table of "
        "translation rows only gets that section alone.",
    )
    _add_extrapolation_options(parser)
    parser.add_argument("--out", required=True, metavar="DIR", help="report directory (replaced atomically)")
    parser.add_argument(
        "--classify-x", metavar="NAME", help="loss axis of the task panels (default: --x; c4_val for gadre2024)"
    )
    parser.add_argument(
        "--classify-bootstrap", type=int, default=1000, metavar="B", help="resamples per task (default 1000)"
    )
    parser.add_argument(
        "--context-x",
        metavar="NAME",
        help="second loss axis of the context table (default: the programming-languages set for gadre2024)",
    )
    parser.add_argument(
        "--protocol",
        choices=("extrapolate", "replicate"),
        default="extrapolate",
        help="loss part: extrapolate (the split options above; default) or replicate (Gadre et al.'s roles by "
        "size on own runs, as `analyze replicate`, with a section that says in words what the numbers show)",
    )
    parser.add_argument(
        "--fit-multipliers", action="store_true", help="with --protocol replicate: as `analyze replicate`'s"
    )
    parser.add_argument(
        "--err-final", action="store_true", help="with --protocol replicate: as `analyze replicate --err-final`",
    )  # fmt: skip
    _add_error_asymptote(parser, "with --protocol replicate: ")
    _add_loss_floor(parser, "with --protocol replicate: ")
    parser.add_argument(
        "--translation-fit-from", type=fit_start, default=0.0, metavar="TOKENS|jump",
        help="the translation section: as `analyze translation --fit-from` (default 0: every checkpoint)",
    )  # fmt: skip
    parser.set_defaults(run=_run_report)


def _run_report(args: argparse.Namespace) -> int:
    table = load_table(args.results)
    study = release_of(table)
    with _about(args.results):
        _check_report_options(args)
        translation = None
        if _has_rows(table, "translation"):
            translation = analyze_translation(table, fit_from=args.translation_fit_from)
        result, extras = None, Extras()
        if translation is None or _has_rows(table, "val_loss"):  # no loss rows: the translation part alone
            try:
                result, extras = _report_loss_part(args, table, study)
            except AnalysisError as err:
                if translation is None:
                    raise
                # a translation study's loss rows need not make a loss law (one run, say): say so, go on
                print(f"note: the report has no loss section: {err}", file=sys.stderr)
            if result is not None and result.target is not None:
                extras = _report_task_part(args, table, study, extras)
    extras = replace(extras, translation=translation)
    index = save_report(result, args.out, source=args.results, extras=extras, table=table)
    print(f"report written to {index}")
    return 0


def _has_rows(table: pd.DataFrame, kind: str) -> bool:
    return bool((table["kind"] == kind).fillna(False).any())


def _own_split(args: argparse.Namespace) -> bool:
    return bool(args.heldout or args.fit_runs or args.error_fit_runs or args.max_fit_params is not None)


def _check_report_options(args: argparse.Namespace) -> None:
    """Options that contradict each other: an error before any work."""
    protocol_only = {"--fit-multipliers": args.fit_multipliers, "--err-final": args.err_final,
                     "--error-asymptote": args.error_asymptote != FREE,
                     "--loss-floor": args.loss_floor != FREE}  # fmt: skip
    if args.protocol != "replicate" and (given := [name for name, on in protocol_only.items() if on]):
        raise AnalysisError(f"{', '.join(given)}: only with --protocol replicate")
    if args.protocol == "replicate" and (_own_split(args) or args.law != LOSS_LAW):
        raise AnalysisError(f"--protocol replicate assigns the runs' roles itself, with the law {LOSS_LAW}: "
                            "drop --law, --heldout, --fit-runs, --error-fit-runs and --max-fit-params")  # fmt: skip


def _report_loss_part(
    args: argparse.Namespace, table: pd.DataFrame, study: Study | None
) -> tuple[Extrapolation, Extras]:
    """The extrapolation, and the reproduction when the table is a study's release and no option
    departs from its protocol."""
    own_split = _own_split(args)
    if args.protocol == "replicate":
        rep = replicate(table, args.x, args.task, args.metric, args.bootstrap or 1000, args.seed,
                        args.fit_multipliers, False if args.err_final else None, params=args.params,
                        error_asymptote=args.error_asymptote, loss_floor=args.loss_floor)  # fmt: skip
        return rep.result, Extras(replication=rep.table(), story=tuple(replication_story(rep)))
    if (
        study
        and not own_split
        and args.x == OWN
        and not args.task
        and args.law == study.loss_law
        and args.params == TOTAL
    ):
        reproduction = study.reproduce(table, args.bootstrap, args.seed)
        return reproduction.result, Extras(reproduction=reproduction.records)
    return _extrapolate(args, table), Extras()


def _report_task_part(args: argparse.Namespace, table: pd.DataFrame, study: Study | None, extras: Extras) -> Extras:
    """The task verdicts and, with two training corpora and a second loss axis, the context table."""
    axis = args.classify_x or (study.x if study and args.x == OWN else args.x)
    verdicts = classify(table, axis, n_bootstrap=args.classify_bootstrap, seed=args.seed,
                        chance=study.chance_levels() if study else None)  # fmt: skip
    second = args.context_x or (study.second_x if study else None)
    context = None
    if second and table["dataset"].nunique() > 1:
        context = context_sensitivity(table, axis, second, seed=args.seed)
    story = extras.story
    if args.protocol == "replicate":
        predictable = [v.task for v in verdicts if v.cls == "predictable"]
        chains = chained_task_errors(table, predictable, x=args.x, metric=args.metric, seed=args.seed,
                                     fit_multipliers=args.fit_multipliers, params=args.params,
                                     error_asymptote=args.error_asymptote, loss_floor=args.loss_floor)  # fmt: skip
        story += tuple(task_story(verdicts, chains))
    return replace(extras, verdicts=verdicts, context=context, seeds=_seed_spread(table, axis), story=story)


def _seed_spread(table: pd.DataFrame, x: str) -> SeedSpread | None:
    """The table's seed spread, None when its runs cannot be grouped into configurations."""
    try:
        return seed_spread(table, x)
    except AnalysisError:
        return None  # the verdicts' notes say why (classify measures it the same way)


def _add_import(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "import",
        help="published results, or any CSV of runs -> a results table",
        description="`import STUDY [DIR]`: a published study's released data (default: the copy shipped in "
        "analysis/data). `import csv FILE --map run=COL,params=COL,tokens=COL,...`: any CSV, one row per run or "
        "per checkpoint (map step), numbers in wide columns (loss:NAME=COL, task:NAME[:METRIC]=COL) or long rows "
        "(name=COL,value=COL,kind=COL[,metric=COL][,stderr=COL]); --set KEY=VALUE gives constant metadata.",
    )
    parser.add_argument("study", choices=[*STUDIES.names(), "csv"], help="which published results, or csv")
    parser.add_argument(
        "data", nargs="?", metavar="DIR", help="the released data (default: the shipped copy); for csv: the file"
    )
    parser.add_argument("--out", required=True, metavar="FILE", help="results table (.parquet, .csv, .jsonl)")
    parser.add_argument("--map", metavar="KEY=COLUMN,...", help="csv only: which column holds what")
    parser.add_argument("--set", metavar="KEY=VALUE,...", default="", help="csv only: constant run metadata")
    parser.set_defaults(run=_run_import)


def _run_import(args: argparse.Namespace) -> int:
    if args.study == "csv":
        if not args.data or not args.map:
            raise AnalysisError(f"{PROG} import csv: needs FILE and --map KEY=COLUMN,...")
        mapping, constants = parse_pairs(args.map, "--map"), parse_pairs(args.set, "--set")
        table = import_csv(args.data, mapping, constants)
    elif args.map or args.set:
        raise AnalysisError(f"{PROG} import {args.study}: --map and --set are for csv only")
    else:
        table = STUDIES.get(args.study).load(args.data)
    try:
        write_table(table, args.out)
    except (ValueError, OSError) as err:
        raise AnalysisError(f"{args.out}: cannot write ({err})") from None
    kinds = table.groupby("kind")["name"].nunique()
    print(
        f"imported {table['run_id'].nunique()} runs ({len(table)} rows: {kinds.get('val_loss', 0)} validation "
        f"losses, {kinds.get('task', 0)} tasks) to {args.out}"
    )
    return 0


def _add_reproduce(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("reproduce", help="rerun a published protocol on its released data")
    parser.add_argument("study", choices=STUDIES.names(), help="which published protocol")
    parser.add_argument(
        "--data", metavar="DIR", help="released data directory or imported results file (default: shipped copy)"
    )
    parser.add_argument(
        "--bootstrap", type=int, metavar="B", help="resamples (default 1000; olmo_ladder 200: each refits both steps)"
    )
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--json", action="store_true", help="machine-readable output only")
    parser.set_defaults(run=_run_reproduce)


# studies whose protocol refits slower than the default allows
REPRODUCE_BOOTSTRAP = {"olmo_ladder": 200}


def _run_reproduce(args: argparse.Namespace) -> int:
    study = STUDIES.get(args.study)
    n_bootstrap = args.bootstrap if args.bootstrap is not None else REPRODUCE_BOOTSTRAP.get(args.study, 1000)
    with _about(args.data) if args.data else _nothing():
        reproduction = study.reproduce(study.table(args.data), n_bootstrap, args.seed)
    if args.json:
        print_json(reproduction.records)
    else:
        print(reproduction.summary())
    return 0


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def _add_replicate(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "replicate",
        help="Gadre et al.'s protocol on own runs: fit small sizes, predict larger and over-trained ones",
        description="Per training dataset: the over-training law on the four smallest sizes (by params) at M = 20 "
        "and the smallest at its largest multiplier up to 320, Err(L) on those and the next size at M = 20, "
        "chained predictions for every run of a larger size. Fits on seed means; the measured seed-to-seed SD "
        "widens the intervals.",
    )
    _add_table_and_axes(parser, "default: those that leave chance within the fit runs")
    parser.add_argument("--arch", metavar="NAME", help="only the runs of this architecture")
    parser.add_argument(
        "--fit-multipliers",
        action="store_true",
        help="also fit the other multipliers of the four fit sizes within the fit set's compute",
    )
    parser.add_argument(
        "--err-final", action="store_true",
        help="fit Err(L) on the final checkpoints of its fit runs alone, as the paper does (default: on every "
        "scored checkpoint where the sweep scored intermediate ones; the summary compares their residuals)",
    )  # fmt: skip
    _add_error_asymptote(parser, "")
    _add_loss_floor(parser, "")
    _add_params(parser)
    _add_resampling_and_output(parser, 1000, _run_replicate)


def _add_error_asymptote(parser: argparse.ArgumentParser, prefix: str) -> None:
    parser.add_argument(
        "--error-asymptote", choices=ASYMPTOTES, default=FREE,
        help=f"{prefix}Err(L)'s epsilon, the error at infinite loss: free (fitted, as Gadre et al.; default) or "
        "chance (held at the averaged tasks' chance error, from the rows' chance column)",
    )  # fmt: skip


def _add_loss_floor(parser: argparse.ArgumentParser, prefix: str) -> None:
    parser.add_argument(
        "--loss-floor", choices=LOSS_FLOORS, default=FREE,
        help=f"{prefix}the loss law's irreducible loss E: free (fitted, as Gadre et al.; default) or entropy "
        "(held at the validation text's entropy under its generator, the rows' entropy_floor; fitted, with a "
        "warning, where none is known)",
    )  # fmt: skip


def _run_replicate(args: argparse.Namespace) -> int:
    table = load_table(args.results)
    with _about(args.results):
        if args.arch is not None:
            if args.arch not in set(table["arch"].dropna()):
                raise AnalysisError(
                    f"no runs of arch {args.arch!r}; archs: {', '.join(sorted(table['arch'].dropna().unique()))}"
                )
            table = table[(table["arch"] == args.arch).fillna(False)]
        result = replicate(table, args.x, args.task, args.metric, args.bootstrap, args.seed, args.fit_multipliers,
                           False if args.err_final else None, params=args.params,
                           error_asymptote=args.error_asymptote, loss_floor=args.loss_floor)  # fmt: skip
    if args.json:
        print_json(result.records)
    else:
        print(result.summary())
        print("\nwhat this shows:", *(f"  {line}" for line in replication_story(result)), sep="\n")
    return 0


def _add_classify(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("classify", help="put every task's scaling curve in one of six classes")
    parser.add_argument("results", metavar="RESULTS", help="results table (.parquet, .csv or .jsonl)")
    parser.add_argument("--x", required=True, metavar="NAME", help="validation set on the loss axis, e.g. c4_val")
    parser.add_argument("--task", nargs="+", metavar="NAME", help="tasks to classify (default: all)")
    parser.add_argument("--metric", default="acc", help="task metric (default acc)")
    parser.add_argument(
        "--pooled", action="store_true", help="one law for all training corpora (default: one per corpus)"
    )
    _add_resampling_and_output(parser, 1000, _run_classify)


def _run_classify(args: argparse.Namespace) -> int:
    table = load_table(args.results)
    study = release_of(table)
    with _about(args.results):
        verdicts = classify(table, args.x, args.task, args.bootstrap, args.seed, metric=args.metric,
                            chance=study.chance_levels() if study else None, pooled=args.pooled)  # fmt: skip
    if args.json:
        print_json(verdicts.to_list())
    else:
        print(verdicts.summary())
    return 0


def _add_taxonomy_band(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "taxonomy-band",
        help="the share of predictable tasks over the defensible choices (loss axis, pooled, thresholds)",
        description="Classifies every task (as `classify`, without resamples) on every loss axis, pooled and per "
        "corpus, and re-decides under every combination of the thresholds in classify.BAND_CRITERIA; prints the "
        "range of the share of predictable tasks beside Lourie et al.'s 39 %. Runs evaluated at several numbers "
        "of shots are split by it.",
    )
    parser.add_argument("results", metavar="RESULTS", help="results table (.parquet, .csv or .jsonl)")
    parser.add_argument(
        "--x", nargs="+", metavar="NAME", help="loss axes (default: every validation set with a final row on every run)"
    )
    parser.add_argument("--task", nargs="+", metavar="NAME", help="tasks (default: all)")
    parser.add_argument("--metric", default="acc", help="task metric (default acc)")
    parser.add_argument(
        "--checkpoints", metavar="RUN_ID", help="the curve over one run's checkpoints instead of over runs"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output only")
    parser.set_defaults(run=_run_taxonomy_band)


def _run_taxonomy_band(args: argparse.Namespace) -> int:
    table = load_table(args.results)
    with _about(args.results):
        if args.checkpoints:
            table = checkpoints_as_runs(table, args.checkpoints)
        band = taxonomy_band(table, args.x, args.metric, args.task)
    return _show(band, args.json)


def _add_context(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "context", help="does the order of two training corpora flip when the loss axis changes?"
    )
    parser.add_argument("results", metavar="RESULTS", help="results table (.parquet, .csv or .jsonl)")
    parser.add_argument("--x", required=True, metavar="NAME", help="first validation set (axis 1)")
    parser.add_argument("--vs", required=True, metavar="NAME", help="second validation set (axis 2)")
    parser.add_argument("--task", nargs="+", metavar="NAME", help="tasks (default: all)")
    _add_resampling_and_output(parser, 200, _run_context)


def _run_context(args: argparse.Namespace) -> int:
    table = load_table(args.results)
    with _about(args.results):
        frame = context_sensitivity(table, args.x, args.vs, args.task, args.bootstrap, args.seed)
    if args.json:
        print_json(json.loads(frame.to_json(orient="records", double_precision=6)))
    else:
        print(f"axis 1: {args.x}   axis 2: {args.vs}   gap = corpus_a - corpus_b accuracy at equal loss")
        print(frame.to_string(index=False, float_format="{:.3f}".format, na_rep="-"))
        print(f"\n{(frame['verdict'] == 'flip').sum()} flips in {len(frame)} (task, corpus pair) rows")
    return 0


def _add_results_and_x(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", metavar="RESULTS", help="results table (.parquet, .csv or .jsonl)")
    parser.add_argument("--x", default=OWN, metavar="NAME", help="validation set; 'own' (default): the run's dataset")


def _add_lr(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "lr",
        help="LR sweeps: each rung's best peak LR against the ladder's rule, and the optimum's exponent",
        description="Per configuration (dataset, arch, size, multiplier, batch size) run at 3 or more peak LRs: "
        "the final loss at each (seed means), the best LR and the log-parabola optimum, the rule's run "
        "(lr_factor 1, or --chosen-factor) and whether its loss is within the tolerance of the best; edges of "
        "the swept range are flagged. Across sizes: the optimum LR as a power of the model size beside the rule's.",
    )
    _add_results_and_x(parser)
    parser.add_argument(
        "--tolerance", type=float, default=0.01, help="relative loss gap of the rule's LR still ok (default 0.01)"
    )
    parser.add_argument("--against", choices=SCALES, default="params", help="model size axis of the exponent")
    parser.add_argument("--with", dest="more", nargs="+", default=[], metavar="TABLE",
                        help="more results tables whose runs join RESULTS' (a run already in it, by id or by "
                        "configuration, LR and seed, is skipped): the sweep that trained the chosen LR's "
                        "runs")  # fmt: skip
    parser.add_argument("--chosen-factor", type=float, default=1.0, metavar="F",
                        help="the lr_factor the study trains at, whose run is checked (default 1: the ladder's "
                        "rule)")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="machine-readable output only")
    parser.set_defaults(run=_run_lr)


def _run_lr(args: argparse.Namespace) -> int:
    table = load_table(args.results)
    for path in args.more:
        table = join_sweeps(table, load_table(path))
    with _about(args.results):
        result = lr_sweep(table, args.x, args.tolerance, args.against, args.chosen_factor)
    return _show(result, args.json)


def _add_ladder_plots(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "ladder-plots",
        help="figures of the ladder: loss per step (iso-step), the over-training law's and the frontier's residuals",
        description="Writes DIR/iso_step.png (validation loss against step for every rung at --multiplier), "
        "DIR/residuals.png (the over-training law fitted as `replicate` does, else with the largest size held "
        "out, and each run's observed / predicted - 1) and DIR/frontier.png (L = E + A C^-alpha on the runs at "
        "--multiplier, and its residuals). LR sweeps enter the fits at each configuration's best LR.",
    )
    _add_results_and_x(parser)
    parser.add_argument("--out", required=True, metavar="DIR", help="directory for the figures (created)")
    parser.add_argument("--multiplier", type=float, default=20.0, help="token multiplier of iso-step and frontier")
    parser.add_argument("--bootstrap", type=int, default=0, metavar="B", help="resamples of the law's fit (default 0)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument(
        "--fit-multipliers", action="store_true", help="the residual plot's fit as analyze replicate --fit-multipliers"
    )
    _add_params(parser)
    parser.set_defaults(run=_run_ladder_plots)


def _run_ladder_plots(args: argparse.Namespace) -> int:
    table = load_table(args.results)
    with _about(args.results):
        lines = write_ladder_plots(
            table, args.out, args.x, args.multiplier, args.bootstrap, args.seed, args.fit_multipliers, args.params
        )
    print("\n".join(lines))
    return 0


def _add_translation(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "translation",
        help="Isik et al.'s laws on translation rows: BLEU etc. and cross-entropy against pretraining tokens",
        description="Per series (arch, size, task, mixture, finetuning size): Isik's log law f(D) = "
        "c (log(D/D0))^beta [= (log(A D^alpha))^beta] to BLEU, chrF, ROUGE-L (and COMET) and L(D) = E + A / D^alpha "
        "to cross-entropy, fitted on all but the last --holdout pretraining token counts and predicting those; "
        "Spearman of each series; a verdict per series (aligned, misaligned, undetermined) with its reason; the best "
        "checkpoint's BLEU gain over no pretraining per finetuning size. --json: one record per held-out point.",
    )
    parser.add_argument("results", metavar="RESULTS", help="results table (.parquet, .csv or .jsonl)")
    parser.add_argument(
        "--holdout", type=int, default=HOLDOUT, metavar="K", help=f"last D_p values predicted (default {HOLDOUT})"
    )
    parser.add_argument(
        "--tolerance", type=float, default=TOLERANCE, metavar="T",
        help=f"relative error of the held-out BLEU the log law may make and still hold (default {TOLERANCE:g})",
    )  # fmt: skip
    parser.add_argument(
        "--metric", nargs="+", choices=QUANTITIES, metavar="NAME",
        help=f"quantities to fit and show (default: all with rows; of {', '.join(QUANTITIES)})",
    )  # fmt: skip
    parser.add_argument(
        "--fit-from", type=fit_start, default=0.0, metavar="TOKENS|jump",
        help="fit the laws to the checkpoints from this many pretraining tokens on, e.g. after BLEU breaks "
        "through; the earlier ones are shown, neither fitted nor held out (default 0: all). jump: each series "
        "from the checkpoint after its jump (its largest rise, if beyond noise and over twice the median rise), "
        "looked for among the fitted checkpoints only",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="machine-readable output only")
    parser.set_defaults(run=_run_translation)


def _run_translation(args: argparse.Namespace) -> int:
    table = load_table(args.results)
    with _about(args.results):
        result: TranslationAnalysis = analyze_translation(
            table, args.metric, args.holdout, args.tolerance, args.fit_from
        )
    if args.json:
        print_json(result.records())
    else:
        print(result.summary())
    return 0


def _add_backtest(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "backtest",
        help="rollout backtest: each size above the smallest few predicted from the sizes below it",
        description="For every rung (model size) above the --min-fit-sizes smallest: fit the loss law (and per "
        "task Err(L)) on all runs of smaller sizes and predict that rung's final loss and each task's error, "
        "chained; the errors against the compute ratio of the predicted run to the largest fit run. On an "
        "imported study the loss axis defaults to the study's (c4_val, c4_en, lambada_openai).",
    )
    _add_results_and_x(parser)
    parser.add_argument("--law", default="overtrain", help=f"loss law (default overtrain; known: {', '.join(LAWS)})")
    parser.add_argument("--metric", default="acc", help="task metric; error = 1 - metric (default acc)")
    parser.add_argument("--min-fit-sizes", type=int, default=3, metavar="K", help="sizes the first fit uses")
    parser.add_argument("--plot", metavar="FILE", help="write the error-against-distance figure (.png, .pdf)")
    parser.add_argument("--json", action="store_true", help="machine-readable output only")
    parser.set_defaults(run=_run_backtest)


def _run_backtest(args: argparse.Namespace) -> int:
    loss_law(args.law)
    table = load_table(args.results)
    study = release_of(table)
    x = study.x if study is not None and args.x == OWN else args.x
    with _about(args.results):
        result = backtest(table, x, args.law, args.metric, args.min_fit_sizes)
    if args.plot:
        plot_backtest(result, args.plot)
    if args.json:
        print_json(result.to_dict())
    else:
        print(result.summary())
        if args.plot:
            print(f"figure written to {args.plot}")
    return 0


SUBCOMMANDS = (
    _add_fit,
    _add_report,
    _add_import,
    _add_reproduce,
    _add_replicate,
    _add_classify,
    _add_taxonomy_band,
    _add_context,
    _add_lr,
    _add_ladder_plots,
    _add_translation,
    _add_backtest,
    add_planning_commands,  # advise-backtest, forecast, score
)


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


if __name__ == "__main__":
    sys.exit(main())
