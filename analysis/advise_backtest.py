"""Retrospective validation of the advisor on a published grid (`testbed analyze advise-backtest`, docs/planning.md).

Per training dataset: every strategy starts from the same small seed set, picks runs from the pool of small runs
under a FLOP budget (a fraction of the paper's fit set's FLOPs; the seed set counts), and is scored at the paper's
held-out targets with the paper's own fits and bootstrap (analysis.extrapolate, as `reproduce` runs them):
- advisor: one run at a time, analysis.advisor's choice on the runs chosen so far, then the run's real loss and
  error are revealed (as they would be once it has run) and the advisor is asked again;
- paper: the paper's fit set (no budget: its FLOPs are the reference);
- random: runs in random order, each taken while it fits the budget, over many draws (median and spread);
- largest_first: the most expensive runs that still fit the budget, first.
Err(L) is fitted on a strategy's runs and the study's extra Err(L) runs (gadre2024: the 1.4B at M = 20, as the
paper), so the strategies differ only in the small runs they choose; an error record's FLOPs include the extra runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis import gadre2024
from analysis.advisor import Target, advise
from analysis.errors import AnalysisError
from analysis.extrapolate import HELDOUT, Split, extrapolate
from analysis.replicate import label
from analysis.reproduce import ERROR_RECORD, LOSS_RECORD
from analysis.select import downstream_errors, final_losses
from analysis.studies import Study

STRATEGIES = ("advisor", "paper", "random_median", "largest_first")
LOSS = "loss"
RECORD_KEYS = ("strategy", "dataset", "flops", "target", "quantity", "rel_error", "ci_width")


@dataclass(frozen=True)
class Setup:
    """One training dataset's roles: run ids of the paper's fit set, the extra Err(L) runs, the pool of small
    runs, the seed set (in the pool) and the targets (label -> run id)."""

    dataset: str
    paper_fit: tuple[str, ...]
    error_extra: tuple[str, ...]
    pool: tuple[str, ...]
    seed: tuple[str, ...]
    targets: dict[str, str]


@dataclass(frozen=True)
class Protocol:
    """A study's backtest: its loss axis and law, the error quantities scored (name -> tasks, None: every task),
    the tasks of the error the advisor optimises (None: the loss alone) and the setups."""

    x: str
    law: str
    errors: dict[str, tuple[str, ...] | None]
    objective_tasks: tuple[str, ...] | None
    setups: tuple[Setup, ...]


def seed_set(runs: pd.DataFrame) -> tuple[str, ...]:
    """Every run of the smallest size and the second size's run closest to M = 20 (log distance): cheap, and two
    sizes, so that the law's N and D terms are told apart from the start."""
    sizes = runs.groupby("size")["params"].median().sort_values(kind="stable").index
    if len(sizes) < 2:
        raise AnalysisError(f"the pool has {len(sizes)} size(s); a backtest needs at least two")
    second = runs[runs["size"] == sizes[1]]
    closest = second.loc[(np.log(second["multiplier"] / 20)).abs().idxmin(), "run_id"]
    return (*runs.loc[runs["size"] == sizes[0], "run_id"], str(closest))


def gadre_protocol(table: pd.DataFrame, min_multiplier: float = 0.0) -> Protocol:
    """gadre2024: the pool is every run of the four small sizes (all multipliers; with min_multiplier, those at
    least that), the paper's 5 fit runs and its held-out 1.4B and 6.9B targets; Err(L) also on the 1.4B at
    M = 20; quantities loss, err17, err46."""
    runs = final_losses(table, gadre2024.X)
    setups = []
    for dataset in [d for d in gadre2024.DATASETS if d in set(runs["dataset"])]:
        mine = runs[runs["dataset"] == dataset]
        pool = mine[mine["size"].isin(list(gadre2024.LOSS_FIT)) & (mine["multiplier"] >= min_multiplier)]
        fit = gadre2024.loss_fit_runs(dataset)
        extra = tuple(r for r in gadre2024.error_fit_runs(dataset) if r not in fit)
        setups.append(Setup(dataset, fit, extra, tuple(pool["run_id"]), seed_set(pool),
                            gadre2024.heldout_runs(dataset)))  # fmt: skip
    if not setups:
        raise AnalysisError(f"no runs of the {gadre2024.NAME} training datasets {', '.join(gadre2024.DATASETS)}")
    return Protocol(gadre2024.X, "overtrain", {"err17": gadre2024.SUBSET17, "err46": None}, gadre2024.SUBSET17,
                    tuple(setups))  # fmt: skip


def registry_protocol(study: Study, table: pd.DataFrame, seed: int = 0, min_multiplier: float = 0.0) -> Protocol:
    """Any other study of the registry, from its own protocol's roles: the fit and held-out runs of its
    reproduction, the pool every run of the fit set's sizes that is not held out; the loss alone is scored
    (its error quantities are the study's own and unknown here)."""
    runs = study.reproduce(table, 0, seed).result.runs
    setups = []
    for dataset, mine in runs.groupby("dataset", sort=True):
        fit = mine[mine["role"] == "fit"]
        pool = mine[mine["size"].isin(set(fit["size"])) & (mine["role"] != HELDOUT)]
        pool = pool[pool["multiplier"] >= min_multiplier]
        heldout = mine[mine["role"] == HELDOUT]
        targets = {label(str(r.size), float(r.multiplier)): str(r.run_id) for r in heldout.itertuples()}
        setups.append(Setup(str(dataset), tuple(fit["run_id"]), (), tuple(pool["run_id"]), seed_set(pool), targets))
    return Protocol(study.x, study.loss_law, {}, None, tuple(setups))


def protocol_for(study: Study, table: pd.DataFrame, seed: int = 0, min_multiplier: float = 0.0) -> Protocol:
    """The study's backtest: gadre2024's own, any other registered study's from its reproduction's roles."""
    if study.name == gadre2024.NAME:
        return gadre_protocol(table, min_multiplier)
    return registry_protocol(study, table, seed, min_multiplier)


@dataclass(frozen=True)
class Backtest:
    """The records (RECORD_KEYS and observed, predicted, n_runs; random_median adds its spread) and, per dataset,
    the runs each strategy used and the advisor's reasons."""

    records: list[dict]
    chosen: dict[str, dict[str, tuple[str, ...]]]  # dataset -> strategy -> run ids (random: the median draw's none)
    reasons: dict[str, list[str]]  # dataset -> the advisor's one-line reasons, in order
    budgets: dict[str, float]
    settings: dict = field(default_factory=dict)

    def summary(self) -> str:
        frame = pd.DataFrame(self.records)
        frame["rel_error_%"] = 100 * frame["rel_error"]
        lines = [f"advise-backtest: {self.settings}"]
        for dataset, budget in self.budgets.items():
            lines += ["", f"{dataset}: budget {budget:.3g} FLOPs; advisor picked, in order:"]
            lines += [f"  {r}" for r in self.reasons[dataset]] or ["  nothing"]
            mine = frame[frame["dataset"] == dataset]
            table = mine.pivot_table(index=["target", "quantity"], columns="strategy",
                                     values=["rel_error_%", "ci_width"], sort=False)  # fmt: skip
            flops = mine.groupby("strategy")["flops"].min()
            lines.append("  FLOPs (loss fits): " + ", ".join(f"{s} {flops[s]:.3g}" for s in STRATEGIES if s in flops))
            lines += [f"  {line}" for line in table.to_string(float_format="{:.3g}".format).splitlines()]
        return "\n".join(lines)


def score(table: pd.DataFrame, protocol: Protocol, setup: Setup, fit_runs: Sequence[str], n_bootstrap: int,
          seed: int) -> list[dict]:  # fmt: skip
    """Records (target, quantity, observed, predicted, rel_error, ci_width, flops, n_runs) of the paper's fits on
    `fit_runs` (Err(L) also on the setup's extra runs), bootstrapped as `reproduce` does."""
    flops = final_losses(table, protocol.x).set_index("run_id")["flops"]
    split = Split(tuple(setup.targets.values()), tuple(fit_runs), None, (*fit_runs, *setup.error_extra))
    quantities: dict[str, tuple[str, ...] | None] = {LOSS: protocol.objective_tasks, **protocol.errors}
    out, fitted = [], {}
    for quantity, tasks in quantities.items():
        if tasks not in fitted:  # the loss comes with the first error's fit (same fit, same bootstrap)
            fitted[tasks] = extrapolate(
                table,
                protocol.law,
                protocol.x,
                list(tasks) if tasks else None,
                split=split,
                n_bootstrap=n_bootstrap,
                seed=seed,
                informative=False,
            ).runs.set_index("run_id")
        runs = fitted[tasks]
        columns = LOSS_RECORD if quantity == LOSS else ERROR_RECORD
        used = list(fit_runs) if quantity == LOSS else [*fit_runs, *setup.error_extra]
        for target, run_id in setup.targets.items():
            observed, predicted, rel_error, low, high = (runs.at[run_id, c] if c in runs else np.nan for c in columns)
            out.append({"target": target, "quantity": quantity, "observed": _float(observed),
                        "predicted": _float(predicted), "rel_error": _float(rel_error),
                        "ci_width": _float(high - low), "flops": float(flops[used].sum()),
                        "n_runs": len(used)})  # fmt: skip
    return out


def _float(value) -> float:
    return float("nan") if pd.isna(value) else float(value)


def fill(order: Sequence[str], start: Sequence[str], flops: Mapping[str, float], budget: float) -> tuple[str, ...]:
    """`start`, then each run of `order` (not already in) that still fits the budget, in that order."""
    chosen, spent = list(start), sum(flops[r] for r in start)
    for run in order:
        if run not in chosen and spent + flops[run] <= budget * (1 + 1e-9):
            chosen.append(run)
            spent += flops[run]
    return tuple(chosen)


def advisor_picks(runs: pd.DataFrame, setup: Setup, budget: float, draws: int, seed: int, law: str,
                  extra: pd.DataFrame | None) -> tuple[tuple[str, ...], list[str]]:  # fmt: skip
    """The advisor's runs, one at a time from the seed set, each revealed (its observed loss and error) before the
    next is chosen; and the reason given for each."""
    by_id = runs.set_index("run_id", drop=False)
    targets = [
        Target(t, float(by_id.at[r, "params"]), float(by_id.at[r, "multiplier"])) for t, r in setup.targets.items()
    ]
    chosen, reasons = list(setup.seed), []
    while True:
        left = [r for r in setup.pool if r not in chosen]
        spent = float(by_id.loc[chosen, "flops"].sum())
        if not left:
            break
        advice = advise(by_id.loc[chosen], by_id.loc[left], targets, k=1, budget=budget - spent, draws=draws,
                        seed=seed, law=law, error_points=extra)  # fmt: skip
        if not advice.steps:
            reasons.append(f"stopped: {advice.stopped}")
            break
        chosen.append(advice.steps[0].run_id)
        reasons.append(advice.steps[0].reason)
    return tuple(chosen), reasons


def backtest(table: pd.DataFrame, protocol: Protocol, budget_fraction: float = 0.5, draws: int = 100,
             n_bootstrap: int = 200, seed: int = 0, advisor_draws: int = 64) -> Backtest:  # fmt: skip
    """Every strategy on every setup of the protocol (module docstring)."""
    if not 0 < budget_fraction:
        raise AnalysisError(f"--budget-fraction {budget_fraction}: must be positive")
    if draws < 1:
        raise AnalysisError(f"--draws {draws}: at least one random draw")
    runs = final_losses(table, protocol.x)
    if protocol.objective_tasks is not None:
        runs["error"] = runs["run_id"].map(downstream_errors(table, list(protocol.objective_tasks))).astype(float)
    records, chosen, reasons, budgets = [], {}, {}, {}
    rng = np.random.default_rng(seed)
    for setup in protocol.setups:
        mine = table[(table["dataset"] == setup.dataset).fillna(False)]
        flops = runs.set_index("run_id")["flops"].to_dict()
        budget = budget_fraction * sum(flops[r] for r in setup.paper_fit)
        if sum(flops[r] for r in setup.seed) > budget:
            raise AnalysisError(f"{setup.dataset}: the seed set alone costs more than the budget of {budget:.3g} FLOPs")
        budgets[setup.dataset] = budget
        extra = runs[runs["run_id"].isin(setup.error_extra)] if "error" in runs else None
        picks, reasons[setup.dataset] = advisor_picks(runs, setup, budget, advisor_draws, seed, protocol.law, extra)
        pool = [r for r in setup.pool if r not in setup.seed]
        largest = fill(sorted(pool, key=lambda r: -flops[r]), setup.seed, flops, budget)
        chosen[setup.dataset] = {"advisor": picks, "paper": setup.paper_fit, "largest_first": largest}
        for strategy, fit_runs in chosen[setup.dataset].items():
            records += [{"strategy": strategy, "dataset": setup.dataset, **r}
                        for r in score(mine, protocol, setup, fit_runs, n_bootstrap, seed)]  # fmt: skip
        orders = [[pool[i] for i in rng.permutation(len(pool))] for _ in range(draws)]
        draws_records = [score(mine, protocol, setup, fill(order, setup.seed, flops, budget), n_bootstrap, seed)
                         for order in orders]  # fmt: skip
        records += _random_median(setup.dataset, draws_records)
    order = {s: i for i, s in enumerate(STRATEGIES)}
    records.sort(key=lambda r: (r["dataset"], order[r["strategy"]]))
    settings = {"budget_fraction": budget_fraction, "random_draws": draws, "bootstrap": n_bootstrap, "seed": seed,
                "advisor_draws": advisor_draws, "x": protocol.x, "law": protocol.law}  # fmt: skip
    return Backtest([{**{k: r[k] for k in RECORD_KEYS}, **r} for r in records], chosen, reasons, budgets, settings)


def _random_median(dataset: str, draws: list[list[dict]]) -> list[dict]:
    """One record per (target, quantity): the median over draws of each number, with its 10th and 90th percentiles."""
    out = []
    for i, first in enumerate(draws[0]):
        column = {k: np.array([d[i][k] for d in draws], dtype=float) for k in ("rel_error", "ci_width", "flops")}
        record = {"strategy": "random_median", "dataset": dataset, "target": first["target"],
                  "quantity": first["quantity"], "observed": first["observed"], "draws": len(draws)}  # fmt: skip
        for key, values in column.items():
            record[key] = float(np.nanmedian(values))
            record[f"{key}_p10"], record[f"{key}_p90"] = (float(v) for v in np.nanquantile(values, (0.1, 0.9)))
        out.append(record)
    return out
