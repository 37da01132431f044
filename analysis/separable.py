"""Batched weighted least squares for laws that are linear in all but one parameter.

Most laws here are linear in their scale and offset parameters once the exponent is fixed:
Err(L) = epsilon - k exp(-gamma L) is linear in (epsilon, k) for a given gamma, the over-training law
is linear in (alpha, beta, E) for a given e. For such a law the best fit at a fixed value theta of
the nonlinear parameter is a small linear solve, and the best theta is a one-dimensional search
(variable projection). Done for a grid of theta and for many weight vectors at once it turns a
thousand bootstrap refits into a few matrix products: a bootstrap resample is a weight vector
(how often each point was drawn).

`basis(theta)` returns the design matrix for every theta: shape (len(theta), n, p).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Basis = Callable[[np.ndarray], np.ndarray]


def solve(basis: np.ndarray, y: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted least squares for every (weight row, design).

    basis (G, n, p) shared by all weight rows, or (B, G, n, p) one per row; y (n,); weights (B, n).
    Returns coefficients (B, G, p) and weighted sums of squared residuals (B, G).
    """
    weights = np.asarray(weights, dtype=float)
    scale = np.sqrt(np.mean(basis**2, axis=-2, keepdims=True))  # column scaling for conditioning
    scale = np.where(scale > 0, scale, 1.0)
    design = basis / scale
    if design.ndim == 3:  # shared designs: one matrix product over the points per entry
        p = design.shape[-1]
        gram = np.empty((len(weights), design.shape[0], p, p))
        for j in range(p):
            for k in range(j, p):
                gram[:, :, j, k] = gram[:, :, k, j] = weights @ (design[:, :, j] * design[:, :, k]).T
        moment = np.stack([(weights * y) @ design[:, :, j].T for j in range(p)], axis=-1)
    else:
        gram = np.einsum("bn,bgnj,bgnk->bgjk", weights, design, design, optimize=True)
        moment = np.einsum("bn,bgnj->bgj", weights * y, design, optimize=True)
    # a ridge far below double precision of any usable system keeps singular ones (collinear
    # columns in a resample) from stopping the batch; `condition` tells which to distrust
    ridge = 1e-13 * np.trace(gram, axis1=-2, axis2=-1)[..., None, None] * np.eye(gram.shape[-1])
    with np.errstate(all="ignore"):
        coef = np.linalg.solve(gram + ridge + np.finfo(float).tiny, moment[..., None])[..., 0]
        sse = (weights * y**2).sum(axis=1)[:, None] - np.einsum("bgj,bgj->bg", coef, moment)
    coef = coef / scale[..., 0, :]
    return coef, np.maximum(sse, 0.0)


def profile(
    basis: Basis, thetas: np.ndarray, y: np.ndarray, weights: np.ndarray, refine: int = 2
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best theta, coefficients and SSE per weight row: grid search then parabolic refinement.

    Each refinement round fits a parabola through SSE at theta - h, theta, theta + h (h shrinking
    by 4 each round, starting at the grid step) and moves to its vertex when that lowers the SSE;
    theta stays inside the grid's range. Returns theta (B,), coef (B, p), sse (B,).
    """
    thetas = np.asarray(thetas, dtype=float)
    coef, sse = solve(basis(thetas), y, weights)
    rows = np.arange(len(weights))
    best = np.nanargmin(np.where(np.isfinite(sse), sse, np.inf), axis=1)
    theta, coef, sse = thetas[best], coef[rows, best], sse[rows, best]
    step = (thetas[-1] - thetas[0]) / max(len(thetas) - 1, 1)
    low, high = thetas[0], thetas[-1]
    for _ in range(refine):
        trial = np.clip(theta[:, None] + np.array([-step, 0.0, step]), low, high)  # (B, 3)
        c3, s3 = solve(_per_row(basis, trial), y, weights)
        h = trial[:, 2] - trial[:, 0]
        curvature = s3[:, 0] - 2 * s3[:, 1] + s3[:, 2]
        with np.errstate(all="ignore"):
            vertex = trial[:, 1] + 0.25 * h * (s3[:, 0] - s3[:, 2]) / curvature
        vertex = np.where((curvature > 0) & np.isfinite(vertex), np.clip(vertex, low, high), theta)
        cv, sv = solve(_per_row(basis, vertex[:, None]), y, weights)
        better = sv[:, 0] < sse
        theta = np.where(better, vertex, theta)
        coef = np.where(better[:, None], cv[:, 0], coef)
        sse = np.where(better, sv[:, 0], sse)
        step /= 4
    return theta, coef, sse


def condition(design: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Condition number of each row's column-scaled weighted normal equations: design (B, n, p).

    Large values (say above 1e10) mean the resample cannot identify the linear parameters, e.g. a
    resample of over-training runs that lost every run with M != 20.
    """
    scale = np.sqrt(np.einsum("bn,bnj->bj", weights, design**2))[:, None, :]
    design = design / np.where(scale > 0, scale, 1.0)
    gram = np.einsum("bn,bnj,bnk->bjk", weights, design, design)
    with np.errstate(all="ignore"):
        return np.linalg.cond(gram)


def _per_row(basis: Basis, thetas: np.ndarray) -> np.ndarray:
    """Designs for per-row thetas (B, k) -> (B, k, n, p)."""
    b, k = thetas.shape
    designs = basis(thetas.ravel())
    return designs.reshape(b, k, *designs.shape[1:])


def counts(draws: np.ndarray, n: int) -> np.ndarray:
    """Index draws (B, m) -> how often each of n points was drawn, (B, n)."""
    rows = np.repeat(np.arange(len(draws)), draws.shape[1])
    out = np.zeros((len(draws), n))
    np.add.at(out, (rows, draws.ravel()), 1.0)
    return out
