"""The OLMo ladder's two-step protocol (Bhagia et al., arXiv 2412.04403) on its released data, as the release's
configuration runs it. OLMO_LADDER is the study's entry in analysis.studies.STUDIES.

Per task (olmo_ladder.TASKS; MMLU the weighted mean of its four subject groups):
- step 1: the task loss (bits per byte of the correct answer) of each ladder run, the mean of its last 5
  checkpoints, against (N, D) at its last checkpoint: L(N, D) = E + A / N^alpha + B / D^beta, the SUM of
  Huber(delta 1e-3) on log residuals, L-BFGS-B with every parameter >= 0 (A, B >= 1: the release fits
  log A, log B >= 0) from the release's one start (log A 3, log B 6, alpha 0.1, beta 0.2, E 1);
- step 2: accuracy against task loss over every ladder checkpoint after the first 10 % of each run, both
  smoothed by a 5-checkpoint moving average, plus the "ideal point" (loss 0, accuracy 1):
  acc(L) = a / (1 + exp(-k (L - L0))) + b with a in [-1, 0], k, L0 >= 0, b in [0, 1], by bounded least
  squares from the release's start (a = chance - 1, L0 0.9, k 3, b 1; its other starts, unbounded, when
  that one fails);
- chained: acc = step2(step1(N_target, D_target)) against the target's accuracy (mean of its last 5
  checkpoints).
Bootstrap intervals resample the 16 ladder runs and refit both steps on each resample.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import OptimizeWarning, curve_fit, minimize
from scipy.special import huber

from analysis import olmo_ladder
from analysis.diagnostics import constraint_warnings
from analysis.errors import AnalysisError
from analysis.extrapolate import DatasetFit, Extrapolation
from analysis.fitting import HUBER_LOG, NO_CONVERGENCE, NON_POSITIVE, Fit, check_points, failed
from analysis.laws import Law, get_law
from analysis.reproduce import RECORD_KEYS, records_frame
from analysis.select import RUN_COLUMNS
from analysis.studies import Study

STEP1 = get_law("chinchilla")  # L(N, D) = E + A / N^alpha + B / D^beta
STEP1_START = (3.0, 6.0, 0.1, 0.2, 1.0)  # the release's start: log A, log B, alpha, beta, E
HUBER_DELTA = 1e-3
MOVING_AVG = 5  # checkpoints averaged (step 1: the last ones; step 2: a moving window)
SKIP = 0.1  # share of each ladder run's first checkpoints left out of step 2
IDEAL = (0.0, 1.0)  # step 2's helper point: zero task loss, full accuracy
BOUNDED = "least_squares_bounded"


def _sigmoid(x, a, L0, k, b):
    (L,) = x
    return a / (1 + np.exp(-k * (L - L0))) + b


# The release's parametrisation and box; not registered in LAWS (analysis.laws' `sigmoid` is the same curve
# with a > 0, k < 0, in a box that cannot express the release's b <= 1).
STEP2 = Law(
    name="ladder_sigmoid",
    formula="acc(L) = a / (1 + exp(-k (L - L0))) + b",
    inputs=("L",),
    params=("a", "L0", "k", "b"),
    function=_sigmoid,
    bounds=((-1.0, 0.0), (0.0, np.inf), (0.0, np.inf), (0.0, 1.0)),
    init_grid=((-0.75, 0.9, 3.0, 1.0),),
)
# the release's fallback starts (a, L0, k, b), tried unbounded after the bounded first start fails
FALLBACK_STARTS = (
    (-0.7, 0.6, 7.0, 1.0), (-0.7, 1.4, 3.2, 1.3), (-2.7, 1.4, 3.2, 1.3), (-0.09, 0.6, 6.5, 0.1),
    (-0.64, -0.41, 12.7, 1.05), (-2.15771768e-02, 1.39273020, -58.5129498, 0.454084320),
    (-1.60006552, 1.36001561, -495.252012, 0.410217043),
)  # fmt: skip


def fit_sigmoid(x: np.ndarray, y: np.ndarray, minimum: float, start: tuple[float, ...] | None = None) -> Fit:
    """Step 2: bounded least squares (curve_fit, trust region) from the release's start (a = minimum - 1), then
    its fallback starts unbounded; the first fit without an optimiser warning wins. `start` instead: one
    bounded fit from there (the bootstrap's refit)."""
    x, y = STEP2.as_inputs(x), np.asarray(y, dtype=float)
    if (failure := check_points(STEP2, x, y)) is not None:
        return failure
    bounds = tuple(np.array(STEP2.bounds).T)
    tries = [(start, bounds)] if start else [((minimum - 1.0, 0.9, 3.0, 1.0), bounds)]
    tries += [] if start else [(p0, (-np.inf, np.inf)) for p0 in FALLBACK_STARTS]
    for p0, box in tries:
        with warnings.catch_warnings(record=True) as caught, np.errstate(all="ignore"):
            warnings.simplefilter("always", OptimizeWarning)
            try:
                params, _ = curve_fit(STEP2.function, x, y, p0=p0, bounds=box, maxfev=500000)
            except (RuntimeError, ValueError):
                continue
        if np.isfinite(params).all() and not any(issubclass(w.category, OptimizeWarning) for w in caught):
            residual = float(np.sqrt(np.sum((y - STEP2.function(x, *params)) ** 2) / (y.size - 2)))
            return Fit(STEP2, dict(zip(STEP2.params, map(float, params), strict=True)), y.size, residual,
                       method=BOUNDED)  # fmt: skip
    return failed(STEP2, y.size, NO_CONVERGENCE, "curve_fit converged from none of the release's starts", BOUNDED)


def fit_step1(n: np.ndarray, d: np.ndarray, loss: np.ndarray, start: tuple[float, ...] | None = None) -> Fit:
    """Step 1 as the release runs it: the sum of Huber(delta 1e-3) on log residuals over (log A, log B, alpha,
    beta, E), all >= 0, with the analytic gradient, L-BFGS-B run to ftol 0, gtol 1e-10, from the release's start
    (`start`: from these law parameters, the bootstrap's refit). fitting.fit_huber_log minimises the same
    objective but with scipy's default tolerances, which stop it from one start at up to 14x the objective."""
    x, y = STEP1.as_inputs(np.vstack([n, d])), np.asarray(loss, dtype=float)
    if (failure := check_points(STEP1, x, y)) is not None:
        return replace(failure, method=HUBER_LOG)
    if np.any(y <= 0):
        return failed(STEP1, y.size, NON_POSITIVE, f"{np.sum(y <= 0)} of {y.size} task losses <= 0", HUBER_LOG)
    log_n, log_d, log_y = np.log(x[0]), np.log(x[1]), np.log(y)

    def value_and_gradient(z: np.ndarray) -> tuple[float, np.ndarray]:
        term_n, term_d = np.exp(z[0] - log_n * z[2]), np.exp(z[1] - log_d * z[3])
        predicted = term_n + term_d + z[4]
        residual = np.log(predicted) - log_y
        slope = np.clip(residual, -HUBER_DELTA, HUBER_DELTA) / predicted
        gradient = [slope @ term_n, slope @ term_d, -slope @ (term_n * log_n), -slope @ (term_d * log_d), slope.sum()]
        return float(huber(HUBER_DELTA, residual).sum()), np.array(gradient)

    p = dict(zip(STEP1.params, start, strict=True)) if start is not None else None
    z0 = STEP1_START if p is None else (np.log(p["A"]), np.log(p["B"]), p["alpha"], p["beta"], p["E"])
    with np.errstate(all="ignore"):
        result = minimize(value_and_gradient, z0, jac=True, method="L-BFGS-B", bounds=[(0, None)] * 5, tol=0.0,
                          options={"ftol": 0.0, "gtol": 1e-10, "maxiter": 1_000_000})  # fmt: skip
    z = result.x
    if not np.isfinite(result.fun) or not np.isfinite(z).all():
        return failed(STEP1, y.size, NO_CONVERGENCE, "L-BFGS-B ended on no finite objective", HUBER_LOG)
    params = {"E": z[4], "A": np.exp(z[0]), "alpha": z[2], "B": np.exp(z[1]), "beta": z[3]}
    params = {k: float(v) for k, v in params.items()}
    residual = float(np.sqrt(np.sum((y - STEP1(x, params)) ** 2) / (y.size - 2)))
    return Fit(STEP1, params, y.size, residual, method=HUBER_LOG)


def _moving_average(values: np.ndarray, n: int = MOVING_AVG) -> np.ndarray:
    """The mean of each value and the up to n - 1 before it (the release's: partial windows at the start)."""
    total = np.cumsum(values)
    total[n:] = total[n:] - total[:-n]
    return total / np.minimum(np.arange(1, len(values) + 1), n)


def task_series(table: pd.DataFrame, task: str) -> pd.DataFrame:
    """Per run and checkpoint (in token order): run metadata, bpb and acc of `task` (components weighted)."""
    weights = olmo_ladder.TASKS[task]
    rows = table[(table["kind"] == "task").fillna(False) & table["name"].isin(list(weights))
                 & table["metric"].isin(["bpb", "acc"])]  # fmt: skip
    if rows.empty:
        raise AnalysisError(f"no task rows (metrics bpb and acc) for {task}: components {', '.join(weights)}")
    wide = rows.pivot_table(index=["run_id", "tokens"], columns=["metric", "name"], values="value", aggfunc="first")
    out = {}
    for metric in ("bpb", "acc"):
        missing = [c for c in weights if (metric, c) not in wide.columns]
        if missing:
            raise AnalysisError(f"no task rows with metric {metric!r} for {missing[0]}")
        parts = wide[[(metric, c) for c in weights]].astype(float).to_numpy()
        out[metric] = parts @ np.array(list(weights.values())) / sum(weights.values())
    series = pd.DataFrame(out, index=wide.index).dropna().reset_index()
    meta = rows.groupby("run_id")[["params", "dataset", "size", "arch", "seed"]].first()
    return series.join(meta, on="run_id").sort_values(["run_id", "tokens"], ignore_index=True)


@dataclass(frozen=True)
class Points:
    """One task's data as the protocol uses it."""

    runs: pd.DataFrame  # one row per run: RUN_COLUMNS, role, bpb (last-5 mean), acc (last-5 mean)
    step2: pd.DataFrame  # ladder checkpoints after skipping: run_id, bpb, acc (moving averages)


def points(table: pd.DataFrame, task: str) -> Points:
    series = task_series(table, task)
    runs, step2 = [], []
    for run_id, group in series.groupby("run_id", sort=True):
        last = group.tail(MOVING_AVG)
        target = run_id in olmo_ladder.TARGETS
        meta = group.iloc[-1][["arch", "size", "dataset", "seed", "params", "tokens"]].to_dict()
        role = "heldout" if target else "fit"
        runs.append({"run_id": run_id, **meta, "role": role, "bpb": last["bpb"].mean(), "acc": last["acc"].mean()})
        if not target:
            kept = group.iloc[int(np.ceil(SKIP * len(group))) :]
            step2.append(pd.DataFrame({"run_id": run_id, "bpb": _moving_average(kept["bpb"].to_numpy()),
                                       "acc": _moving_average(kept["acc"].to_numpy())}))  # fmt: skip
    frame = pd.DataFrame(runs)
    frame["params"], frame["tokens"] = frame["params"].astype(float), frame["tokens"].astype(float)
    frame["multiplier"], frame["flops"] = frame["tokens"] / frame["params"], 6 * frame["params"] * frame["tokens"]
    if not (frame["role"] == "fit").any() or not step2:
        raise AnalysisError(f"no ladder runs (runs other than {', '.join(olmo_ladder.TARGETS)}) with rows for {task}")
    return Points(frame, pd.concat(step2, ignore_index=True))


@dataclass(frozen=True)
class TaskFit:
    task: str
    step1: Fit
    step2: Fit
    runs: pd.DataFrame  # Points.runs plus predicted_bpb, predicted_acc, acc_at_observed, and the intervals

    def warnings(self) -> list[str]:
        out = []
        for fit, what in ((self.step1, "step 1"), (self.step2, "step 2")):
            if not fit.ok:
                out.append(f"{self.task}: {what} failed ({fit.status}): {fit.reason}")
            out += [f"{self.task}: {what}: {w}" for w in constraint_warnings(fit)]
        return out


def fit_task(table: pd.DataFrame, task: str, n_bootstrap: int = 0, seed: int = 0) -> TaskFit:
    """Both steps for one task, the chained predictions for every run, and (n_bootstrap > 0) their intervals."""
    data = points(table, task)
    runs, ladder = data.runs.copy(), data.runs[data.runs["role"] == "fit"]
    step1 = fit_step1(ladder["params"].to_numpy(), ladder["tokens"].to_numpy(), ladder["bpb"].to_numpy())
    x2 = np.append(data.step2["bpb"].to_numpy(), IDEAL[0])
    step2 = fit_sigmoid(x2, np.append(data.step2["acc"].to_numpy(), IDEAL[1]), olmo_ladder.chance(task))
    inputs = runs[["params", "tokens"]].to_numpy(float).T
    runs["predicted_bpb"] = step1.predict(inputs) if step1.ok else np.nan
    runs["predicted_acc"] = step2.predict(runs["predicted_bpb"]) if step1.ok and step2.ok else np.nan
    runs["acc_at_observed"] = step2.predict(runs["bpb"]) if step2.ok else np.nan
    if n_bootstrap and step1.ok and step2.ok:
        bpb, acc = _bootstrap(data, step1, step2, inputs, task, n_bootstrap, seed)
        runs["bpb_ci_low"], runs["bpb_ci_high"] = _interval(bpb)
        runs["acc_ci_low"], runs["acc_ci_high"] = _interval(acc)
    return TaskFit(task, step1, step2, runs)


def _interval(replicates: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    replicates = replicates[np.isfinite(replicates).all(axis=1)]
    if len(replicates) < 2:
        return np.full(replicates.shape[1], np.nan), np.full(replicates.shape[1], np.nan)
    low, high = np.quantile(replicates, ((1 - level) / 2, (1 + level) / 2), axis=0)
    return low, high


def _bootstrap(
    data: Points, step1: Fit, step2: Fit, inputs: np.ndarray, task: str, n: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Replicates of the chained predictions: ladder runs resampled, both steps refitted from the full-data
    optimum on each resample (resamples with fewer distinct runs than step 1's parameters are skipped)."""
    ladder = data.runs[data.runs["role"] == "fit"].reset_index(drop=True)
    by_run = {run: group for run, group in data.step2.groupby("run_id")}
    draws = np.random.default_rng(seed).integers(0, len(ladder), size=(n, len(ladder)))
    bpb, acc = [], []
    for draw in draws:
        if len(np.unique(draw)) < len(STEP1.params):
            continue
        chosen = ladder.iloc[draw]
        one = fit_step1(chosen["params"].to_numpy(), chosen["tokens"].to_numpy(), chosen["bpb"].to_numpy(),
                        tuple(step1.params.values()))  # fmt: skip
        curve = pd.concat([by_run[r] for r in chosen["run_id"]])
        two = fit_sigmoid(np.append(curve["bpb"].to_numpy(), IDEAL[0]), np.append(curve["acc"].to_numpy(), IDEAL[1]),
                          olmo_ladder.chance(task), start=tuple(step2.params.values()))  # fmt: skip
        if one.ok and two.ok:
            predicted = one.predict(inputs)
            bpb.append(predicted)
            acc.append(two.predict(predicted))
    return np.array(bpb).reshape(-1, inputs.shape[1]), np.array(acc).reshape(-1, inputs.shape[1])


def records(fits: list[TaskFit]) -> list[dict]:
    """Per target and task: quantity bpb:<task> (step 1 alone) and acc:<task> (chained), RECORD_KEYS."""
    out = []
    for fit in fits:
        for run in fit.runs[fit.runs["role"] == "heldout"].itertuples():
            for quantity in ("bpb", "acc"):
                observed, predicted = getattr(run, quantity), getattr(run, f"predicted_{quantity}")
                low, high = (getattr(run, f"{quantity}_ci_{side}", None) for side in ("low", "high"))
                values = [observed, predicted, abs(predicted - observed) / observed, low, high]
                values = [None if v is None or pd.isna(v) else float(v) for v in values]
                out.append(dict(zip(RECORD_KEYS, [run.dataset, run.run_id, f"{quantity}:{fit.task}", *values],
                                    strict=True)))  # fmt: skip
    return out


def _extrapolation(fits: list[TaskFit]) -> Extrapolation:
    """The fits as an Extrapolation keyed by task (its `dataset` column holds the task): loss is the task's bpb,
    error 1 - accuracy."""
    parts = []
    for fit in fits:
        runs = fit.runs.assign(dataset=fit.task, observed=fit.runs["bpb"], predicted=fit.runs["predicted_bpb"])
        runs["compute_ratio"] = runs["flops"] / runs.loc[runs["role"] == "fit", "flops"].max()
        runs["rel_error"] = (runs["predicted"] - runs["observed"]).abs() / runs["observed"]
        runs["observed_error"], runs["predicted_error"] = 1 - runs["acc"], 1 - runs["predicted_acc"]
        runs["error_at_observed"] = 1 - runs["acc_at_observed"]
        parts.append(runs)
    runs = pd.concat(parts, ignore_index=True)
    keep = [*RUN_COLUMNS, "role", "compute_ratio", "observed", "predicted", "rel_error", "observed_error",
            "predicted_error", "error_at_observed"]  # fmt: skip
    warnings = tuple(w for fit in fits for w in fit.warnings())
    return Extrapolation(STEP1, "task bpb", "1 - accuracy (chained)",
                         {f.task: DatasetFit(f.step1, f.step2) for f in fits}, runs[keep], warnings)  # fmt: skip


@dataclass(frozen=True)
class Reproduction:
    result: Extrapolation
    records: list[dict]
    n_bootstrap: int
    fits: tuple[TaskFit, ...]
    published: pd.DataFrame | None  # the release's 13B-5T table (Task -> Actual, Pred), when shipped

    def comparison(self) -> pd.DataFrame:
        """Per task, 13B-5T: observed and predicted accuracy (ours and the release's), absolute errors in points."""
        rows = []
        for fit in self.fits:
            run = fit.runs.set_index("run_id")
            if "13B-5T" not in run.index:
                continue
            observed, predicted = run.at["13B-5T", "acc"], run.at["13B-5T", "predicted_acc"]
            theirs = self.published["Pred"].get(fit.task, np.nan) if self.published is not None else np.nan
            rows.append({"task": olmo_ladder.DISPLAY[fit.task], "observed": observed, "predicted": predicted,
                         "error_pts": 100 * abs(predicted - observed), "release_predicted": theirs,
                         "release_error_pts": 100 * abs(theirs - observed),
                         "vs_release_pts": 100 * abs(predicted - theirs)})  # fmt: skip
        return pd.DataFrame(rows)

    def summary(self) -> str:
        head = (f"{olmo_ladder.NAME}: step 1 {STEP1.formula} (Huber on log, delta 1e-3) on the ladder runs, "
                f"step 2 {STEP2.formula} on their checkpoints; {self.n_bootstrap} bootstrap resamples of the ladder "
                "runs")  # fmt: skip
        table = records_frame(self.records).to_string(index=False, float_format="{:.4g}".format, na_rep="-")
        lines = [head, table]
        comparison = self.comparison()
        if not comparison.empty:
            lines += ["", "13B-5T accuracy against the release's own table (points):",
                      comparison.to_string(index=False, float_format="{:.4g}".format, na_rep="-")]  # fmt: skip
        if self.result.warnings:
            lines += ["", "warnings:", *(f"  {w}" for w in self.result.warnings)]
        return "\n".join(lines)


def reproduction(table: pd.DataFrame, n_bootstrap: int = 200, seed: int = 0) -> Reproduction:
    """The protocol on a results table (the olmo_ladder import) for every task of olmo_ladder.TASKS."""
    fits = tuple(fit_task(table, task, n_bootstrap, seed) for task in olmo_ladder.TASKS)
    published = olmo_ladder.published() if (olmo_ladder.DATA_DIR / "figures").is_dir() else None
    return Reproduction(_extrapolation(list(fits)), records(list(fits)), n_bootstrap, fits, published)


def reproduce(source: str | Path | pd.DataFrame | None = None, n_bootstrap: int = 200, seed: int = 0) -> list[dict]:
    """The protocol's records for a table, results file or data directory (None: shipped)."""
    return reproduction(OLMO_LADDER.table(source), n_bootstrap, seed).records


OLMO_LADDER = Study(
    name=olmo_ladder.NAME,
    load=olmo_ladder.load,
    reproduce=reproduction,
    is_release=olmo_ladder.is_release,
    chance_levels=olmo_ladder.chance_levels,
    x=olmo_ladder.X,
    loss_law="chinchilla",
)
