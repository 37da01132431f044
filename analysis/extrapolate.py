"""Fit a loss law on small runs, predict held-out runs, and chain the prediction to downstream error.

Per training dataset (Gadre et al. 2024, arXiv 2403.08540, as in their released fitting code): fit the loss law to the
final validation loss of the fit runs, fit Err(L) on observed (loss, error) pairs of the same runs
(or of Split.error_fit), then predict every run: L_pred from the law, Err_pred = Err(L_pred).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from analysis.diagnostics import compute_ratio, error_warnings, fit_warnings, identified, physical
from analysis.errors import AnalysisError
from analysis.fitting import LEAST_SQUARES_GRID, OK, Fit, fit_law
from analysis.laws import LAWS, Law, get_law
from analysis.resample import Bootstrap, bootstrap, chain, clip_interval
from analysis.select import (
    OWN,
    RUN_COLUMNS,
    TOKENS_PER_PARAM,
    TOTAL,
    TaskChoice,
    chance_errors,
    count_params,
    downstream_errors,
    entropy_floors,
    final_losses,
    informative_tasks,
)

# law input symbol -> run column
RUN_INPUTS = {"N": "params", "M": "multiplier", "D": "tokens", "C": "flops"}
ERROR_LAW = get_law("loss_to_error")
ERROR_METHOD = LEAST_SQUARES_GRID  # Gadre et al. fit Err(L) as they fit the loss law
FREE, CHANCE = "free", "chance"  # Err(L)'s epsilon: fitted, or held at the tasks' chance error
ASYMPTOTES = (FREE, CHANCE)
ENTROPY = "entropy"  # the loss law's floor E held at the validation text's entropy, where its generator gives it
LOSS_FLOORS = (FREE, ENTROPY)
FIT, HELDOUT, UNUSED = "fit", "heldout", "unused"
PREDICTION_COLUMNS = ["role", "compute_ratio", "observed", "predicted", "rel_error", "ci_low", "ci_high"]
# error_at_observed: Err(observed loss), the error law alone, beside the chained Err(predicted loss)
ERROR_COLUMNS = [
    "observed_error",
    "predicted_error",
    "error_rel_error",
    "error_at_observed",
    "error_at_observed_rel_error",
    "error_ci_low",
    "error_ci_high",
    "error_ci_clipped",  # the chained interval reached outside [0, 1] and was clipped to it
    "error_ci_uninformative",  # ... and spans all of it
]


@dataclass(frozen=True)
class Split:
    """Which runs the laws are fitted on and which are predicted as held out.

    Default: hold out the runs of the largest model (by params), fit on all others. `heldout`
    and `max_fit_params` (hold out every run above it) override that; `fit` restricts the fit set,
    leaving the remaining runs unused. `error_fit` names the runs the loss-to-error law is fitted
    on when they differ from the loss law's (Gadre et al. add the 1.4B M=20 run).
    """

    heldout: tuple[str, ...] = ()
    fit: tuple[str, ...] = ()
    max_fit_params: float | None = None
    error_fit: tuple[str, ...] = ()

    def roles(self, runs: pd.DataFrame) -> pd.Series:
        """'fit', 'heldout' or 'unused' for each run."""
        unknown = sorted((set(self.heldout) | set(self.fit) | set(self.error_fit)) - set(runs["run_id"]))
        if unknown:
            raise AnalysisError(f"run id(s) {', '.join(unknown)} not among the runs with the chosen validation loss")
        if self.heldout or self.max_fit_params is not None:
            heldout = runs["run_id"].isin(self.heldout)
            if self.max_fit_params is not None:
                heldout |= runs["params"] > self.max_fit_params
        else:
            heldout = runs["params"] == runs["params"].max()
        fit = runs["run_id"].isin(self.fit) if self.fit else ~heldout
        if (fit & heldout).any():
            both = ", ".join(runs.loc[fit & heldout, "run_id"])
            raise AnalysisError(f"run(s) {both} both fitted and held out")
        return pd.Series(np.select([fit, heldout], [FIT, HELDOUT], UNUSED), index=runs.index)

    def fits_error(self, runs: pd.DataFrame) -> pd.Series:
        """Whether each run is in the loss-to-error fit set (needs the 'role' column)."""
        return runs["run_id"].isin(self.error_fit) if self.error_fit else runs["role"] == FIT


def dropped_runs(table: pd.DataFrame, runs: pd.DataFrame, x: str) -> list[str]:
    """One sentence per run with a final validation loss that `runs` (final_losses on `x`) left out,
    with the reason: no validation set named like its training dataset (x = own, e.g. a mixture whose
    name no validation set carries) or none named x."""
    final = table[(table["kind"] == "val_loss").fillna(False) & table["final"].fillna(False)]
    missing = final[~final["run_id"].isin(runs["run_id"])].drop_duplicates("run_id")
    if x == OWN:
        return [f"run {r.run_id} left out: no final validation loss named like its training dataset {r.dataset!r} "
                "(--x own); name a validation set with --x to include it" for r in missing.itertuples()]  # fmt: skip
    return [f"run {r.run_id} left out: no final validation loss named {x!r}" for r in missing.itertuples()]


def loss_law(name: str) -> Law:
    """The named law, checked to be a law of run sizes (N, M, D, C) that predicts loss."""
    law = get_law(name)
    if not set(law.inputs) <= RUN_INPUTS.keys():
        usable = [n for n, candidate in LAWS.items() if set(candidate.inputs) <= RUN_INPUTS.keys()]
        raise AnalysisError(f"law {name} takes {', '.join(law.inputs)}, not run sizes; loss laws: {', '.join(usable)}")
    return law


def run_inputs(law: Law, runs: pd.DataFrame) -> np.ndarray:
    """The law's inputs read from run columns, shape (len(law.inputs), len(runs)); M is TOKENS_PER_PARAM
    where N is counted other than as designed (select.count_params)."""
    columns = {**RUN_INPUTS, "M": TOKENS_PER_PARAM} if TOKENS_PER_PARAM in runs else RUN_INPUTS
    return runs[[columns[s] for s in law.inputs]].to_numpy(dtype=float).T


def law_multiplier(runs: pd.DataFrame, multiplier: float) -> float:
    """The M the laws see for the runs of one design multiplier: the multiplier itself, or their median
    tokens per counted parameter (select.count_params)."""
    if TOKENS_PER_PARAM not in runs:
        return multiplier
    return float(runs.loc[runs["multiplier"] == multiplier, TOKENS_PER_PARAM].median())


def along_compute(law: Law, flops: np.ndarray, multiplier: float) -> np.ndarray:
    """The law's inputs for hypothetical runs of compute `flops` at a fixed token multiplier."""
    params = np.sqrt(flops / (6 * multiplier))  # C = 6 N D = 6 M N^2
    runs = pd.DataFrame({"params": params, "multiplier": multiplier, "tokens": multiplier * params, "flops": flops})
    return run_inputs(law, runs)


def relative_error(predicted: pd.Series, observed: pd.Series) -> pd.Series:
    return (predicted - observed).abs() / observed


@dataclass(frozen=True)
class DatasetFit:
    loss: Fit
    error: Fit | None = None  # None without task rows
    bootstrap: Bootstrap | None = None
    error_bootstrap: Bootstrap | None = None

    def to_dict(self) -> dict:
        return {
            "loss": self.loss.to_dict(),
            "error": self.error.to_dict() if self.error else None,
            "bootstrap": self.bootstrap.to_dict() if self.bootstrap else None,
            "error_bootstrap": self.error_bootstrap.to_dict() if self.error_bootstrap else None,
        }


@dataclass(frozen=True)
class Extrapolation:
    law: Law
    x: str  # validation set on the loss axis, or "own"
    target: str | None  # what the downstream error measures, None without task rows
    fits: dict[str, DatasetFit]  # by training dataset
    # one row per run: RUN_COLUMNS, then PREDICTION_COLUMNS and ERROR_COLUMNS where computed
    runs: pd.DataFrame
    warnings: tuple[str, ...] = ()  # plain sentences, each naming its training dataset
    tasks: TaskChoice | None = None  # the tasks the default downstream mean kept and left out
    params: str = TOTAL  # how N (and C = 6 N D) is counted: select.PARAM_COUNTS
    floors: dict[str, float] = field(default_factory=dict)  # by dataset where known: the text's entropy

    def heldout(self) -> pd.DataFrame:
        return self.runs[self.runs["role"] == HELDOUT]

    def summary(self) -> str:
        """The fits and held-out predictions per training dataset as readable text."""
        lines = [f"law: {self.law.name}   loss axis: {self.x}   downstream: {self.target or 'no task rows'}"]
        if self.params != TOTAL:
            lines.append(f"N counted: {self.counted()}")
        if self.tasks is not None:
            lines.append(f"tasks: {self.tasks.summary()}")
        heldout = self.heldout().drop(columns=["arch", "seed", "tokens", "flops", "role"])
        if "compute_ratio" in heldout:
            heldout["compute_ratio"] = heldout["compute_ratio"].map("{:.3g}x".format)
        for dataset, fits in self.fits.items():
            lines += ["", fits.loss.summary(dataset)]
            if fits.bootstrap is not None:
                lines.append(f"  {fits.bootstrap.summary()}")
            if fits.error is not None:
                lines.append(fits.error.summary(dataset))
            mine = heldout[heldout["dataset"] == dataset].drop(columns="dataset")
            if mine.empty:
                lines.append("  no held-out runs")
            else:
                table = mine.to_string(index=False, float_format="{:.4g}".format, na_rep="-")
                lines += ["  held out:", *(f"    {line}" for line in table.splitlines())]
        if self.warnings:
            lines += ["", "warnings:", *(f"  {warning}" for warning in self.warnings)]
        return "\n".join(lines)

    def counted(self) -> str:
        """How N and C are counted, in words."""
        if self.params == TOTAL:
            return "every parameter"
        return "without the embeddings (params_nonembed; C = 6 N D and M = D / N with that N)"

    def to_dict(self) -> dict:
        return {
            "law": self.law.name,
            "x": self.x,
            "params": self.params,
            "target": self.target,
            "datasets": {name: fit.to_dict() for name, fit in self.fits.items()},
            "warnings": list(self.warnings),
            "tasks": self.tasks.to_dict() if self.tasks else None,
            # through pandas' JSON writer: missing values of every dtype become null
            "runs": json.loads(self.runs.to_json(orient="records", double_precision=15)),
        }


def extrapolate(
    table: pd.DataFrame,
    law: str = "overtrain",
    x: str = OWN,
    task: str | Sequence[str] | None = None,
    metric: str = "acc",
    split: Split | None = None,
    n_bootstrap: int = 0,
    seed: int = 0,
    method: str = LEAST_SQUARES_GRID,
    informative: bool = True,
    chance: Mapping[str, float] | None = None,
    params: str = TOTAL,
    error_asymptote: str = FREE,
    loss_floor: str = FREE,
) -> Extrapolation:
    """Per training dataset: fit `law` (with the fitting method `method`, a name in
    analysis.fitting.FITTERS) and the loss-to-error law on the fit runs, predict every run.

    Without `task`, the downstream error is the mean over the tasks that leave chance within the fit
    runs, controls excluded (select.informative_tasks, with `chance` accuracies when known);
    informative=False averages every task evaluated on all runs (the published studies' protocol).
    params: how the laws count N (select.count_params): `total` or `nonembed`.
    error_asymptote: `free` (Err(L)'s epsilon fitted, as Gadre et al.) or `chance` (held at each dataset's
    chance error over the averaged tasks, select.chance_errors: the error of a model that has learned nothing).
    loss_floor: `free` (the loss law's floor E fitted) or `entropy` (held at the validation text's entropy under
    its generator, select.entropy_floors: the loss of a model that knows the generator; fitted, with a warning,
    where no entropy is known)."""
    if error_asymptote not in ASYMPTOTES:
        raise AnalysisError(f"error_asymptote {error_asymptote!r}: expected one of {', '.join(ASYMPTOTES)}")
    if loss_floor not in LOSS_FLOORS:
        raise AnalysisError(f"loss_floor {loss_floor!r}: expected one of {', '.join(LOSS_FLOORS)}")
    selected = loss_law(law)
    if loss_floor == ENTROPY and not selected.floor:
        raise AnalysisError(f"loss_floor entropy: the law {selected.name} has no floor parameter to hold")
    split = split or Split()
    runs = count_params(final_losses(table, x), table, params).rename(columns={"loss": "observed"})
    left_out = dropped_runs(table, runs, x)
    runs["role"] = split.roles(runs)
    choice = None
    if task is None and informative:
        choice = informative_tasks(table, list(runs.loc[runs["role"] == FIT, "run_id"]), metric, chance)
        task = list(choice.kept) if choice is not None and choice.kept else None
    errors = downstream_errors(table, task, metric)
    if errors is not None:
        runs["observed_error"] = runs["run_id"].map(errors).astype(float)
    guess = chance_errors(table, task, metric) if errors is not None and error_asymptote == CHANCE else None
    fits, parts, warnings = {}, [], list(left_out)
    floors = entropy_floors(table, x)
    for dataset, group in runs.groupby("dataset", sort=True):
        error_law = ERROR_LAW if guess is None else _at_chance(str(dataset), group, split, guess)
        floor, dataset_law = floors.get(str(dataset)), selected
        if loss_floor == ENTROPY and floor is not None:
            dataset_law = selected.fixed(**{selected.floor: floor})
        elif loss_floor == ENTROPY:
            warnings.append(f"{dataset}: no entropy is known for its text (no generator gives it), so the loss "
                            f"law's {selected.floor} is fitted, not held at it")  # fmt: skip
        fits[dataset], part = _extrapolate_dataset(
            dataset_law, method, group, split, n_bootstrap, seed, error_law, floor
        )
        parts.append(part)
        warnings += [f"{dataset}: {w}" for w in fit_warnings(fits[dataset].loss, part) if w]
        warnings += [f"{dataset}: {w}" for w in error_warnings(fits[dataset].error, part)]
    target = None if errors is None else str(errors.name)
    runs = pd.concat(parts, ignore_index=True)
    runs = runs[[c for c in [*RUN_COLUMNS, TOKENS_PER_PARAM, *PREDICTION_COLUMNS, *ERROR_COLUMNS] if c in runs]]
    return Extrapolation(selected, x, target, fits, runs, tuple(warnings), choice, params, floors)


def _at_chance(dataset: str, runs: pd.DataFrame, split: Split, guess: pd.Series) -> Law:
    """Err(L) with epsilon held at the chance error of one dataset's error-fit runs (one value: their tasks)."""
    values = runs.loc[split.fits_error(runs).to_numpy(), "run_id"].map(guess).astype(float).round(6).unique()
    if len(values) != 1 or not np.isfinite(values[0]):
        raise AnalysisError(f"{dataset}: error_asymptote chance needs one chance accuracy (column chance) for every "
                            f"averaged task of the error-fit runs; found chance errors {values.tolist()}")  # fmt: skip
    return ERROR_LAW.fixed(epsilon=float(values[0]))


def _extrapolate_dataset(
    law: Law,
    method: str,
    runs: pd.DataFrame,
    split: Split,
    n_bootstrap: int,
    seed: int,
    error_law: Law = ERROR_LAW,
    entropy: float | None = None,
) -> tuple[DatasetFit, pd.DataFrame]:
    runs = runs.copy()
    runs["compute_ratio"] = compute_ratio(runs)
    x, observed = run_inputs(law, runs), runs["observed"].to_numpy()
    is_fit = (runs["role"] == FIT).to_numpy()
    loss = fit_law(law, x[:, is_fit], observed[is_fit], method)
    runs["predicted"] = loss.predict(x) if loss.ok else np.nan
    runs["rel_error"] = relative_error(runs["predicted"], runs["observed"])
    boot = None
    if loss.ok and n_bootstrap:
        boot = bootstrap(loss, x[:, is_fit], observed[is_fit], x, n_bootstrap, seed=seed)
        runs["ci_low"], runs["ci_high"] = boot.prediction_interval()
    loss = physical(identified(loss, x[:, is_fit]), observed[is_fit], entropy)  # predictions stay, for the reader
    error = error_boot = None
    if "observed_error" in runs:
        error, error_boot = chain_error(runs, split.fits_error(runs), boot, n_bootstrap, seed, error_law, entropy)
    return DatasetFit(loss, error, boot, error_boot), runs


def chain_error(
    runs: pd.DataFrame,
    fits_error: pd.Series,
    loss_boot: Bootstrap | None,
    n_bootstrap: int,
    seed: int,
    law: Law = ERROR_LAW,
    entropy: float | None = None,
) -> tuple[Fit, Bootstrap | None]:
    """Fit Err(L) on the observed (loss, error) pairs of the runs marked in `fits_error` and add to
    `runs` (in place) predicted_error = Err(predicted loss), its relative error, error_at_observed =
    Err(observed loss) (the error law alone) and its relative error and, with a loss
    bootstrap, the chained interval error_ci_low/high. law: Err(L), or it with epsilon held (Law.fixed).

    The error-fit runs are resampled independently of the loss-fit runs (another seed), and
    replicate i of Err(L) is applied to replicate i of the loss prediction: the interval carries
    the uncertainty of both fits. entropy: the validation text's, where known; an Err(L) whose value there
    lies outside [0, 1] is unphysical (Law.violations), its predictions kept for the reader.
    """
    pairs = runs[fits_error & runs["observed_error"].notna()]
    losses, errors = pairs["observed"].to_numpy(), pairs["observed_error"].to_numpy()
    error = physical(identified(fit_law(law, losses, errors, ERROR_METHOD), losses), errors, entropy)
    runs["predicted_error"] = error.predict(runs["predicted"]) if error.fitted else np.nan
    runs["error_rel_error"] = relative_error(runs["predicted_error"], runs["observed_error"])
    runs["error_at_observed"] = error.predict(runs["observed"]) if error.fitted else np.nan
    runs["error_at_observed_rel_error"] = relative_error(runs["error_at_observed"], runs["observed_error"])
    error_boot = None
    if error.fitted and loss_boot is not None and n_bootstrap:
        error_boot = bootstrap(replace(error, status=OK), losses, errors, losses, n_bootstrap, seed=seed + 1)
        low, high = error_boot.interval(chain(loss_boot, error_boot))
        bounds = law.output_range or (-np.inf, np.inf)
        low, high, clipped, uninformative = clip_interval(low, high, bounds)
        runs["error_ci_low"], runs["error_ci_high"] = low, high
        runs["error_ci_clipped"], runs["error_ci_uninformative"] = clipped, uninformative
    return error, error_boot
