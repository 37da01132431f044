"""Rollout backtests: for every rung (model size) above the smallest few, fit on the sizes below it and predict
that rung, the loss and each task's error chained through Err(L); the errors against extrapolation distance
(the predicted run's compute over the largest fit run's). Any suite: an imported release or own runs.

Each rung's fit is analysis.extrapolate's (per training dataset, the loss law and Err(L) on the fit runs); the
per-task errors re-chain its loss predictions through one Err(L) per task (extrapolate.chain_error).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.diagnostics import error_warnings
from analysis.errors import AnalysisError
from analysis.extrapolate import FIT, HELDOUT, UNUSED, Split, chain_error, extrapolate
from analysis.select import OWN, downstream_errors, final_losses

MIN_FIT_SIZES = 3
COLUMNS = ["rung", "dataset", "run_id", "quantity", "fit_sizes", "compute_ratio", "observed", "predicted",
           "rel_error", "abs_error"]  # fmt: skip


@dataclass(frozen=True)
class Backtest:
    law: str
    x: str
    rows: pd.DataFrame  # COLUMNS: one per (rung, held-out run, quantity); quantity `loss` or a task name
    warnings: tuple[str, ...]

    def by_distance(self) -> pd.DataFrame:
        """Per rung and kind (loss, task error): the median compute ratio, the median relative error and the
        median and max absolute error (task errors near 0 make relative ones meaningless)."""
        rows = self.rows.assign(kind=np.where(self.rows["quantity"] == "loss", "loss", "task error"))
        return (rows.groupby(["rung", "kind"], sort=False)
                .agg(compute_ratio=("compute_ratio", "median"), n=("abs_error", "count"),
                     median_rel_error=("rel_error", "median"), median_abs_error=("abs_error", "median"),
                     max_abs_error=("abs_error", "max"))
                .reset_index())  # fmt: skip

    def summary(self) -> str:
        lines = [f"backtest: law {self.law}, loss axis {self.x}; each rung predicted from the sizes below it",
                 self.by_distance().to_string(index=False, float_format="{:.4g}".format)]  # fmt: skip
        loss = self.rows[self.rows["quantity"] == "loss"].drop(columns=["quantity", "abs_error"])
        lines += ["", "loss per held-out run:", loss.to_string(index=False, float_format="{:.4g}".format)]
        if self.warnings:
            lines += ["", "warnings:", *(f"  {w}" for w in self.warnings)]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"law": self.law, "x": self.x, "warnings": list(self.warnings),
                "rows": json.loads(self.rows.to_json(orient="records", double_precision=15))}  # fmt: skip


def rungs(runs: pd.DataFrame, min_fit_sizes: int = MIN_FIT_SIZES) -> list[float]:
    """The model sizes (params) predicted: every one with at least `min_fit_sizes` smaller sizes."""
    sizes = np.sort(runs["params"].dropna().unique())
    if len(sizes) <= min_fit_sizes:
        raise AnalysisError(f"{len(sizes)} model sizes with final losses: a backtest needs more than {min_fit_sizes}")
    return [float(s) for s in sizes[min_fit_sizes:]]


def backtest(
    table: pd.DataFrame,
    x: str = OWN,
    law: str = "overtrain",
    metric: str = "acc",
    min_fit_sizes: int = MIN_FIT_SIZES,
    seed: int = 0,
) -> Backtest:
    """Every rung above the `min_fit_sizes` smallest predicted from all runs of smaller sizes."""
    runs = final_losses(table, x)
    tasks = _tasks(table, metric)
    errors = {task: downstream_errors(table, task, metric) for task in tasks}
    parts, warnings = [], []
    for rung in rungs(runs, min_fit_sizes):
        fit_ids = tuple(runs.loc[runs["params"] < rung, "run_id"])
        heldout = tuple(runs.loc[runs["params"] == rung, "run_id"])
        label = _label(runs, rung)
        result = extrapolate(table, law, x, None, metric, Split(heldout=heldout, fit=fit_ids), seed=seed,
                             informative=False)  # fmt: skip
        warnings += [f"rung {label}: {w}" for w in result.warnings if w]
        fit_sizes = int(runs.loc[runs["params"] < rung, "params"].nunique())
        base = result.runs.assign(rung=label, fit_sizes=fit_sizes)
        parts.append(_rows(base, "loss", "observed", "predicted"))
        for task, error in errors.items():
            for dataset, group in base.groupby("dataset", sort=True):
                group = group.drop(columns=[c for c in group if c.startswith(("observed_error", "predicted_error",
                                                                             "error_"))])  # fmt: skip
                group["observed_error"] = group["run_id"].map(error).astype(float)
                if group.loc[group["role"] == FIT, "observed_error"].notna().sum() < 3:
                    continue
                fit, _ = chain_error(group, group["role"] == FIT, None, 0, seed)
                used = group[group["role"] != UNUSED]
                warnings += [f"rung {label}: {dataset}: {task}: {w}" for w in error_warnings(fit, used)]
                parts.append(_rows(group, task, "observed_error", "predicted_error"))
    rows = pd.concat(parts, ignore_index=True)[COLUMNS]
    return Backtest(law, x, rows, tuple(dict.fromkeys(warnings)))


def _tasks(table: pd.DataFrame, metric: str) -> list[str]:
    rows = table[(table["kind"] == "task").fillna(False) & table["final"].fillna(False)]
    return sorted(rows.loc[(rows["metric"] == metric).fillna(False), "name"].dropna().unique())


def _label(runs: pd.DataFrame, rung: float) -> str:
    sizes = runs.loc[runs["params"] == rung, "size"].dropna().unique()
    return str(sizes[0]) if len(sizes) == 1 else f"{rung:.4g}"


def _rows(runs: pd.DataFrame, quantity: str, observed: str, predicted: str) -> pd.DataFrame:
    held = runs[runs["role"] == HELDOUT]
    out = held[["rung", "dataset", "run_id", "fit_sizes", "compute_ratio"]].assign(
        quantity=quantity, observed=held[observed].astype(float), predicted=held[predicted].astype(float)
    )
    out["abs_error"] = (out["predicted"] - out["observed"]).abs()
    out["rel_error"] = out["abs_error"] / out["observed"].abs()
    return out


def plot(result: Backtest, path: str | Path) -> Path:
    """Relative error against compute ratio (log), the loss and the task errors as separate series."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    rows = result.rows.dropna(subset=["rel_error", "compute_ratio"])
    tasks = rows[rows["quantity"] != "loss"]
    axis.scatter(tasks["compute_ratio"], 100 * tasks["rel_error"], s=8, alpha=0.4, color="tab:gray",
                 label="task error (chained)")  # fmt: skip
    medians = tasks.groupby("compute_ratio")["rel_error"].median()
    axis.plot(medians.index, 100 * medians.to_numpy(), "s-", color="tab:orange", label="task error, median")
    loss = rows[rows["quantity"] == "loss"]
    axis.scatter(loss["compute_ratio"], 100 * loss["rel_error"], s=24, color="tab:blue", label="loss")
    axis.set_xscale("log")
    axis.set_xlabel("compute of the predicted run / largest fit run")
    axis.set_ylabel("relative error (%)")
    axis.set_title(f"backtest: {result.law} on {result.x}")
    axis.legend(fontsize=8)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
