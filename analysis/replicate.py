"""Gadre et al. 2024's protocol on testbed's own runs (`testbed analyze replicate`, docs/analysis.md).

Per training dataset, runs are given their roles by size (sizes ordered by parameter count, so any
ladder works), never by name:
- loss-law fit set: the four smallest sizes at M = 20, and the smallest size at its largest
  multiplier above 20 up to 320 (the paper: 0.011B at M = 320); with `fit_multipliers`, also every
  other run of those four sizes whose compute is within the fit set's largest;
- Err(L) fit set: the loss fit set and the fifth size at M = 20 (the paper's 1.4B at M = 20);
- targets: every other run of a size larger than the four (the paper's over-trained 1.4B and 6.9B at
  M = 20). The fifth size at M = 20 is a target for its loss only: its error is fitted.
A dataset without these runs is an error naming what is missing.

The fits and chained predictions are analysis.extrapolate's, as for the published reproduction
(analysis.reproduce); records have its RECORD_KEYS, quantity `loss` (the final validation loss on
`x`) and `err` (the mean error of the downstream tasks, by default those that leave chance within the
fit runs, select.informative_tasks).

Seeds. The laws are fitted on per-configuration seed means (analysis.seeds.seed_means), not on every
seed: the law describes a configuration's expected loss; one point per configuration keeps the
paper's weights (a configuration run with 3 seeds does not count 3 times), and the bootstrap resamples
configurations, the independent units (the seeds of one configuration are not independent draws of
the law's scatter). A target's observed value is its seed mean too. The seed-to-seed SD measured on
the table (pooled per dataset, else over all datasets) widens each target's interval in quadrature
(seeds.widen): relative for the loss, absolute for the error.

Checkpoints. Where the sweep scored intermediate checkpoints too (its key eval_steps: all), Err(L) is
fitted on the (loss, error) point of every scored checkpoint of the Err(L) fit runs, final ones included
(select.checkpoint_points over the tasks of the final fit, seed-averaged per configuration and step by
seeds.point_means); a target's checkpoints never enter, and the loss law keeps to final losses.
`checkpoints=False` (the CLI's --err-final) fits the final checkpoints alone, as the paper does. Either way
the summary says which points were fitted and how far the final and the intermediate ones sit from the
law on average: where they disagree, the error is not a function of the loss alone over the checkpoints,
and the two choices predict differently (docs/replication.md, "Err(L) on checkpoints", has both measured).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from analysis.diagnostics import error_warnings
from analysis.errors import AnalysisError
from analysis.extrapolate import (
    ERROR_COLUMNS,
    ERROR_LAW,
    FREE,
    DatasetFit,
    Extrapolation,
    Split,
    chain_error,
    extrapolate,
)
from analysis.fitting import OK
from analysis.reproduce import ERROR_RECORD, LOSS_RECORD, records_frame, target_records
from analysis.resample import bootstrap, chain, clip_interval
from analysis.seeds import LOSS, SeedSpread, point_means, seed_means, seed_spread, widen
from analysis.select import OWN, TOTAL, checkpoint_points, count_params, downstream_errors, final_losses

LOSS_LAW = "overtrain"
FIT_MULTIPLIER = 20  # the compute-optimal multiplier every fit size is trained at
MAX_OVERTRAIN = 320  # the smallest size's over-trained fit run: its largest multiplier up to this
N_FIT_SIZES = 4
ERR = "err"
QUANTITIES = {LOSS: LOSS_RECORD, ERR: ERROR_RECORD}
# the error columns chain_error computes (observed_error is the runs' own, kept when Err(L) is refitted)
CHAINED = [c for c in ERROR_COLUMNS if c != "observed_error"]
# the exponent of N and D (-e of the over-training law) fitted by this code on Gadre et al.'s released
# runs (analysis.reproduce, per corpus; a test refits them), and Chinchilla's (Hoffmann et al. 2022,
# approach 3: L = E + A / N^alpha + B / D^beta)
GADRE_EXPONENTS = {"c4_original": 0.2425, "rpj": 0.2729, "rw_original": 0.2544}
CHINCHILLA_EXPONENTS = {"alpha (N)": 0.34, "beta (D)": 0.28}


@dataclass(frozen=True)
class Roles:
    """One dataset's runs by role (run ids of seed means) and the sizes behind them."""

    dataset: str
    fit_sizes: tuple[str, ...]  # the four smallest, by params
    fit: tuple[str, ...]  # the loss-law fit set
    added: tuple[str, ...]  # fit runs added by fit_multipliers (also in `fit`)
    error_fit: tuple[str, ...]  # Err(L) fit set: `fit` and the next size at M = 20 (when present)
    targets: dict[str, str]  # label (size-M<multiplier>) -> run id

    def describe(self, labels: dict[str, str]) -> str:
        """The roles in one line, runs named by size and multiplier."""
        base = [labels[r] for r in self.fit if r not in self.added]
        text = f"loss law on {len(base)} runs ({', '.join(base)})"
        if self.added:
            text += f" + {len(self.added)} within their compute ({', '.join(labels[r] for r in self.added)})"
        if extra := [labels[r] for r in self.error_fit if r not in self.fit]:
            text += f"; Err(L) on those and {', '.join(extra)}"
        return f"{text}; targets: {', '.join(self.targets)}"


def label(size: str, multiplier: float) -> str:
    return f"{size}-M{multiplier:g}"


def assign_roles(runs: pd.DataFrame, downstream: bool, fit_multipliers: bool = False) -> dict[str, Roles]:
    """The protocol's roles per dataset for one row per configuration (select.final_losses columns)."""
    return {str(d): _roles(str(d), group, downstream, fit_multipliers) for d, group in runs.groupby("dataset")}


def _roles(dataset: str, runs: pd.DataFrame, downstream: bool, fit_multipliers: bool) -> Roles:
    archs = sorted(runs["arch"].dropna().unique())
    if len(archs) > 1:
        raise AnalysisError(f"dataset {dataset}: runs of {len(archs)} architectures ({', '.join(archs)}); "
                            "the protocol fits one (choose with --arch)")  # fmt: skip
    params = runs.groupby("size")["params"].median().sort_values(kind="stable")
    sizes = [str(s) for s in params.index]
    if len(sizes) <= N_FIT_SIZES:
        raise AnalysisError(f"dataset {dataset}: {len(sizes)} sizes ({', '.join(sizes)}); the protocol needs "
                            f"the {N_FIT_SIZES} smallest to fit and a larger one to predict")  # fmt: skip
    at = {(str(r.size), float(r.multiplier)): str(r.run_id) for r in runs.itertuples()}
    fit_sizes = sizes[:N_FIT_SIZES]
    if missing := [s for s in fit_sizes if (s, FIT_MULTIPLIER) not in at]:
        raise AnalysisError(f"dataset {dataset}: no run of size {', '.join(missing)} at M = {FIT_MULTIPLIER}; "
                            f"the protocol fits the {N_FIT_SIZES} smallest sizes "
                            f"({', '.join(fit_sizes)}) there")  # fmt: skip
    smallest = runs[(runs["size"] == fit_sizes[0]) & (runs["multiplier"] > FIT_MULTIPLIER)]
    smallest = smallest[smallest["multiplier"] <= MAX_OVERTRAIN]
    if smallest.empty:
        raise AnalysisError(f"dataset {dataset}: the smallest size {fit_sizes[0]} has no run with "
                            f"{FIT_MULTIPLIER} < M <= {MAX_OVERTRAIN}; the protocol fits it over-trained (the paper: "
                            "M = 320)")  # fmt: skip
    fit = [at[s, FIT_MULTIPLIER] for s in fit_sizes] + [str(smallest.loc[smallest["multiplier"].idxmax(), "run_id"])]
    added: list[str] = []
    if fit_multipliers:
        budget = runs.loc[runs["run_id"].isin(fit), "flops"].max()
        within = runs["size"].isin(fit_sizes) & ~runs["run_id"].isin(fit) & (runs["flops"] <= budget * (1 + 1e-9))
        added = list(runs.loc[within].sort_values(["params", "multiplier"])["run_id"])
    next_run = at.get((sizes[N_FIT_SIZES], FIT_MULTIPLIER))
    if downstream and next_run is None:
        raise AnalysisError(f"dataset {dataset}: no run of size {sizes[N_FIT_SIZES]} at M = {FIT_MULTIPLIER}; the "
                            "protocol fits Err(L) on the loss fit runs and the next size there")  # fmt: skip
    larger = runs[runs["params"] > params[fit_sizes[-1]]].sort_values(["params", "multiplier"])
    targets = {label(str(r.size), float(r.multiplier)): str(r.run_id) for r in larger.itertuples()}
    return Roles(dataset, tuple(fit_sizes), tuple(fit + added), tuple(added),
                 tuple(fit + added + ([next_run] if next_run else [])), targets)  # fmt: skip


@dataclass(frozen=True)
class Replication:
    """The protocol on own runs: fits and predictions, roles, seed spread and held-out records."""

    result: Extrapolation
    roles: dict[str, Roles]
    spread: SeedSpread
    seeds: pd.Series  # seeds averaged into each configuration's run, by run id
    records: list[dict]
    n_bootstrap: int
    # the seed-mean (loss, error) points of every scored checkpoint of the Err(L) fit runs (select.POINT_COLUMNS
    # and seeds); None: none was scored besides the final ones
    error_points: pd.DataFrame | None = None
    error_points_fitted: bool = False  # Err(L) was fitted on error_points, not on the final checkpoints alone

    def summary(self) -> str:
        runs = self.result.runs.set_index("run_id")
        labels = {r: label(str(runs.at[r, "size"]), float(runs.at[r, "multiplier"])) for r in runs.index}
        lines = [f"Gadre et al. 2024's protocol on own runs: loss law {LOSS_LAW} on the final loss ({self.result.x}), "
                 f"Err(L) chained; fits on seed means; {self.n_bootstrap} bootstrap resamples; N counted "
                 f"{self.result.counted()}",
                 f"downstream: {self.result.target or 'no task rows'}"]  # fmt: skip
        if self.result.tasks is not None:
            lines.append(f"tasks: {self.result.tasks.summary()}")
        for dataset, roles in self.roles.items():
            fits = self.result.fits[dataset]
            lines += ["", f"{dataset}: {roles.describe(labels)}", fits.loss.summary(dataset)]
            if fits.error is not None:
                lines.append(fits.error.summary(dataset))
                lines += [f"  {self.error_basis(dataset)}"] if fits.error.n_points else []
            lines += [f"  {self.exponents(dataset)}", f"  {self.noise(dataset)}"]
            if fitted := [t for t, r in roles.targets.items() if r in roles.error_fit]:
                lines.append(f"  {', '.join(fitted)}: loss only (its error is in the Err(L) fit)")
        lines += ["", self.table().to_string(index=False, float_format="{:.4g}".format, na_rep="-")]
        if self.result.warnings:
            lines += ["", "warnings:", *(f"  {w}" for w in self.result.warnings)]
        return "\n".join(lines)

    def table(self) -> pd.DataFrame:
        """The records (rel_error in percent) with each target's compute ratio to the largest fit run
        and the seeds behind its observed value."""
        frame = records_frame(self.records)
        runs = self.result.runs.set_index(["dataset", "run_id"])
        ids = [self.roles[d].targets[t] for d, t in zip(frame["dataset"], frame["target"], strict=True)]
        keys = list(zip(frame["dataset"], ids, strict=True))
        frame["compute_ratio"] = [f"{runs.at[k, 'compute_ratio']:.3g}x" for k in keys]
        frame["seeds"] = [int(self.seeds.get(i, 1)) for i in ids]
        return frame

    def error_basis(self, dataset: str) -> str:
        """Which (loss, error) points the dataset's Err(L) was fitted on, in one line, and, where intermediate
        checkpoints were scored, the mean residual (observed - law) of the final and of the intermediate ones."""
        fit = self.result.fits[dataset].error
        mine = None if self.error_points is None else self.error_points[self.error_points["dataset"] == dataset]
        if mine is None or mine.empty:
            return f"Err(L) fitted on the final checkpoints of {fit.n_points if fit else 0} runs"
        final = mine["final"].astype(bool)
        if self.error_points_fitted:
            text = (f"Err(L) fitted on {len(mine)} points from {mine['run_id'].nunique()} runs "
                    f"({int((~final).sum())} intermediate checkpoints besides the final ones)")  # fmt: skip
        else:
            text = (f"Err(L) fitted on the final checkpoints of {int(final.sum())} runs (--err-final); their "
                    f"{int((~final).sum())} scored intermediate checkpoints not fitted")  # fmt: skip
        if fit is None or not fit.fitted:
            return text
        residual = mine["error"].to_numpy(float) - fit.predict(mine["loss"].to_numpy(float))
        return (f"{text}; mean residual (observed - law): final {np.mean(residual[final]):+.3f}, intermediate "
                f"{np.mean(residual[~final]):+.3f}")  # fmt: skip

    def exponents(self, dataset: str) -> str:
        fits = self.result.fits[dataset]
        if not fits.loss.fitted:
            return "exponent: no fit"
        mine = f"exponent of N and D (-e): {-fits.loss.params['e']:.3g}"
        if fits.bootstrap is not None:
            low, high = fits.bootstrap.param_intervals()["e"]
            mine += f" [{-high:.3g}, {-low:.3g}]"
        gadre = ", ".join(f"{d} {v:.3g}" for d, v in GADRE_EXPONENTS.items())
        chinchilla = ", ".join(f"{k} {v:.2g}" for k, v in CHINCHILLA_EXPONENTS.items())
        return f"{mine}; Gadre et al.'s runs refitted: {gadre}; Chinchilla (approach 3): {chinchilla}"

    def noise(self, dataset: str) -> str:
        parts = []
        for quantity in (LOSS, ERR):
            row = self.spread.get(quantity, dataset)
            if row is not None:
                size = f"{100 * row['rel_sd']:.3g} % of the loss" if quantity == LOSS else f"{row['sd']:.3g}"
                where = "" if row["dataset"] == dataset else ", pooled over all datasets"
                parts.append(f"{quantity} {size} ({row['configs']} configurations, dof {row['dof']}{where})")
        if not parts:
            return "seed SD: not measured (no configuration with repeated seeds): intervals are the bootstrap's alone"
        return f"seed SD, added to the intervals in quadrature: {'; '.join(parts)}{self._measured_on(dataset)}"

    def _measured_on(self, dataset: str) -> str:
        """Which configurations the loss SD comes from, and whether any is as large as a target: the pooled SD
        assumes one noise level whatever the size, which only a repeated target (or larger run) can check."""
        configs = self.spread.configs
        mine = configs[(configs["dataset"] == dataset) & (configs["quantity"] == LOSS)]
        if mine.empty:
            return ""
        text = f"; loss SD measured on {', '.join(label(str(r.size), float(r.multiplier)) for r in mine.itertuples())}"
        if set(mine["size"]) <= set(self.roles[dataset].fit_sizes):
            text += " (fit sizes only: the targets' seed noise is assumed the same, not measured)"
        return text


def replicate(
    table: pd.DataFrame,
    x: str = OWN,
    task: str | Sequence[str] | None = None,
    metric: str = "acc",
    n_bootstrap: int = 1000,
    seed: int = 0,
    fit_multipliers: bool = False,
    checkpoints: bool | None = None,
    params: str = TOTAL,
    error_asymptote: str = FREE,
    loss_floor: str = FREE,
) -> Replication:
    """The protocol (module docstring) on a table of own runs, per training dataset.

    checkpoints: fit Err(L) on the (loss, error) points of every scored checkpoint of the Err(L) fit runs
    (module docstring); None: when an intermediate one of them was scored (the sweep key eval_steps: all);
    False: on the final ones alone, the others still measured against the law.
    params: how N and C are counted (select.count_params), for the roles' compute as for the laws.
    error_asymptote: Err(L)'s epsilon `free` (fitted, the paper's protocol) or `chance` (extrapolate).
    loss_floor: the loss law's E `free` (fitted, the paper's protocol) or `entropy` (extrapolate)."""
    means, seeds = seed_means(table, x)
    downstream = bool((means["kind"] == "task").any())
    roles = assign_roles(count_params(final_losses(means, x), means, params), downstream, fit_multipliers)
    split = Split(
        heldout=tuple(r for role in roles.values() for r in role.targets.values()),
        fit=tuple(r for role in roles.values() for r in role.fit),
        error_fit=tuple(r for role in roles.values() for r in role.error_fit) if downstream else (),
    )
    result = extrapolate(
        means, LOSS_LAW, x, task, metric, split, n_bootstrap, seed,
        params=params, error_asymptote=error_asymptote, loss_floor=loss_floor,
    )  # fmt: skip
    points = _error_points(table, result, roles, x, task, metric, checkpoints)
    fitted_on_points = points is not None and checkpoints is not False
    if fitted_on_points:
        result = refit_error(result, points, n_bootstrap, seed)
    spread = seed_spread(table, x, metric, extra=_per_seed_error(table, result, task, metric))
    runs = result.runs
    for quantity, (_, predicted, _, low, high) in QUANTITIES.items():
        if predicted in runs and low in runs:
            widen(runs, predicted, (low, high), _noise(runs, spread, quantity, predicted), seeds)
    if "error_ci_low" in runs:  # the seed noise may widen a chained error interval past [0, 1] again
        _clip_error_interval(runs)
    targets = {d: role.targets for d, role in roles.items()}
    records = [
        r for r in target_records(result, targets, QUANTITIES if downstream else {LOSS: LOSS_RECORD})
        if r["quantity"] == LOSS or targets[r["dataset"]][r["target"]] not in roles[r["dataset"]].error_fit
    ]  # fmt: skip
    return Replication(result, roles, spread, seeds, records, n_bootstrap, points, fitted_on_points)


def _error_points(
    table: pd.DataFrame,
    result: Extrapolation,
    roles: dict[str, Roles],
    x: str,
    task: str | Sequence[str] | None,
    metric: str,
    checkpoints: bool | None,
) -> pd.DataFrame | None:
    """The seed-mean (loss, error) points of every scored checkpoint of the Err(L) fit runs (a target's never)
    over the tasks of the final fit; None when no intermediate one was scored (checkpoints=True: an error)."""
    if result.target is None:
        return None
    points = checkpoint_points(table, _fit_tasks(result, task), metric, x)
    allowed = {r for role in roles.values() for r in role.error_fit}
    points = point_means(points) if not points.empty else points
    points = points[points["run_id"].isin(allowed)].reset_index(drop=True)
    if checkpoints is not True and points["final"].astype(bool).all():  # no intermediate checkpoint was scored
        return None
    if points.empty:
        raise AnalysisError("checkpoints: no checkpoint of the Err(L) fit runs has both a val_loss row and task "
                            "rows at its step (the sweep key eval_steps: all scores every saved one)")  # fmt: skip
    return points


def refit_error(result: Extrapolation, points: pd.DataFrame, n_bootstrap: int, seed: int) -> Extrapolation:
    """Each dataset's Err(L) refitted on its `points` (columns dataset, loss, error) in place of the runs'
    final pairs, and chained as extrapolate chains it: the runs' error columns, the fits and their warnings."""
    runs, fits, warnings = result.runs.copy(), dict(result.fits), list(result.warnings)
    for dataset, mine in points.groupby("dataset", sort=True):
        old = fits.get(str(dataset))
        if old is None or old.error is None:
            continue
        part = runs[runs["dataset"] == dataset].copy()
        stale = {f"{dataset}: {w}" for w in error_warnings(old.error, part)}
        fits[str(dataset)] = _chain_points(part, mine, old, n_bootstrap, seed, result.floors.get(str(dataset)))
        for column in [c for c in CHAINED if c in part or c in runs]:  # observed_error stays
            if column in runs and runs[column].dtype == bool:  # a flag column may now get NaN (no interval)
                runs[column] = runs[column].astype(object)
            runs.loc[part.index, column] = part[column] if column in part else np.nan
        fresh = [f"{dataset}: {w}" for w in error_warnings(fits[str(dataset)].error, part)]
        warnings = [w for w in warnings if w not in stale] + fresh
    return replace(result, runs=runs, fits=fits, warnings=tuple(warnings))


def _chain_points(
    part: pd.DataFrame, points: pd.DataFrame, old: DatasetFit, n_bootstrap: int, seed: int, entropy: float | None
) -> DatasetFit:
    """Fit Err(L) on `points` and chain it into one dataset's runs `part` (in place; its rows in the order
    of the loss bootstrap's predictions), as extrapolate.chain_error does on the runs' own pairs (entropy: the
    dataset's text's, where known)."""
    part.drop(columns=[c for c in CHAINED if c in part], inplace=True)
    pairs = points[["loss", "error"]].set_axis(["observed", "observed_error"], axis=1)
    frame = pd.concat([part, pairs], ignore_index=True)
    assert old.error is not None  # refit_error passes only datasets with an Err(L) fit
    law = old.error.law  # the free law, or it with epsilon held (error_asymptote)
    error, _ = chain_error(frame, pd.Series(frame.index >= len(part)), None, 0, seed, law, entropy)
    for column in [c for c in CHAINED if c in frame]:
        part[column] = frame[column].iloc[: len(part)].to_numpy()
    error_boot = None
    if error.fitted and old.bootstrap is not None and n_bootstrap:  # as extrapolate.chain_error bootstraps it
        losses, errors = pairs["observed"].to_numpy(float), pairs["observed_error"].to_numpy(float)
        error_boot = bootstrap(replace(error, status=OK), losses, errors, losses, n_bootstrap, seed=seed + 1)
        low, high = error_boot.interval(chain(old.bootstrap, error_boot))
        low, high, clipped, uninformative = clip_interval(low, high, law.output_range or (-np.inf, np.inf))
        part["error_ci_low"], part["error_ci_high"] = low, high
        part["error_ci_clipped"], part["error_ci_uninformative"] = clipped, uninformative
    return replace(old, error=error, error_bootstrap=error_boot)


def _clip_error_interval(runs: pd.DataFrame) -> None:
    """The chained error interval clipped to the error law's range in place, its flags updated (as chain_error)."""
    bounds = ERROR_LAW.output_range or (-np.inf, np.inf)
    low, high, clipped, uninformative = clip_interval(runs["error_ci_low"], runs["error_ci_high"], bounds)
    before = runs["error_ci_clipped"].fillna(False).astype(bool) if "error_ci_clipped" in runs else False
    runs["error_ci_low"], runs["error_ci_high"] = low, high
    runs["error_ci_clipped"], runs["error_ci_uninformative"] = clipped | before, uninformative


def _per_seed_error(table: pd.DataFrame, result: Extrapolation, task, metric: str) -> dict[str, pd.Series]:
    """The downstream error of every seed's run, over the tasks the fit used (for its seed SD)."""
    if result.target is None:
        return {}
    errors = downstream_errors(table, _fit_tasks(result, task), metric)
    return {} if errors is None else {ERR: errors}


def _fit_tasks(result: Extrapolation, task: str | Sequence[str] | None) -> str | Sequence[str] | None:
    """The tasks whose mean error the fit used: `task`, else those that left chance (None: the default mean)."""
    return task if task is not None else (list(result.tasks.kept) if result.tasks and result.tasks.kept else None)


def _noise(runs: pd.DataFrame, spread: SeedSpread, quantity: str, predicted: str) -> pd.Series:
    """One run's seed SD of `quantity` for each run (by run id): relative for the loss, absolute for
    the error; NaN where unmeasured."""
    values = []
    for row in runs.itertuples():
        pooled = spread.get(quantity, str(row.dataset))
        if pooled is None:
            values.append(np.nan)
        else:
            values.append(pooled["rel_sd"] * getattr(row, predicted) if quantity == LOSS else pooled["sd"])
    return pd.Series(values, index=runs["run_id"].to_numpy(), dtype=float)
