"""Bootstrap intervals for fitted laws: refits on resampled points, and chaining one law into another."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from analysis.errors import AnalysisError
from analysis.fitting import FITTERS, Fit
from analysis.laws import Law
from analysis.separable import condition, counts, profile, solve

# a bootstrap resample whose linear subproblem is worse conditioned cannot identify the law
MAX_CONDITION = 1e10
# grid of the separable bootstrap's nonlinear parameter, before parabolic refinement
PROFILE_POINTS = 401


@dataclass(frozen=True)
class Bootstrap:
    """Refits on resampled points. Rows of `params` and `predictions` are the replicates that fitted."""

    law: Law
    params: np.ndarray  # (replicates, len(law.params))
    predictions: np.ndarray  # (replicates, len(x_pred))
    n_resamples: int
    level: float

    @property
    def n_ok(self) -> int:
        return len(self.params)

    def interval(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Percentile interval over replicates (rows) of `values`; NaN with fewer than 2 rows."""
        values = values[np.isfinite(values).all(axis=1)] if values.ndim == 2 else values
        if len(values) < 2:
            nan = np.full(values.shape[1:], np.nan)
            return nan, nan
        tail = (1 - self.level) / 2
        low, high = np.quantile(values, (tail, 1 - tail), axis=0)
        return low, high

    def param_intervals(self) -> dict[str, tuple[float, float]]:
        low, high = self.interval(self.params)
        return {name: (float(lo), float(hi)) for name, lo, hi in zip(self.law.params, low, high, strict=True)}

    def prediction_interval(self) -> tuple[np.ndarray, np.ndarray]:
        return self.interval(self.predictions)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Every replicate's prediction: x (len(inputs), n) -> (replicates, n); x may also be
        (len(inputs), replicates, n), one input per replicate (to chain one law into another)."""
        x = self.law.as_inputs(x)
        with np.errstate(all="ignore"):
            return self.law.function(x, *self.params.T[:, :, None])

    def summary(self) -> str:
        """The parameters' intervals as one line."""
        intervals = ", ".join(f"{k} [{lo:.4g}, {hi:.4g}]" for k, (lo, hi) in self.param_intervals().items())
        return f"{self.level:.0%} bootstrap CI ({self.n_ok}/{self.n_resamples} refits): {intervals}"

    def to_dict(self) -> dict:
        return {
            "n_resamples": self.n_resamples,
            "n_ok": self.n_ok,
            "level": self.level,
            "params": {
                name: [value if np.isfinite(value) else None for value in interval]
                for name, interval in self.param_intervals().items()
            },
        }


def bootstrap(
    fit: Fit,
    x: np.ndarray,
    y: np.ndarray,
    x_pred: np.ndarray,
    n_resamples: int = 200,
    level: float = 0.95,
    seed: int = 0,
) -> Bootstrap:
    """Percentile intervals from refitting on points (runs) resampled with replacement.

    Resamples that cannot be fitted (fewer distinct points than parameters, constant values) are
    dropped; `n_ok` says how many remained. How each resample is refitted:
    - a separable law (analysis.separable) fitted by least squares: all resamples at once, exact in
      the linear parameters and by grid search plus parabolic refinement in the other one, over its
      bounds (widened to include the full-data value): the least-squares optimum, not a local one;
    - otherwise one local fit per resample from the full-data optimum: the `refit` of the fit's
      method in FITTERS (Levenberg-Marquardt for least squares and differential evolution, L-BFGS
      for Huber).
    """
    if not fit.ok:
        raise AnalysisError(f"cannot bootstrap the failed {fit.law.name} fit: {fit.reason}")
    law = fit.law
    x, y, x_pred = law.as_inputs(x), np.asarray(y, dtype=float), law.as_inputs(x_pred)
    draws = np.random.default_rng(seed).integers(0, y.size, size=(n_resamples, y.size))
    usable = _fittable(law, x, y, draws)
    fitter = FITTERS.get(fit.method)
    if law.basis is not None and len(law.nonlinear) <= 1 and fitter.least_squares:
        params = separable_refits(fit, x, y, counts(draws[usable], y.size))
    else:
        start = tuple(fit.params.values())
        refits = [fitter.refit(law, x[:, i], y[i], start) for i in draws[usable]]
        params = np.array([list(r.params.values()) for r in refits if r.ok]).reshape(-1, len(law.params))
    params = params[np.isfinite(params).all(axis=1)]
    boot = Bootstrap(law, params, np.empty((0, x_pred.shape[1])), n_resamples, level)
    return replace(boot, predictions=boot.predict(x_pred)) if len(params) else boot


def clip_interval(
    low: np.ndarray, high: np.ndarray, bounds: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """An interval of a bounded quantity (an error rate in [0, 1]) clipped to its range: (low, high,
    clipped: it reached outside, uninformative: it spans the whole range). NaN stays NaN."""
    low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    lo, hi = bounds
    with np.errstate(invalid="ignore"):
        clipped = (low < lo) | (high > hi)
        low, high = np.clip(low, lo, hi), np.clip(high, lo, hi)
        uninformative = (low <= lo) & (high >= hi)
    return low, high, clipped, uninformative


def chain(inner: Bootstrap, outer: Bootstrap) -> np.ndarray:
    """Replicates of outer(inner(x)): replicate i of `outer` applied to replicate i of `inner`'s
    predictions (the two bootstraps resample independently), shape (min(n_ok), len(x_pred))."""
    m = min(inner.n_ok, outer.n_ok)
    return replace(outer, params=outer.params[:m]).predict(inner.predictions[None, :m])


def _fittable(law: Law, x: np.ndarray, y: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """Which resamples check_points would accept: enough distinct inputs, a y that varies."""
    _, ids = np.unique(x, axis=1, return_inverse=True)
    distinct = (counts(ids.ravel()[draws], ids.max() + 1) > 0).sum(axis=1)
    drawn = y[draws]
    return (distinct >= len(law.params)) & (np.ptp(drawn, axis=1) > 0)


def separable_refits(fit: Fit, x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Least-squares refits of a separable law for every weight row; unidentifiable rows dropped."""
    law, basis = fit.law, fit.law.basis
    assert basis is not None, f"law {law.name} is not separable"  # bootstrap calls this for separable ones
    nonlinear: dict[str, np.ndarray] = {}  # the nonlinear parameter's refits, if the law has one
    if not law.nonlinear:
        coef, _ = solve(basis(x), y, weights)
        coef = coef[:, 0]
        design = np.broadcast_to(basis(x)[0], (len(weights), *basis(x).shape[1:]))
    else:
        (name,) = law.nonlinear
        low, high = law.bound(name)
        low, high = min(low, fit.params[name]), max(high, fit.params[name])
        thetas = np.linspace(low, high, PROFILE_POINTS + 2)[1:-1]  # the ends may be degenerate (exponent 0)
        with np.errstate(all="ignore"):
            nonlinear[name], coef, _ = profile(lambda t: basis(x, t), thetas, y, weights, refine=3)
            design = basis(x, nonlinear[name])
    columns = [nonlinear[p] if p not in law.linear else coef[:, law.linear.index(p)] for p in law.params]
    identified = condition(design, weights) < MAX_CONDITION
    return np.stack(columns, axis=1)[identified]
