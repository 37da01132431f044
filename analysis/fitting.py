"""Fitting a law to points: a result type that carries failure reasons, and the fitters.

A fit that cannot be made returns a `Fit` whose status names the reason; fitters never raise on
bad data and never return a number they could not justify. The fitting methods are the entries of
FITTERS (one `register` call adds one); `fit_law` fits with a method named there.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit, differential_evolution, minimize
from scipy.special import huber

from analysis.errors import AnalysisError
from analysis.laws import Law
from analysis.registry import Registry
from analysis.threads import capped

OK = "ok"
TOO_FEW_POINTS = "too_few_points"
NON_FINITE = "non_finite"
CONSTANT_DATA = "constant_data"
NO_CONVERGENCE = "no_convergence"
NON_POSITIVE = "non_positive"
UNPHYSICAL = "unphysical"  # fitted, but the parameters break the law's physical constraints (Law.violations)
UNIDENTIFIED = "unidentified"  # fitted, but the points leave a direction of the parameters undetermined

LEAST_SQUARES_GRID = "least_squares_grid"  # Gadre et al.: Levenberg-Marquardt from a grid
HUBER_LOG = "huber_log"  # Chinchilla / Besiroglu / Isik: Huber on log residuals, L-BFGS from a grid
DIFFERENTIAL_EVOLUTION = "differential_evolution"  # Lourie et al.: MSE, global search in a box


@dataclass(frozen=True)
class Fit:
    law: Law
    params: dict[str, float]  # empty unless fitted (status "ok", "unphysical" or "unidentified")
    n_points: int
    residual: float = float("nan")  # sqrt(SSR / (n - 2)), the released code's selection criterion
    status: str = OK
    reason: str = ""
    method: str = LEAST_SQUARES_GRID

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def fitted(self) -> bool:
        """Parameters were found: ok, unphysical (they predict, but break the law's constraints) or
        unidentified (one of many parameter sets that fit the points equally well)."""
        return self.status in (OK, UNPHYSICAL, UNIDENTIFIED) and bool(self.params)

    def predict(self, x: np.ndarray) -> np.ndarray:
        if not self.fitted:
            raise AnalysisError(f"cannot predict with the failed {self.law.name} fit: {self.reason}")
        return self.law(x, self.params)

    def summary(self, label: str = "") -> str:
        """The fit as text: "<label>: <law> fit on <n> runs, residual <r>", then the formula with the
        fitted values (and the derived parametrisation), indented; or the failure and its reason."""
        prefix = f"{label}: " if label else ""
        if not self.fitted:
            return f"{prefix}{self.law.name} fit failed ({self.status}): {self.reason}"
        head = (
            f"{prefix}{self.law.name} fit on {self.n_points} runs, residual {self.residual:.4g}, status {self.status}"
        )
        if not self.ok:
            head += f": {self.reason}"
        return "\n".join([head, *(f"  {line}" for line in self.law.describe(self.params).splitlines())])

    def to_dict(self) -> dict:
        out = {
            "law": self.law.name,
            "method": self.method,
            "status": self.status,
            "reason": self.reason,
            "n_points": self.n_points,
        }
        if self.fitted:
            out |= {"params": self.params, "residual": self.residual, "formula": self.law.formula}
            if self.law.derived is not None:
                out |= {"derived": self.law.derived(self.params), "derived_formula": self.law.derived_formula}
        return out


def failed(law: Law, n_points: int, status: str, reason: str, method: str = LEAST_SQUARES_GRID) -> Fit:
    return Fit(law, {}, n_points, status=status, reason=reason, method=method)


def _residual(law: Law, x: np.ndarray, y: np.ndarray, params: np.ndarray) -> float:
    return float(np.sqrt(np.sum((y - law.function(x, *params)) ** 2) / (y.size - 2)))


def _prepare(law: Law, x, y, method: str) -> tuple[np.ndarray, np.ndarray, Fit | None]:
    x, y = law.as_inputs(x), np.asarray(y, dtype=float).ravel()
    if x.shape[1] != y.size:
        raise ValueError(f"x has {x.shape[1]} points, y has {y.size}")
    failure = check_points(law, x, y)
    if failure is not None:
        failure = replace(failure, method=method)
    return x, y, failure


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
        return failed(law, n, TOO_FEW_POINTS, f"{n} points, at least 3 needed (the residual divides by n - 2)")
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


@capped
def fit_least_squares_grid(
    law: Law, x: np.ndarray, y: np.ndarray, starts: tuple[tuple[float, ...], ...] | None = None
) -> Fit:
    """Gadre et al.'s protocol: unbounded Levenberg-Marquardt (curve_fit, maxfev 10000) from every
    starting point (default: the law's init_grid); keep the smallest sqrt(SSR / (n - 2)).

    Starts that do not converge or end on non-finite values are skipped (the released code would stop).
    """
    x, y, failure = _prepare(law, x, y, LEAST_SQUARES_GRID)
    if failure is not None:
        return failure
    best, best_residual = None, np.inf
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", OptimizeWarning)
        for p0 in starts if starts is not None else law.init_grid:
            try:
                popt, _ = curve_fit(law.function, x, y, p0=p0, maxfev=10000)
            except (RuntimeError, ValueError):  # maxfev reached, or NaN reached the optimiser
                continue
            residual = _residual(law, x, y, popt)
            if np.isfinite(popt).all() and residual < best_residual:
                best, best_residual = popt, residual
    if best is None:
        return failed(law, y.size, NO_CONVERGENCE, "curve_fit converged from none of the starting points")
    return Fit(law, dict(zip(law.params, map(float, best), strict=True)), y.size, float(best_residual))


class _SearchSpace:
    """Parameters as the L-BFGS and differential-evolution fitters see them: log_scale ones as logs."""

    def __init__(self, law: Law):
        self.law = law
        self.log = np.array([p in law.log_scale for p in law.params])
        self.bounds = [tuple(np.log(b)) if log else b for b, log in zip(law.bounds, self.log, strict=True)]

    def to_params(self, z: np.ndarray) -> np.ndarray:
        """Search coordinates (len(params), ...) -> parameter values."""
        z = np.asarray(z, dtype=float)
        return np.where(self.log.reshape(-1, *[1] * (z.ndim - 1)), np.exp(z), z)

    def from_params(self, params) -> np.ndarray:
        params = np.asarray(params, dtype=float)
        with np.errstate(divide="ignore"):
            z = np.where(self.log, np.log(np.maximum(params, 1e-300)), params)
        low, high = np.array(self.bounds).T
        return np.clip(z, low, high)

    def predict(self, x: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Predictions for one point z (len(params),) -> (n,), or many z (len(params), S) -> (S, n)."""
        params = self.to_params(z)
        if params.ndim == 2:
            params = params[:, :, None]
        with np.errstate(all="ignore"):
            return self.law.function(x, *params)


@capped
def fit_huber_log(
    law: Law,
    x: np.ndarray,
    y: np.ndarray,
    delta: float = 1e-3,
    starts: tuple[tuple[float, ...], ...] | None = None,
    max_starts: int | None = 16,
) -> Fit:
    """Minimise the SUM over points of Huber(log predicted - log observed) with L-BFGS-B.

    Chinchilla's protocol as Besiroglu et al. replicated it (summing, not averaging, matters: the
    optimiser's stopping tolerance is absolute). Every starting point (default: the law's init_grid,
    clipped into its bounds) is scored in one vectorised pass and L-BFGS-B runs from the
    `max_starts` best (None: from all, as Besiroglu et al.; slow for Chinchilla's 5400 starts);
    the lowest objective wins. log_scale parameters are searched as logs within the law's bounds.
    Needs positive observations (status non_positive otherwise).
    """
    x, y, failure = _prepare(law, x, y, HUBER_LOG)
    if failure is not None:
        return failure
    if np.any(y <= 0):
        return failed(law, y.size, NON_POSITIVE, f"{np.sum(y <= 0)} of {y.size} observed values <= 0: "
                      "log residuals need positive values", HUBER_LOG)  # fmt: skip
    space, log_y = _SearchSpace(law), np.log(y)
    floor = 1e-6 * y.min()  # predictions below it (or NaN) count as it: finite, flat, no gradient

    def residuals(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        predicted = space.predict(x, z)
        clamped = ~(predicted > floor)
        predicted = np.where(clamped, floor, predicted)
        return np.log(predicted) - log_y, clamped

    def value_and_gradient(z: np.ndarray) -> tuple[float, np.ndarray]:
        # What L-BFGS-B sees: the sum divided by delta (same minimiser), so that its default
        # tolerances mean the same for every delta. The gradient is exact in the Huber part and
        # central differences of the law (one vectorised call).
        h = 1e-6 * np.maximum(1.0, np.abs(z))
        shifts = np.hstack([np.zeros((z.size, 1)), np.diag(h), -np.diag(h)])
        residual, clamped = residuals(z[:, None] + shifts)
        slope = (residual[1 : z.size + 1] - residual[z.size + 1 :]) / (2 * h[:, None])
        slope[:, clamped[0]] = 0.0
        gradient = slope @ np.clip(residual[0], -delta, delta)
        return float(huber(delta, residual[0]).sum()) / delta, gradient / delta

    grid = np.array([space.from_params(p) for p in (starts if starts is not None else law.init_grid)])
    scores = huber(delta, residuals(grid.T)[0]).sum(axis=-1)
    best, best_value = None, np.inf
    for z0 in grid[np.argsort(scores, kind="stable")[: max_starts or None]]:
        with np.errstate(all="ignore"):
            result = minimize(value_and_gradient, z0, jac=True, method="L-BFGS-B", bounds=space.bounds)
        if np.isfinite(result.fun) and result.fun < best_value:
            best, best_value = result.x, result.fun
    if best is None:
        return failed(law, y.size, NO_CONVERGENCE, "L-BFGS-B ended on no finite objective", HUBER_LOG)
    params = space.to_params(best)
    return Fit(law, dict(zip(law.params, map(float, params), strict=True)), y.size,
               _residual(law, x, y, params), method=HUBER_LOG)  # fmt: skip


@capped
def fit_differential_evolution(
    law: Law, x: np.ndarray, y: np.ndarray, seed: int = 0, maxiter: int = 1000, tol: float = 1e-6
) -> Fit:
    """Lourie et al.'s fit: least squares (MSE) by differential evolution inside the law's bounds
    (log_scale parameters searched as logs, e.g. ln k in [0, 20]), polished by L-BFGS-B.

    Deterministic for a given seed. Converged when the spread of the population's MSEs is below
    tol x their mean plus 1e-9 x var(y) (an R^2 difference of 1e-9, which lets exact data converge);
    status no_convergence when that does not happen within `maxiter` generations.
    """
    x, y, failure = _prepare(law, x, y, DIFFERENTIAL_EVOLUTION)
    if failure is not None:
        return failure
    space = _SearchSpace(law)

    def objective(z: np.ndarray) -> np.ndarray:
        mse = np.mean((space.predict(x, z) - y) ** 2, axis=-1)
        return np.where(np.isfinite(mse), mse, np.inf)

    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = differential_evolution(
            objective, space.bounds, seed=seed, maxiter=maxiter, tol=tol, atol=1e-9 * np.var(y),
            vectorized=True, updating="deferred", polish=True,
        )  # fmt: skip
    if not result.success or not np.isfinite(result.fun):
        return failed(law, y.size, NO_CONVERGENCE, f"differential evolution: {result.message}",
                      DIFFERENTIAL_EVOLUTION)  # fmt: skip
    params = space.to_params(result.x)
    return Fit(law, dict(zip(law.params, map(float, params), strict=True)), y.size,
               _residual(law, x, y, params), method=DIFFERENTIAL_EVOLUTION)  # fmt: skip


@dataclass(frozen=True)
class Fitter:
    """A fitting method as FITTERS holds it: how it fits a law from scratch, and how the bootstrap
    refits a resample locally from the full-data optimum."""

    fit: Callable[..., Fit]  # (law, x, y, **options) -> Fit
    refit: Callable[[Law, np.ndarray, np.ndarray, tuple[float, ...]], Fit]  # (law, x, y, start) -> Fit
    # minimises the sum of squared residuals, so the bootstrap may refit a separable law exactly
    least_squares: bool = True

    def __call__(self, law: Law, x, y, **options) -> Fit:
        return self.fit(law, x, y, **options)


def _refit_least_squares(law: Law, x: np.ndarray, y: np.ndarray, start: tuple[float, ...]) -> Fit:
    return fit_least_squares_grid(law, x, y, starts=(start,))


def _refit_huber_log(law: Law, x: np.ndarray, y: np.ndarray, start: tuple[float, ...]) -> Fit:
    return fit_huber_log(law, x, y, starts=(start,), max_starts=1)


FITTERS: Registry[Fitter] = Registry("fitting method", AnalysisError)
FITTERS.register(LEAST_SQUARES_GRID, Fitter(fit_least_squares_grid, _refit_least_squares))
FITTERS.register(HUBER_LOG, Fitter(fit_huber_log, _refit_huber_log, least_squares=False))
FITTERS.register(DIFFERENTIAL_EVOLUTION, Fitter(fit_differential_evolution, _refit_least_squares))


def fit_law(law: Law, x, y, method: str = LEAST_SQUARES_GRID, **options) -> Fit:
    """Fit `law` to the points (x, y) with the fitting method registered as `method` in FITTERS."""
    return FITTERS.get(method).fit(law, x, y, **options)
