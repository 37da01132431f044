"""Fitting a law to points: a result type that carries failure reasons, and the fitters.

A fit that cannot be made returns a `Fit` whose status names the reason; fitters never raise on
bad data and never return a number they could not justify.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit

from analysis.errors import AnalysisError
from analysis.laws import Law

OK = "ok"
TOO_FEW_POINTS = "too_few_points"
NON_FINITE = "non_finite"
CONSTANT_DATA = "constant_data"
NO_CONVERGENCE = "no_convergence"


@dataclass(frozen=True)
class Fit:
    law: Law
    params: dict[str, float]  # empty unless status is "ok"
    n_points: int
    residual: float = float("nan")  # sqrt(SSR / (n - 2)), the released code's selection criterion
    status: str = OK
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.status == OK

    def predict(self, x: np.ndarray) -> np.ndarray:
        if not self.ok:
            raise AnalysisError(f"cannot predict with the failed {self.law.name} fit: {self.reason}")
        return self.law(x, self.params)

    def to_dict(self) -> dict:
        out = {"law": self.law.name, "status": self.status, "reason": self.reason, "n_points": self.n_points}
        if self.ok:
            out |= {"params": self.params, "residual": self.residual, "formula": self.law.formula}
            if self.law.derived is not None:
                out |= {"derived": self.law.derived(self.params), "derived_formula": self.law.derived_formula}
        return out


def failed(law: Law, n_points: int, status: str, reason: str) -> Fit:
    return Fit(law, {}, n_points, status=status, reason=reason)


def check_points(law: Law, x: np.ndarray, y: np.ndarray) -> Fit | None:
    """The failed Fit that these points force, or None when a fit can be tried.

    Shared by every fitter: needs finite values, at least 3 points (the residual divides by n - 2),
    at least as many distinct inputs as parameters, and a y that varies.
    """
    n = y.size
    bad = ~(np.isfinite(y) & np.isfinite(x).all(axis=0))
    if bad.any():
        return failed(law, n, NON_FINITE, f"{bad.sum()} of {n} points have NaN or infinite values")
    if n < 3:
        return failed(
            law, n, TOO_FEW_POINTS, f"{n} points, at least 3 needed (the residual divides by n - 2)"
        )
    distinct = len(np.unique(x, axis=1).T)
    if distinct < len(law.params):
        return failed(
            law,
            n,
            TOO_FEW_POINTS,
            f"{distinct} distinct inputs for the {len(law.params)} parameters of {law.name}",
        )
    if np.ptp(y) == 0:
        return failed(law, n, CONSTANT_DATA, f"all {n} observed values equal {y[0]:.6g}: nothing to fit")
    return None


def fit_least_squares_grid(
    law: Law, x: np.ndarray, y: np.ndarray, starts: tuple[tuple[float, ...], ...] | None = None
) -> Fit:
    """Gadre et al.'s protocol: unbounded Levenberg-Marquardt (curve_fit, maxfev 10000) from every
    starting point (default: the law's init_grid); keep the smallest sqrt(SSR / (n - 2)).

    Starts that do not converge or end on non-finite values are skipped (the released code would stop).
    """
    x, y = law.as_inputs(x), np.asarray(y, dtype=float).ravel()
    if x.shape[1] != y.size:
        raise ValueError(f"x has {x.shape[1]} points, y has {y.size}")
    if (failure := check_points(law, x, y)) is not None:
        return failure
    best, best_residual = None, np.inf
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", OptimizeWarning)
        for p0 in starts if starts is not None else law.init_grid:
            try:
                popt, _ = curve_fit(law.function, x, y, p0=p0, maxfev=10000)
            except (RuntimeError, ValueError):  # maxfev reached, or NaN reached the optimiser
                continue
            residual = np.sqrt(np.sum((y - law.function(x, *popt)) ** 2) / (y.size - 2))
            if np.isfinite(popt).all() and residual < best_residual:
                best, best_residual = popt, residual
    if best is None:
        return failed(law, y.size, NO_CONVERGENCE, "curve_fit converged from none of the starting points")
    return Fit(law, dict(zip(law.params, map(float, best), strict=True)), y.size, float(best_residual))


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

    def _interval(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.n_ok < 2:
            nan = np.full(values.shape[1], np.nan)
            return nan, nan
        tail = (1 - self.level) / 2
        low, high = np.quantile(values, (tail, 1 - tail), axis=0)
        return low, high

    def param_intervals(self) -> dict[str, tuple[float, float]]:
        low, high = self._interval(self.params)
        return {name: (float(lo), float(hi)) for name, lo, hi in zip(self.law.params, low, high, strict=True)}

    def prediction_interval(self) -> tuple[np.ndarray, np.ndarray]:
        return self._interval(self.predictions)

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
    """Percentile intervals from refitting on points resampled with replacement.

    Each refit starts from the full-data optimum only: one local fit per replicate instead of a grid
    keeps B = 1000 cheap, and the replicates stay near the solution being assessed. Resamples that
    cannot be fitted (e.g. too few distinct points) are dropped; `n_ok` says how many remained.
    """
    if not fit.ok:
        raise AnalysisError(f"cannot bootstrap the failed {fit.law.name} fit: {fit.reason}")
    law = fit.law
    x, y, x_pred = law.as_inputs(x), np.asarray(y, dtype=float), law.as_inputs(x_pred)
    start = (tuple(fit.params.values()),)
    indices = np.random.default_rng(seed).integers(0, y.size, size=(n_resamples, y.size))
    refits = [fit_least_squares_grid(law, x[:, i], y[i], starts=start) for i in indices]
    params = np.array([list(r.params.values()) for r in refits if r.ok]).reshape(-1, len(law.params))
    predictions = np.empty((0, x_pred.shape[1]))
    if len(params):
        with np.errstate(all="ignore"):  # all replicates at once: parameters broadcast as (B, 1) columns
            predictions = law.function(x_pred, *params.T[:, :, None])
    return Bootstrap(law, params, predictions, n_resamples, level)
