"""Forecasts registered before the runs finish, and their scores once they have (docs/planning.md).

`forecast`: for every run of a sweep's plan not in the results table yet, per training dataset, the loss law
fitted on the runs done (all of them) predicts the final loss with a bootstrap interval; each task the classifier
(analysis.classify) calls predictable gets its error chained through Err(L) fitted on the done runs (as
analysis.extrapolate.chain_error), with the chained interval; any other task is marked with its class and gets
no number. The record names the fit set (run ids and a SHA-256 of its final rows) and the time, so that a score
later can be checked against what was known when the forecast was made.

The plan is the JSON that `testbed sweep plan SWEEP --json` prints (run_id, size, params, dataset, multiplier,
tokens, flops per run): the analysis package does not import testbed (the planner imports torch), so a sweep
file is read through its plan.

`score`: each forecast whose run is in the results table now, its error and whether its interval covered the
observed value; the coverage rate over all forecasts with an interval.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.classify import classify
from analysis.errors import AnalysisError
from analysis.extrapolate import chain_error, loss_law, run_inputs
from analysis.fitting import fit_law
from analysis.resample import bootstrap
from analysis.select import OWN, downstream_errors, final_losses

LOSS = "loss"
PREDICTABLE = "predictable"
PLAN_KEYS = ("run_id", "dataset", "params", "multiplier")
FORECAST_KEYS = ("created", "x", "law", "metric", "level", "bootstrap", "fit", "forecasts")


def read_plan(path: str | Path) -> pd.DataFrame:
    """The runs of a sweep plan (`testbed sweep plan SWEEP --json`), checked: run_id, dataset, params, multiplier."""
    path = Path(path)
    if path.suffix in (".yaml", ".yml"):
        raise AnalysisError(f"--runs {path}: a sweep file; give its plan instead (the analysis side does not import "
                            f"the planner): testbed sweep plan {path} --json > plan.json")  # fmt: skip
    try:
        rows = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise AnalysisError(f"--runs {path}: cannot read a JSON plan ({err})") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise AnalysisError(f"--runs {path}: not a plan (a JSON list of runs, as `testbed sweep plan --json` prints)")
    for i, row in enumerate(rows):
        if missing := [k for k in PLAN_KEYS if row.get(k) is None]:
            raise AnalysisError(f"--runs {path}: run [{i}] lacks key(s) {', '.join(missing)}")
    plan = pd.DataFrame(rows)
    plan["params"], plan["multiplier"] = plan["params"].astype(float), plan["multiplier"].astype(float)
    plan["tokens"] = plan["tokens"].astype(float) if "tokens" in plan else plan["params"] * plan["multiplier"]
    plan["flops"] = 6 * plan["params"] * plan["tokens"]
    return plan


def fit_hash(table: pd.DataFrame, run_ids: Sequence[str]) -> str:
    """SHA-256 of the final val_loss and task rows of these runs (sorted, as CSV): what the forecast knew."""
    rows = table[table["run_id"].isin(run_ids) & table["final"].fillna(False)]
    rows = rows[rows["kind"].isin(["val_loss", "task"]).fillna(False)]
    columns = ["run_id", "kind", "name", "metric", "value", "params", "multiplier", "tokens"]
    text = rows[columns].sort_values(columns[:4]).to_csv(index=False, float_format="%.10g")
    return hashlib.sha256(text.encode()).hexdigest()


def forecast(table: pd.DataFrame, plan: pd.DataFrame, x: str = OWN, law: str = "overtrain", metric: str = "acc",
             n_bootstrap: int = 1000, seed: int = 0, classify_bootstrap: int = 200,
             now: datetime | None = None) -> dict:  # fmt: skip
    """The forecast record (module docstring) as a JSON-ready dict."""
    selected = loss_law(law)
    done = final_losses(table, x)
    todo = plan[~plan["run_id"].isin(set(table["run_id"]))]
    verdicts = _verdicts(table, x, metric, classify_bootstrap, seed)
    fits, forecasts = {}, []
    for dataset, pending in todo.groupby("dataset", sort=True):
        fitted = done[done["dataset"] == dataset]
        if fitted.empty:
            raise AnalysisError(f"no done run on dataset {dataset!r} to forecast {pending['run_id'].iloc[0]} from")
        ids = list(fitted["run_id"])
        fits[str(dataset)] = {"runs": ids, "hash": fit_hash(table, ids)}
        forecasts += _dataset_forecasts(table, selected, fitted, pending, verdicts, metric, n_bootstrap, seed)
    created = (now or datetime.now(UTC)).isoformat(timespec="seconds")
    return {"created": created, "x": x, "law": selected.name, "metric": metric, "level": 0.95,
            "bootstrap": n_bootstrap, "fit": fits, "forecasts": forecasts}  # fmt: skip


def _verdicts(table: pd.DataFrame, x: str, metric: str, n_bootstrap: int, seed: int) -> dict[str, str]:
    """task -> its class (empty without task rows)."""
    tasks = table[(table["kind"] == "task").fillna(False) & (table["metric"] == metric).fillna(False)]
    if tasks.empty:
        return {}
    return {v.task: v.cls for v in classify(table, x, n_bootstrap=n_bootstrap, seed=seed, metric=metric)}


def _dataset_forecasts(table: pd.DataFrame, law, fitted: pd.DataFrame, pending: pd.DataFrame,
                       verdicts: dict[str, str], metric: str, n_bootstrap: int, seed: int) -> list[dict]:  # fmt: skip
    columns = fitted.columns.drop("loss")
    runs = pd.concat([fitted.rename(columns={"loss": "observed"}), pending.reindex(columns=columns)], ignore_index=True)
    is_fit = runs["run_id"].isin(fitted["run_id"]).to_numpy()
    x, y = run_inputs(law, runs), runs["observed"].to_numpy(dtype=float)
    fit = fit_law(law, x[:, is_fit], y[is_fit])
    if not fit.ok:
        raise AnalysisError(f"dataset {runs['dataset'].iloc[0]}: the {law.name} law cannot be fitted on the "
                            f"{int(is_fit.sum())} done runs: {fit.reason}")  # fmt: skip
    runs["predicted"] = fit.predict(x)
    boot = bootstrap(fit, x[:, is_fit], y[is_fit], x, n_bootstrap, seed=seed) if n_bootstrap else None
    runs["ci_low"], runs["ci_high"] = boot.prediction_interval() if boot else (np.nan, np.nan)
    out = []
    quantities = {"loss": ("predicted", "ci_low", "ci_high")}
    for task, cls in verdicts.items():
        if cls != PREDICTABLE:
            continue
        errors = downstream_errors(table, task, metric)
        runs["observed_error"] = runs["run_id"].map(errors).astype(float)
        chain_error(runs, pd.Series(is_fit, index=runs.index), boot, n_bootstrap, seed)
        runs[[f"{task}/p", f"{task}/lo", f"{task}/hi"]] = runs.reindex(
            columns=["predicted_error", "error_ci_low", "error_ci_high"]).to_numpy()  # fmt: skip
        quantities[task] = (f"{task}/p", f"{task}/lo", f"{task}/hi")
    for row in runs[~is_fit].itertuples(index=False):
        values = row._asdict()
        base = {"run_id": row.run_id, "dataset": row.dataset, "size": values.get("size"),
                "params": float(row.params), "multiplier": float(row.multiplier)}  # fmt: skip
        for quantity, (p, lo, hi) in quantities.items():
            frame = runs.loc[runs["run_id"] == row.run_id].iloc[0]
            out.append(base | {"quantity": quantity, "kind": "loss" if quantity == LOSS else f"error (1 - {metric})",
                               "predictable": True, "class": None if quantity == LOSS else PREDICTABLE,
                               "predicted": _num(frame[p]), "ci_low": _num(frame[lo]),
                               "ci_high": _num(frame[hi])})  # fmt: skip
        for task, cls in verdicts.items():
            if cls != PREDICTABLE:
                out.append(base | {"quantity": task, "kind": f"error (1 - {metric})", "predictable": False,
                                   "class": cls, "predicted": None, "ci_low": None, "ci_high": None})  # fmt: skip
    return out


def _num(value) -> float | None:
    return None if pd.isna(value) or not math.isfinite(float(value)) else float(value)


def read_forecast(path: str | Path) -> dict:
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise AnalysisError(f"{path}: cannot read a forecast ({err})") from None
    if not isinstance(record, dict) or (missing := [k for k in FORECAST_KEYS if k not in record]):
        raise AnalysisError(f"{path}: not a forecast (lacks key(s) {', '.join(missing) if missing else 'all'})")
    return record


def score(record: dict, table: pd.DataFrame) -> dict:
    """Each forecast whose run is in `table` now: observed, error, rel_error and covered (None without an interval);
    the coverage over the scored forecasts with an interval, and how many are still pending."""
    losses = final_losses(table, record["x"]).set_index("run_id")["loss"]
    errors: dict[str, pd.Series | None] = {}
    scored, pending = [], 0
    for item in record["forecasts"]:
        if item["quantity"] == LOSS:
            observed = losses.get(item["run_id"], np.nan)
        else:
            if item["quantity"] not in errors:
                try:
                    errors[item["quantity"]] = downstream_errors(table, item["quantity"], record["metric"])
                except AnalysisError:
                    errors[item["quantity"]] = None  # the task was not evaluated (yet)
            series = errors[item["quantity"]]
            observed = series.get(item["run_id"], np.nan) if series is not None else np.nan
        if pd.isna(observed):
            pending += 1
            continue
        observed = float(observed)
        predicted, low, high = item["predicted"], item["ci_low"], item["ci_high"]
        covered = None if low is None or high is None else bool(low <= observed <= high)
        error = None if predicted is None else predicted - observed
        scored.append(item | {"observed": observed, "error": error, "covered": covered,
                              "rel_error": None if error is None else abs(error) / abs(observed)})  # fmt: skip
    judged = [s["covered"] for s in scored if s["covered"] is not None]
    coverage = sum(judged) / len(judged) if judged else None
    return {"created": record["created"], "level": record["level"], "scored": scored, "pending": pending,
            "n_intervals": len(judged), "coverage": coverage}  # fmt: skip


def score_summary(result: dict) -> str:
    lines = [f"forecast of {result['created']}: {len(result['scored'])} scored, {result['pending']} pending"]
    for s in result["scored"]:
        interval = "no interval" if s["covered"] is None else \
            f"[{s['ci_low']:.4g}, {s['ci_high']:.4g}] {'covered' if s['covered'] else 'MISSED'}"  # fmt: skip
        predicted = "-" if s["predicted"] is None else f"{s['predicted']:.4g}"
        note = "" if s["predictable"] else f" (class {s['class']}: not forecast)"
        lines.append(f"  {s['run_id']} {s['quantity']}: predicted {predicted}, observed {s['observed']:.4g}, "
                     f"{interval}{note}")  # fmt: skip
    if result["coverage"] is None:
        lines.append("coverage: no interval scored yet")
    else:
        lines.append(f"coverage: {result['coverage']:.3g} over {result['n_intervals']} intervals "
                     f"(nominal {result['level']:.0%})")  # fmt: skip
    return "\n".join(lines)
