"""`testbed sweep advise`: which of a sweep's runs not yet done to train next (analysis.advisor, docs/planning.md).

The sweep's cells come from the planner (expand, plan_rows: N, D and the FLOPs a run costs, shared WSD trunks
counted once); the runs done are those of the results table (any table, own or imported) on the target's
training dataset; the rest of the sweep's cells are the candidates. The proposal is written as a sweep file
(the original's keys, its grid cut to one block per proposed run), checked by loading and expanding it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the command imports the planner (and with it torch) only when it runs
    import pandas as pd

    from analysis.advisor import Advice, Target
    from testbed.config import GridBlock, RunConfig, SweepConfig

TARGET_KEYS = ("size", "multiplier", "params", "tokens", "dataset", "label")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "advise", help="the next runs that shrink the prediction interval at a target most per FLOP"
    )
    p.add_argument("sweep", help="sweep YAML: its cells not in RESULTS are the candidates")
    p.add_argument("--results", required=True, help="results table of the runs done (.parquet, .csv, .jsonl)")
    p.add_argument("--target", action="append", nargs="+", required=True, metavar="KEY=VALUE",
                   help="a configuration to predict: size=c6 multiplier=20, or params=6.9e9 tokens=1.38e11 "
                   "(dataset=NAME when the sweep has several); repeat for several targets")  # fmt: skip
    p.add_argument("--budget", type=float, metavar="FLOPS", help="most FLOPs the proposed runs may cost together")
    p.add_argument("--k", type=int, default=3, metavar="N", help="runs to propose (default 3)")
    p.add_argument("--x", default="own", metavar="NAME", help="validation set of the loss (default: each run's own)")
    p.add_argument("--draws", type=int, default=64, metavar="B", help="bootstrap draws of the criterion (default 64)")
    p.add_argument("--seed", type=int, default=0, help="seed of the draws")
    p.add_argument("--json", action="store_true", help="the advice as JSON")
    p.add_argument("--out", metavar="FILE", help="write the proposal as a sweep YAML that `testbed sweep run` accepts")
    p.set_defaults(func=cmd_sweep_advise)


def cmd_sweep_advise(args: argparse.Namespace) -> int:
    import pandas as pd

    from analysis.advisor import advise
    from analysis.errors import AnalysisError
    from analysis.select import final_losses, load_table
    from testbed.config import load_sweep_config
    from testbed.errors import TestbedError
    from testbed.sweep.expand import expand
    from testbed.sweep.plan import plan_rows

    sweep = load_sweep_config(args.sweep)
    runs = expand(sweep, str(args.sweep))
    plan = pd.DataFrame(plan_rows(runs))
    try:
        table = load_table(args.results)
        done = final_losses(table, args.x)
    except AnalysisError as err:
        raise TestbedError(f"{args.results}: {err}" if args.results not in str(err) else str(err)) from None
    targets, dataset = _targets(args.target, runs, plan)
    points = done[done["dataset"] == dataset].copy()
    if points.empty:
        raise TestbedError(f"{args.results}: no done run on dataset {dataset!r} (datasets: "
                           f"{', '.join(sorted(done['dataset'].dropna().unique()))})")  # fmt: skip
    errors = _errors(table, list(points["run_id"]))
    if errors is not None:
        points["error"] = points["run_id"].map(errors).astype(float)
    todo = plan[(plan["dataset"] == dataset) & ~plan["run_id"].isin(set(table["run_id"]))]
    if todo.empty:
        raise TestbedError(f"{args.sweep}: every run on {dataset} is already in {args.results}: nothing to advise")
    candidates = todo.assign(flops=todo["computed_flops"])[["run_id", "params", "multiplier", "tokens", "flops"]]
    try:
        advice = advise(points, candidates, targets, args.k, args.budget, args.draws, args.seed)
    except AnalysisError as err:
        raise TestbedError(f"{args.results}: {err}") from None
    if args.out and advice.steps:
        write_proposal(Path(args.sweep), sweep, advice, Path(args.out))
    if args.json:
        print(json.dumps(advice.to_dict() | {"dataset": dataset, "proposal": args.out}, indent=1))
    else:
        print(f"dataset {dataset}: {len(points)} done runs, {len(candidates)} candidates from {args.sweep}")
        print(advice.summary())
        if args.out:
            print(f"proposal: {args.out}" if advice.steps else "no run proposed: nothing written")
    return 0


def _errors(table: pd.DataFrame, fit_runs: list[str]) -> pd.Series | None:
    """Downstream error per run: the mean over the tasks that leave chance on the done runs (as `analyze fit`)."""
    from analysis.select import downstream_errors, informative_tasks

    choice = informative_tasks(table, fit_runs)
    if choice is None or not choice.kept:
        return None
    return downstream_errors(table, list(choice.kept))


def _targets(specs: list[list[str]], runs: list[RunConfig], plan: pd.DataFrame) -> tuple[list[Target], str]:
    """The --target options as Targets, and the one training dataset they are on."""
    from testbed.errors import TestbedError

    targets, datasets = [], set()
    for words in specs:
        values = _key_values(words)
        if "dataset" in values:
            datasets.add(values["dataset"])
        targets.append(values)
    known = sorted(plan["dataset"].unique())
    if len(datasets) > 1:
        raise TestbedError(f"--target: dataset={sorted(datasets)[1]}: all targets must be on one dataset")
    dataset = datasets.pop() if datasets else (known[0] if len(known) == 1 else None)
    if dataset is None:
        raise TestbedError(f"--target: name dataset=... (the sweep's runs are on {', '.join(known)})")
    if dataset not in known:
        raise TestbedError(f"--target: dataset={dataset}: not a dataset of the sweep ({', '.join(known)})")
    template = next(r for r in runs if r.data.name == dataset)
    return [_target(values, template) for values in targets], dataset


def _key_values(words: list[str]) -> dict[str, str]:
    from testbed.errors import TestbedError

    values = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or key not in TARGET_KEYS:
            raise TestbedError(f"--target: {word!r}: expected KEY=VALUE with KEY one of {', '.join(TARGET_KEYS)}")
        values[key] = value
    return values


def _number(values: dict[str, str], key: str) -> float | None:
    from testbed.errors import TestbedError

    if key not in values:
        return None
    try:
        number = float(values[key])
    except ValueError:
        raise TestbedError(f"--target: {key}={values[key]}: not a number") from None
    if not number > 0:
        raise TestbedError(f"--target: {key}={values[key]}: must be positive")
    return number


def _target(values: dict[str, str], template: RunConfig) -> Target:
    """size= and multiplier= (N from the ladder, as the planner counts it), or params= with tokens= or multiplier=."""
    import copy

    from analysis.advisor import Target
    from testbed.errors import TestbedError
    from testbed.ladder import load_ladder, plan_run

    multiplier, params, tokens = (_number(values, k) for k in ("multiplier", "params", "tokens"))
    if "size" in values:
        size = values["size"]
        rungs = load_ladder(template.model.ladder).rungs(template.model.arch)
        if size not in rungs:
            raise TestbedError(f"--target: size={size}: no such rung in ladder {template.model.ladder} "
                               f"({', '.join(rungs)})")  # fmt: skip
        if params is not None:
            raise TestbedError(f"--target: size={size} and params={values['params']}: give one of them")
        config = copy.deepcopy(template)
        config.model.size, config.train.multiplier = size, 20.0  # N does not depend on M
        params = float(plan_run(config).params)
    if params is None:
        raise TestbedError(f"--target: {' '.join(f'{k}={v}' for k, v in values.items())}: give size= or params=")
    if multiplier is None:
        if tokens is None:
            raise TestbedError(f"--target: {' '.join(f'{k}={v}' for k, v in values.items())}: give multiplier= "
                               "or tokens=")  # fmt: skip
        multiplier = tokens / params
    label = values.get("label") or (f"{values['size']}-M{multiplier:g}" if "size" in values else
                                    f"N{params:.3g}-M{multiplier:.3g}")  # fmt: skip
    return Target(label, params, multiplier)


def _cells(sweep: SweepConfig, source: str) -> dict[str, GridBlock]:
    """Run id -> the one-cell grid block that stands for it (each cell expanded alone, as the sweep would)."""
    import itertools
    from dataclasses import replace

    from testbed.config import GridBlock
    from testbed.ladder import run_id
    from testbed.sweep.expand import axis_values, expand

    cells: dict[str, GridBlock] = {}
    for block in sweep.grid:
        for size, role, multiplier, seed, values in itertools.product(
            block.sizes, block.datasets, block.multipliers, block.seeds, axis_values(block.axes)
        ):
            cell = GridBlock([size], [role], [multiplier], [seed], {k: [v] for k, v in values.items()})
            (config,) = expand(replace(sweep, grid=[cell]), source)
            cells.setdefault(run_id(config), cell)
    return cells


def write_proposal(source: Path, sweep: SweepConfig, advice: Advice, out: Path) -> None:
    """The original sweep file with its grid cut to the proposed runs, each with its expected widths and reason
    as comments; loaded and expanded again to check that it stands for exactly those runs."""
    import yaml
    from omegaconf import OmegaConf

    from testbed.config import load_sweep_config
    from testbed.config_layers import read_yaml
    from testbed.errors import TestbedError
    from testbed.ladder import run_id
    from testbed.sweep.expand import expand

    cells = _cells(sweep, str(source))
    raw = OmegaConf.to_container(read_yaml(source))
    assert isinstance(raw, dict)
    raw["grid"] = [_block_dict(cells[step.run_id]) for step in advice.steps]
    keys = list(advice.widths)
    lines = [f"# Proposed by `testbed sweep advise` from {source} ({advice.law}; docs/planning.md), in order:",
             "# widths now: " + ", ".join(f"{k} {advice.widths[k]:.3g}" for k in keys)]  # fmt: skip
    for i, step in enumerate(advice.steps, 1):
        lines.append(f"# {i}. {step.reason}")
        lines.append("#    expected 95 % widths after: " + ", ".join(f"{k} {step.widths[k]:.3g}" for k in keys))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n" + yaml.safe_dump(raw, sort_keys=False))
    proposed = [run_id(config) for config in expand(load_sweep_config(out), str(out))]
    if proposed != [step.run_id for step in advice.steps]:  # a bug here, not a user's error
        raise TestbedError(f"{out}: the written sweep stands for {proposed}, not the proposed runs")


def _block_dict(cell: GridBlock) -> dict:
    block: dict = {"sizes": cell.sizes, "datasets": cell.datasets, "multipliers": cell.multipliers, "seeds": cell.seeds}
    return block | ({"axes": cell.axes} if cell.axes else {})
