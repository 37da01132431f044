"""Seed-to-seed spread: how much a configuration's final numbers move when only the seed changes.

A configuration is (arch, size, dataset, multiplier); runs of one configuration that differ only in
`seed` are its repeats. `seed_spread` measures, from every configuration run with at least two seeds,
the standard deviation of the final validation loss (absolute and relative to the configuration's
mean) and of each task's accuracy, and pools them per training dataset and over all datasets:
pooled SD = sqrt(sum_i (k_i - 1) s_i^2 / sum_i (k_i - 1)) over configurations i with k_i seeds, the
usual within-group estimate (it assumes one noise level per quantity, whatever the size).

`seed_means` averages the repeats into one run per configuration (analysis.replicate fits on those).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.errors import AnalysisError
from analysis.schema import COLUMNS, RUN_SETTINGS, settings_by_run
from analysis.select import OWN, final_losses

CONFIG = ["arch", "size", "dataset", "multiplier"]
ALL = "*"  # the pooled row over every training dataset
LOSS = "loss"  # the quantity name of the final validation loss
SPREAD_COLUMNS = ["dataset", "quantity", "configs", "runs", "dof", "sd", "rel_sd"]


def config_id(arch: str, size: str, dataset: str, multiplier: float) -> str:
    """The id of a configuration's seed mean, e.g. decoder-c3-syn_en-m20."""
    return f"{arch}-{size}-{dataset}-m{multiplier:g}"


def _configs(runs: pd.DataFrame, table: pd.DataFrame | None = None) -> pd.DataFrame:
    """runs (run_id and CONFIG columns) with `config`, checked to repeat only seeds: runs of one configuration
    that share a seed, or differ in a run setting (schema.RUN_SETTINGS, read from the rows of `table`), are
    refused."""
    runs = runs.copy()
    missing = [c for c in CONFIG if runs[c].isna().any()]
    if missing:
        raise AnalysisError(f"runs without {', '.join(missing)}: cannot tell which runs repeat a configuration")
    runs["config"] = [config_id(*key) for key in runs[CONFIG].itertuples(index=False)]
    if table is not None:
        known = settings_by_run(table[table["run_id"].isin(runs["run_id"])])
        runs = runs.drop(columns=[c for c in known.columns if c in runs.columns]).join(known, on="run_id")
    for setting in (c for c in RUN_SETTINGS if c in runs.columns):
        values = runs.groupby("config")[setting].nunique(dropna=True)  # null: a row older than the column
        if (values > 1).any():
            config = values[values > 1].index[0]
            mine = runs[runs["config"] == config]
            found = ", ".join(map(str, mine[setting].dropna().unique()))
            raise AnalysisError(
                f"runs {', '.join(mine['run_id'])} share configuration {config} but differ in {setting} ({found}): "
                "they are not seeds of one configuration; select one setting first"
            )
    repeated = runs.duplicated(["config", "seed"])
    if repeated.any():
        config = runs.loc[repeated, "config"].iloc[0]
        ids = ", ".join(runs.loc[runs["config"] == config, "run_id"])
        raise AnalysisError(
            f"runs {ids} share configuration {config} and seed: they differ in something else (a sweep axis?); "
            "select one setting first"
        )
    return runs


@dataclass(frozen=True)
class SeedSpread:
    """Per-configuration and pooled seed-to-seed standard deviations.

    `configs`: one row per (configuration with >= 2 seeds, quantity): CONFIG, quantity (`loss` or a
    task name), seeds, mean, sd, rel_sd (sd / mean). `pooled`: SPREAD_COLUMNS, one row per (dataset,
    quantity) and per quantity over all datasets (dataset `*`); dof = sum of (seeds - 1).
    """

    configs: pd.DataFrame
    pooled: pd.DataFrame

    @property
    def measured(self) -> bool:
        return not self.pooled.empty

    def get(self, quantity: str, dataset: str = ALL) -> pd.Series | None:
        """The pooled row of `quantity` in `dataset` (falling back to all datasets), None if unmeasured."""
        for where in dict.fromkeys((dataset, ALL)):
            row = self.pooled[(self.pooled["dataset"] == where) & (self.pooled["quantity"] == quantity)]
            if not row.empty:
                return row.iloc[0]
        return None

    def task_sd(self) -> dict[str, float]:
        """Each task's pooled seed SD of accuracy over all datasets (the classifier's noise)."""
        rows = self.pooled[(self.pooled["dataset"] == ALL) & (self.pooled["quantity"] != LOSS)]
        return dict(zip(rows["quantity"], rows["sd"].astype(float), strict=True))

    def summary(self) -> str:
        if not self.measured:
            return "seed spread: no configuration was run with more than one seed"
        n = self.configs.groupby(CONFIG, dropna=False).ngroups
        table = self.pooled.to_string(index=False, float_format="{:.4g}".format, na_rep="-")
        return f"seed spread ({n} configurations with repeated seeds; sd absolute, rel_sd = sd / mean):\n{table}"

    def to_dict(self) -> dict:
        return {"pooled": self.pooled.replace({np.nan: None}).to_dict(orient="records")}


def seed_spread(
    table: pd.DataFrame, x: str = OWN, metric: str = "acc", extra: Mapping[str, pd.Series] | None = None
) -> SeedSpread:
    """The spread of the final loss on validation set `x` and of every task's `metric` over seeds.

    extra: further per-run quantities (name -> values by run_id), e.g. a downstream mean error."""
    runs = _configs(final_losses(table, x), table)
    values = {LOSS: runs.set_index("run_id")["loss"]}
    tasks = table[(table["kind"] == "task").fillna(False) & table["final"].fillna(False)]
    tasks = tasks[(tasks["metric"] == metric).fillna(False)].drop_duplicates(["run_id", "name"], keep="last")
    for task, rows in tasks.groupby("name", sort=True):
        values[str(task)] = rows.set_index("run_id")["value"].astype(float)
    values |= dict(extra or {})
    parts = [_per_config(runs, series, quantity) for quantity, series in values.items()]
    configs = pd.concat(parts, ignore_index=True)
    configs = configs[configs["seeds"] >= 2].reset_index(drop=True)
    return SeedSpread(configs, _pooled(configs))


def _per_config(runs: pd.DataFrame, values: pd.Series, quantity: str) -> pd.DataFrame:
    mine = runs.assign(value=runs["run_id"].map(values).astype(float)).dropna(subset=["value"])
    grouped = mine.groupby(CONFIG, sort=True)["value"]
    out = grouped.agg(seeds="count", mean="mean", sd="std").reset_index()
    out["rel_sd"] = out["sd"] / out["mean"].abs()
    return out.assign(quantity=quantity)[[*CONFIG, "quantity", "seeds", "mean", "sd", "rel_sd"]]


def _pooled(configs: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for dataset in [*sorted(configs["dataset"].unique()), ALL]:
        mine = configs if dataset == ALL else configs[configs["dataset"] == dataset]
        for quantity, group in mine.groupby("quantity", sort=False):
            weights = group["seeds"] - 1
            rows.append([dataset, quantity, len(group), int(group["seeds"].sum()), int(weights.sum()),
                         _pool(group["sd"], weights), _pool(group["rel_sd"], weights)])  # fmt: skip
    return pd.DataFrame(rows, columns=SPREAD_COLUMNS)


def _pool(sd: pd.Series, dof: pd.Series) -> float:
    """The pooled SD: sqrt of the dof-weighted mean of the variances."""
    return float(np.sqrt((dof * sd**2).sum() / dof.sum()))


def seed_means(table: pd.DataFrame, x: str = OWN) -> tuple[pd.DataFrame, pd.Series]:
    """The final val_loss and task rows averaged over seeds: one run per configuration.

    Returns the averaged results table (run_id = config_id, seed null) and the number of seeds behind
    each averaged run (by its run_id). `value` is the mean; `stderr` the mean of the seeds' standard
    errors (they measure the same evaluation items, so averaging seeds does not shrink it)."""
    runs = _configs(final_losses(table, x), table)
    config = runs.set_index("run_id")["config"]
    rows = table[table["kind"].isin(["val_loss", "task"]).fillna(False) & table["final"].fillna(False)]
    rows = rows[rows["run_id"].isin(config.index)].assign(config=lambda r: r["run_id"].map(config))
    keys = ["config", "kind", "name", "metric"]
    averaged = rows.groupby(keys, sort=True, dropna=False).agg(
        value=("value", "mean"), stderr=("stderr", "mean"), chance=("chance", "mean")
    )
    first = rows.drop_duplicates(keys).set_index(keys).drop(columns=["value", "stderr", "chance"])
    out = first.join(averaged).reset_index()
    out["run_id"], out["seed"], out["step"] = out["config"], pd.NA, pd.NA
    seeds = runs.groupby("config")["run_id"].count().rename("seeds")
    return out[list(COLUMNS)].astype(COLUMNS).reset_index(drop=True), seeds


Z95 = 1.959963984540054  # the normal quantile of a two-sided 95 % interval


def widen(
    runs: pd.DataFrame, predicted: str, bounds: tuple[str, str], noise: pd.Series, seeds: pd.Series
) -> pd.DataFrame:
    """Widen each run's interval (columns `bounds` around column `predicted`, in place) by its observed
    value's seed noise, in quadrature: half-width -> sqrt(half-width^2 + (Z95 noise / sqrt(k))^2) on
    each side, where noise is the seed SD of one run (by run_id; NaN: left as is) and k the seeds
    averaged into the run's observed value (`seeds` by run_id, 1 when missing).

    The bootstrap interval says where the law's prediction (the configuration's mean) may lie; the
    observed value is itself a mean of k seeds, off that mean by noise / sqrt(k). The two are
    independent, so their variances add; a percentile interval is treated as Z95 SDs per side."""
    k = runs["run_id"].map(seeds).fillna(1).astype(float).to_numpy()
    extra = (Z95 * runs["run_id"].map(noise).astype(float).to_numpy() / np.sqrt(k)) ** 2
    extra = np.where(np.isfinite(extra), extra, 0.0)
    low, high, centre = (runs[c].to_numpy(float) for c in (*bounds, predicted))
    runs[bounds[0]] = centre - np.sqrt(np.maximum(centre - low, 0.0) ** 2 + extra)
    runs[bounds[1]] = centre + np.sqrt(np.maximum(high - centre, 0.0) ** 2 + extra)
    return runs


def point_means(points: pd.DataFrame) -> pd.DataFrame:
    """Checkpoint points (select.checkpoint_points) averaged over seeds: one per configuration and step, its
    run_id the configuration's (as seed_means names it), loss and error the means, `seeds` the runs behind it."""
    runs = _configs(points.drop_duplicates("run_id"))
    keyed = points.assign(run_id=points["run_id"].map(runs.set_index("run_id")["config"]))
    first = {c: "first" for c in points.columns if c not in ("run_id", "step", "loss", "error", "seed")}
    means = keyed.groupby(["run_id", "step"], sort=True).agg(
        {**first, "loss": "mean", "error": "mean", "seed": "count"}
    )
    return means.rename(columns={"seed": "seeds"}).reset_index()[[*points.columns.drop("seed"), "seeds"]]
