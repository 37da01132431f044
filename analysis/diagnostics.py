"""Where a held-out miss comes from: how far a run lies beyond the fit set, and what the fits assume.

`compute_ratio` says how far each run extrapolates in compute; `fit_warnings` checks what the loss law
assumes on the fit runs (one exponent for N and D, physical parameters) and the held-out losses it
must respect (nothing below the irreducible loss E). The error law applied to the observed loss
(extrapolate.chain_error) separates a miss of the loss prediction from a miss of the error law.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from analysis.fitting import LEAST_SQUARES_GRID, OK, UNIDENTIFIED, UNPHYSICAL, Fit, fit_law
from analysis.laws import get_law

POWER_LAW = get_law("power_law")  # L = E + A / X^alpha
MIN_POINTS = 3  # sizes (or multipliers) a separate exponent is fitted on
EXPONENT_RATIO = 2.0  # flag when the N and D exponents differ by more than this factor
FIT, HELDOUT = "fit", "heldout"
EDGE = 1e-4  # a parameter this close to a bound (share of its box, in logs for log-scale ones) sits on it


def compute_ratio(runs: pd.DataFrame) -> pd.Series:
    """Each run's FLOPs over the largest FLOPs among the fit runs (one training dataset)."""
    largest = runs.loc[runs["role"] == FIT, "flops"].max()
    return runs["flops"] / largest


def fit_warnings(loss: Fit, runs: pd.DataFrame) -> list[str]:
    """Plain sentences about one dataset's loss fit: broken physical constraints, held-out losses below
    E, and (for a law of N and M) N and D exponents fitted separately that disagree."""
    out = constraint_warnings(loss, runs.loc[runs["role"] == FIT, "observed"].to_numpy(float))
    if loss.fitted and "E" in loss.params:
        below = runs[(runs["role"] == HELDOUT) & (runs["observed"] < loss.params["E"])]
        out += [
            f"held-out run {r.run_id} has observed loss {r.observed:.4g}, below the fitted irreducible "
            f"loss E = {loss.params['E']:.4g}: the law cannot reach it"
            for r in below.itertuples()
        ]
    if loss.law.inputs == ("N", "M"):  # the over-training law, its E free or held
        out.append(exponent_check(runs[runs["role"] == FIT]))
    return out


def constraint_warnings(loss: Fit, observed: np.ndarray | None = None) -> list[str]:
    """Fitted parameters that break their law's physical constraints (Law.violations: E < 0, e >= 0
    i.e. eta <= 0, negative scales, and with `observed` the fitted values, E not below all of them);
    the least-squares fitter is unbounded, so the fit itself does not check (`physical` does, and what it
    found, the text's entropy included, is the reason of an `unphysical` fit)."""
    if not loss.fitted:
        return []
    if loss.status == UNPHYSICAL:
        broken = loss.reason
    else:
        broken = "; ".join(loss.law.violations(loss.params, () if observed is None else observed))
    return [f"the {loss.law.name} fit breaks its physical constraints: {broken}"] if broken else []


# Below this ratio of the smallest to the largest singular value of the relative Jacobian, a direction of the
# parameters changes the fitted values by less than rounding does. Measured (session 17): 1e-18 to 1e-11 for
# the over-training law on one model size (alpha N^e and E are then one constant), 5e-6 to 1e-2 for every
# fit of the released 104-model protocol and of testbed's own replication.
IDENTIFIED_CONDITION = 1e-8


def identified(fit: Fit, x: np.ndarray) -> Fit:
    """The fit with status `unidentified` when its points (inputs x) do not determine its parameters: the
    Jacobian of the fitted values in the parameters' relative changes is singular, so a direction of the
    parameters (named in the reason) moves no fitted value, every point along it fits as well, and which
    one the fitter returns, physical or not, is up to rounding; so is any prediction away from the points."""
    if fit.status != OK:
        return fit
    law, x = fit.law, fit.law.as_inputs(x)
    values = np.array([fit.params[p] for p in law.params], dtype=float)
    scale = np.maximum(np.abs(values), 1e-12)
    columns = []
    for j, step in enumerate(1e-6 * scale):
        up, down = values.copy(), values.copy()
        up[j] += step
        down[j] -= step
        columns.append((law.function(x, *up) - law.function(x, *down)) / (2 * step) * scale[j])
    _, singular, rows = np.linalg.svd(np.array(columns).T)
    condition = singular[-1] / singular[0] if singular[0] > 0 else 0.0
    if condition >= IDENTIFIED_CONDITION:
        return fit
    direction = rows[-1]
    names = [p for p, weight in zip(law.params, direction, strict=True) if abs(weight) > 0.3]
    names = names or [law.params[int(np.argmax(np.abs(direction)))]]
    moved = "them together" if len(names) > 1 else "it"
    return replace(fit, status=UNIDENTIFIED, reason=(
        f"the {fit.n_points} points do not determine {' and '.join(names)} (relative Jacobian condition "
        f"{condition:.1e}): moving {moved} changes no fitted value, so the values returned, physical or not, "
        "and any prediction away from the points are the fitter's choice"))  # fmt: skip


def physical(fit: Fit, observed: np.ndarray, entropy: float | None = None) -> Fit:
    """The fit with status `unphysical` and the broken constraints as its reason when its parameters
    break its law's constraints (Law.violations against the `observed` values it was fitted to, and the
    text's `entropy` where its generator gives it: select.entropy_floors)."""
    if fit.status != OK:
        return fit
    broken = fit.law.violations(fit.params, observed, entropy)
    return replace(fit, status=UNPHYSICAL, reason="; ".join(broken)) if broken else fit


def edge_warnings(fit: Fit) -> list[str]:
    """A sentence when a bounded fit ended on an edge of its law's box: the box set those parameters,
    not the data (an exponent at 0, a scale at its limit), so the law's shape is not established."""
    if not fit.ok:
        return []
    found = []
    for name, value in fit.params.items():
        low, high = fit.law.bound(name)
        if name in fit.law.log_scale:
            position = np.log(value / low) / np.log(high / low)
        else:
            position = (value - low) / (high - low)
        if position <= EDGE or position >= 1 - EDGE:
            side, bound = ("lower", low) if position <= EDGE else ("upper", high)
            found.append(f"{name} = {value:.4g} at its {side} bound {bound:g}")
    if not found:
        return []
    return [f"the {fit.law.name} fit ended on the edge of its box ({'; '.join(found)}): the box set it, not the data"]


def error_warnings(error: Fit | None, runs: pd.DataFrame) -> list[str]:
    """Plain sentences about one dataset's Err(L) fit: broken physical constraints, chained error
    predictions (column predicted_error) outside [0, 1], which are no prediction at all, and chained
    intervals clipped to [0, 1] (column error_ci_clipped; uninformative when they span it)."""
    out = constraint_warnings(error) if error is not None else []
    if "error_ci_clipped" in runs:
        for r in runs[runs["error_ci_clipped"].fillna(False).astype(bool)].itertuples():
            what = "uninformative: it spans all of [0, 1]" if r.error_ci_uninformative else "clipped to [0, 1]"
            out.append(f"the chained error interval for {r.run_id} reached outside [0, 1]; {what}")
    if "predicted_error" in runs:
        outside = runs[(runs["predicted_error"] < 0) | (runs["predicted_error"] > 1)]
        out += [f"the chained error prediction for {r.run_id} is {r.predicted_error:.4g}, outside [0, 1]"
                for r in outside.itertuples()]  # fmt: skip
    return out


def exponent_check(fit_runs: pd.DataFrame) -> str:
    """Fit L = E + A / X^alpha in N (runs at one multiplier, >= 3 sizes) and in D (one size, >= 3
    multipliers), and say whether the two exponents agree within EXPONENT_RATIO, as the over-training
    law assumes, or why they could not be checked.

    At fixed M, D grows with N, so the fit in N sees the slower of the two terms: a D exponent smaller
    than N's shows in both fits alike and is not caught; an N exponent smaller than D's is."""
    in_n = _exponent(fit_runs, by="multiplier", over="params", what="sizes")
    in_d = _exponent(fit_runs, by="params", over="tokens", what="multipliers")
    if isinstance(in_n, str) or isinstance(in_d, str):
        why = "; ".join(s for s in (in_n, in_d) if isinstance(s, str))
        return f"N and D exponents could not be checked separately ({why}); the law assumes them equal"
    (alpha_n, where_n), (alpha_d, where_d) = in_n, in_d
    ratio = max(alpha_n, alpha_d) / min(alpha_n, alpha_d)
    if ratio <= EXPONENT_RATIO:
        return ""
    return (
        f"N and D exponents fitted separately differ by {ratio:.3g}x: {alpha_n:.3g} in N ({where_n}) vs "
        f"{alpha_d:.3g} in D ({where_d}); the over-training law assumes them equal"
    )


def _exponent(runs: pd.DataFrame, by: str, over: str, what: str) -> tuple[float, str] | str:
    """alpha of a power law in `over` at the value of `by` with the most distinct `over` values
    (ties: the largest), or the reason it could not be fitted."""
    counts = runs.groupby(by)[over].nunique()
    if counts.empty or counts.max() < MIN_POINTS:
        most = int(counts.max()) if not counts.empty else 0
        return f"no {by} group has {MIN_POINTS} {what} among the fit runs (at most {most})"
    value = max(counts[counts == counts.max()].index)
    group = runs[runs[by] == value]
    fit = fit_law(POWER_LAW, group[over].to_numpy(float), group["observed"].to_numpy(float), LEAST_SQUARES_GRID)
    where = f"{len(group)} runs at {by} {value:.4g}"
    if not fit.ok:
        return f"the fit in {over} on {where} failed: {fit.reason}"
    alpha = fit.params["alpha"]
    if not np.isfinite(alpha) or alpha <= 0:
        return f"the fit in {over} on {where} gave exponent {alpha:.3g}"
    return alpha, where
