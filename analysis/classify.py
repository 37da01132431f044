"""Every task's scaling curve (accuracy against a validation loss) put in one of Lourie et al.'s six
classes, by explicit statistics instead of by eye. docs/analysis.md states and justifies the rules.

For one task: x = each run's validation loss, y = its accuracy. Statistics, computed on the data and
on each of B bootstrap resamples of the runs (one weight vector per resample):
- rho: Spearman correlation between -x and y (positive: accuracy rises as the loss falls);
- the transformed-linear family y = a + b f_gamma(x), f_gamma = exp(-gamma x) rescaled to [0, 1]
  (equivalently Err(L) = epsilon - k exp(-gamma L) with either sign of gamma and k): best gamma on a
  grid, its R^2 and its change across the observed loss range, `change` = fit(min x) - fit(max x);
- a sigmoid y = a + b / (1 + exp(4.394 (x - x0) / width)) (`width`: the 10-90 % transition), best
  (width, x0) on a grid, and delta_bic = n ln(SSE_exp / SSE_sigmoid) - ln n (> 0 favours it);
- bin means: the runs cut into n_bins equal-count bins of x; `rise` / `fall` = the largest increase /
  decrease of a later (lower-loss) bin mean over an earlier one, `tau` = the size a difference of
  two bin means must reach to count (criteria.reversal_z standard errors, with at least the noise of
  one run's score as the SD);
- detectability against the noise of one run's score (Noise): `trend_z`, the common within-corpus
  linear slope over its standard error (under the larger of that noise and the law's residual SD),
  and `excess` / `scatter_p`, the residual variance of the transformed-linear law over the noise
  variance and the chi-square test of it.
The verdict is a fixed sequence of threshold rules on these statistics (`decide`); the confidence is
the share of bootstrap resamples on which the same rules give the same class.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import chi2, norm

from analysis.errors import AnalysisError
from analysis.seeds import seed_spread
from analysis.select import final_losses
from analysis.separable import counts
from analysis.verdicts import CLASSES, UNCLASSIFIED, Classification, Verdict, noise_text

MIN_RUNS = 10
SEED = "seed"  # Noise.source of a measured seed-to-seed SD
SIGMOID_WIDTH = 2 * np.log(9)  # 10-90 % of a logistic step spans this many units of 1/slope


@dataclass(frozen=True)
class Noise:
    """The SD of one run's score on a task, and where it comes from: `seed` (the seed-to-seed SD
    measured on repeated runs, analysis.seeds), `binomial` (the rms standard error of the task rows,
    sqrt(p (1 - p) / items)) or `none` (sd NaN). Where both are known the larger is judged against and
    the other is kept beside it (`seed_sd`, `binomial_se`).

    It is judged against (docs/analysis.md, "Classifying task curves"): a trend must stand out of
    this noise to count (trend_z), and a curve "varies greatly" around its trend only when its residual
    scatter exceeds it (scatter_chi2). The seed SD is the direct measure of how far a fresh run of a
    configuration lands; the binomial error of the items is the floor under it along a curve: seeds of
    one configuration may answer the items alike (a seed SD below the binomial error), but models of
    different sizes answer them differently, and their scatter about the curve carries the items'
    sampling error (two models with independent errors differ by about sqrt(2 p (1 - p) / n))."""

    source: str = "none"
    sd: float = float("nan")
    seed_sd: float = float("nan")
    binomial_se: float = float("nan")

    @property
    def judged(self) -> float:
        """The SD the trend and scatter tests judge against (NaN: unknown, the data's own scatter alone)."""
        return self.sd if self.source != "none" and np.isfinite(self.sd) and self.sd > 0 else float("nan")

    def to_dict(self) -> dict:
        both = {"seed_sd": self.seed_sd, "binomial_se": self.binomial_se}  # kept where both are known
        extra = {k: _finite(v) for k, v in both.items()} if all(np.isfinite(v) for v in both.values()) else {}
        return {"source": self.source, "sd": _finite(self.sd)} | extra

    def label(self) -> str:
        return noise_text(self.to_dict())

    @classmethod
    def larger(cls, seed_sd: float, binomial_se: float) -> Noise:
        """The larger of a measured seed SD and the items' binomial error (either may be NaN)."""
        known = {SEED: seed_sd, "binomial": binomial_se}
        known = {source: sd for source, sd in known.items() if np.isfinite(sd) and sd > 0}
        if not known:
            return cls()
        source = max(known, key=known.__getitem__)
        return cls(source, float(known[source]), float(seed_sd), float(binomial_se))


@dataclass(frozen=True)
class Criteria:
    """The thresholds of the rules (docs/analysis.md, "Classifying task curves", says why)."""

    alpha: float = 0.01  # trendless: two-sided level of the trend test (|trend_z| < z_(1 - alpha/2))
    reversal_z: float = 3.0  # rise and fall must both exceed this many SEs of a bin-mean difference
    n_bins: int = 8
    min_r2: float = 0.8  # breakthrough: the sigmoid's R^2; noisy when the noise is unknown: the law's R^2
    min_delta_bic: float = 10.0  # breakthrough: "very strong" evidence for the sigmoid (Kass-Raftery)
    max_width: float = 0.5  # breakthrough: transition at most this share of the loss range
    min_plateau: float = 0.1  # breakthrough: at least this share of runs on each plateau
    max_excess: float = 4.0  # noisy: residual variance at least this many times the noise variance (SD 2x) ...
    scatter_alpha: float = 0.01  # ... and beyond the noise at this level (chi-square test of the residuals) ...
    noisy_r2: float = 0.8  # ... and large beside the trend: the law explains less than this share (1: no such cap)


# rates c = gamma x (loss range): both signs (accelerating and saturating curves), |c| from nearly
# linear (0.05) to a hockey stick (60, about gamma = 20 on the released data's range, Lourie's bound)
RATES = np.concatenate([-np.geomspace(60, 0.05, 30), np.geomspace(0.05, 60, 30)])
WIDTHS = np.geomspace(0.04, 1.0, 8)  # share of the loss range
CENTRES = np.linspace(0.05, 0.95, 15)  # quantiles of the losses


def _exp_features(x: np.ndarray, rates: np.ndarray, low: float, high: float) -> np.ndarray:
    """exp(-gamma x) rescaled to f(low) = 1, f(high) = 0, for every rate c = gamma (high - low): (G, n).

    Written per sign so that no exponential overflows whatever the rate.
    """
    u = (x - low) / (high - low)
    c = rates[:, None]
    with np.errstate(all="ignore"):
        falling = (np.exp(-c * u) - np.exp(-c)) / -np.expm1(-c)  # c > 0
        rising = np.expm1(c * (1 - u)) / np.expm1(c)  # c < 0: the same, divided through by exp(-c)
    return np.where(c > 0, falling, rising)


def _sigmoid_features(x: np.ndarray, widths: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(SIGMOID_WIDTH (x - centre) / width)) for every (width, centre): (G, n)."""
    z = SIGMOID_WIDTH * (x - centres[:, None]) / widths[:, None]
    return 0.5 * (1 - np.tanh(np.clip(z, -700, 700) / 2))


def _grouped_fits(
    features: np.ndarray, y: np.ndarray, weights: np.ndarray, members: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Weighted least squares of y = a_c + b_c f per group c, for every weight row and feature,
    keeping per row the feature with the smallest total SSE.

    features (G, n), weights (B, n), members: the runs of each group. Returns the best feature's
    index (B,), its SSE (B,) and its slope and intercept per group, (B, C). A group whose f does not
    vary gets slope 0.
    """
    sse, sums = np.zeros((len(weights), len(features))), []
    for runs in members:
        w, f, yc = weights[:, runs], features[:, runs], y[runs]
        inverse_total = 1 / np.maximum(w.sum(axis=1), 1e-300)[:, None]
        mean_y = (w @ yc)[:, None] * inverse_total
        sf = w @ f.T
        var_f = np.maximum(w @ (f * f).T - sf * sf * inverse_total, 1e-12)
        cov = (w * yc) @ f.T - sf * mean_y
        var_y = (w @ (yc * yc))[:, None] - (w @ yc)[:, None] * mean_y
        sse = sse + (var_y - cov * cov / var_f)
        sums.append((inverse_total, mean_y, sf, var_f, cov))
    index = np.argmin(sse, axis=1)
    rows = np.arange(len(index))
    slopes, intercepts = [], []
    for inverse_total, mean_y, sf, var_f, cov in sums:
        usable = var_f[rows, index] > 1e-10
        slope = np.where(usable, cov[rows, index] / var_f[rows, index], 0.0)
        slopes.append(slope)
        intercepts.append(mean_y[:, 0] - slope * sf[rows, index] * inverse_total[:, 0])
    best = {"slope": np.stack(slopes, -1), "intercept": np.stack(intercepts, -1)}
    return index, np.maximum(sse[rows, index], 0.0), best


def _weighted_ranks(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Average ranks of `values` in every resample given as draw counts (B, n): a point drawn w
    times occupies w tied places, equal values share theirs. (B, n), ranks of undrawn points unused."""
    unique, inverse = np.unique(values, return_inverse=True)
    one_hot = np.zeros((len(values), len(unique)))
    one_hot[np.arange(len(values)), inverse] = 1.0
    per_value = weights @ one_hot
    rank = np.cumsum(per_value, axis=1) - (per_value - 1) / 2
    return rank[:, inverse]


def _spearman(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Spearman's rho between -x and y in every resample (draw counts, (B, n))."""
    rx, ry = _weighted_ranks(-x, weights), _weighted_ranks(y, weights)
    total = weights.sum(axis=1, keepdims=True)
    rx = rx - (weights * rx).sum(axis=1, keepdims=True) / total
    ry = ry - (weights * ry).sum(axis=1, keepdims=True) / total
    with np.errstate(all="ignore"):
        return (weights * rx * ry).sum(axis=1) / np.sqrt((weights * rx**2).sum(axis=1) * (weights * ry**2).sum(axis=1))


def _stratified_weights(groups: np.ndarray, n_bootstrap: int, seed: int) -> np.ndarray:
    """Row 0: every run once; rows 1..B: draw counts of runs resampled within each group, (B + 1, n)."""
    rng = np.random.default_rng(seed)
    weights = np.ones((n_bootstrap + 1, len(groups)))
    for group in np.unique(groups):
        members = np.flatnonzero(groups == group)
        picks = members[rng.integers(0, len(members), size=(n_bootstrap, len(members)))]
        weights[1:, members] = counts(picks, len(groups))[:, members]
    return weights


def statistics(
    x: np.ndarray, y: np.ndarray, groups: np.ndarray, weights: np.ndarray, criteria: Criteria, noise: float = np.nan
) -> dict[str, np.ndarray]:
    """The statistics of the module docstring for every row of `weights` (draw counts, (B, n)).

    noise: the SD of one run's score (Noise.judged; NaN: unknown), which the trend and scatter tests
    judge against.

    groups: the training corpus of each run (integer codes); every law gets its own intercept and
    slope per corpus, with a shared shape (gamma, or the sigmoid's width and centre).
    """
    n = len(x)
    members = [np.flatnonzero(groups == g) for g in np.unique(groups)]
    low, high = float(x.min()), float(x.max())
    size = np.array([len(m) for m in members])
    rho = np.stack([_spearman(x[m], y[m], weights[:, m]) for m in members], axis=1)
    usable = size > 2
    out = {"rho": np.nansum(rho[:, usable] * (size[usable] - 1), axis=1) / np.sum(size[usable] - 1)}

    share = np.stack([weights[:, m].sum(axis=1) for m in members], axis=1) / weights.sum(axis=1)[:, None]
    # the linear law (the rate -> 0 limit): the fitted accuracy change across the loss range
    _, _, linear = _grouped_fits((1 - (x - low) / (high - low))[None], y, weights, members)
    out["change"] = (linear["slope"] * share).sum(axis=1)
    _, total_ss, _ = _grouped_fits(np.zeros((1, n)), y, weights, members)  # about the corpus means
    out |= _trend_test(1 - (x - low) / (high - low), y, weights, members)

    exp_index, exp_sse, exp = _grouped_fits(_exp_features(x, RATES, low, high), y, weights, members)
    out |= {"gamma": RATES[exp_index] / (high - low), "exp_slope": exp["slope"], "exp_intercept": exp["intercept"]}
    with np.errstate(all="ignore"):
        out["r2"] = 1 - exp_sse / total_ss
        out["fit_sd"] = np.sqrt(np.maximum(total_ss - exp_sse, 0.0) / weights.sum(axis=1))  # SD of the trend
    out |= _scatter_test(exp_sse, weights.sum(axis=1) - 2 * len(members) - 1, out, noise)

    widths, centres = np.meshgrid(WIDTHS * (high - low), np.quantile(x, CENTRES), indexing="ij")
    widths, centres = widths.ravel(), centres.ravel()
    sig_index, sig_sse, sig = _grouped_fits(_sigmoid_features(x, widths, centres), y, weights, members)
    width, centre = widths[sig_index], centres[sig_index]
    out |= {"sigmoid_width": width / (high - low), "sigmoid_centre": centre, "sig_slope": sig["slope"],
            "sig_intercept": sig["intercept"], "sigmoid_step": (sig["slope"] * share).sum(axis=1)}  # fmt: skip
    with np.errstate(all="ignore"):
        out["sigmoid_r2"] = 1 - sig_sse / total_ss
        out["delta_bic"] = n * np.log(exp_sse / sig_sse) - np.log(n)
    total = weights.sum(axis=1)
    out["upper_plateau"] = (weights * (x < (centre - width / 2)[:, None])).sum(axis=1) / total
    out["lower_plateau"] = (weights * (x > (centre + width / 2)[:, None])).sum(axis=1) / total

    # corpora aligned at mid-range (their linear fits' values there), then bins of equal count
    # along decreasing loss (bin 0: the worst models)
    middle = linear["intercept"] + 0.5 * linear["slope"]  # (B, C)
    offsets = middle - (middle * share).sum(axis=1, keepdims=True)
    aligned = y - offsets[:, groups]  # (B, n)
    n_bins = min(criteria.n_bins, n // 5)
    bins = np.zeros((n, n_bins))
    bins[np.argsort(-x, kind="stable"), np.arange(n) * n_bins // n] = 1.0
    in_bin = weights @ bins
    with np.errstate(all="ignore"):
        means = ((weights * aligned) @ bins) / in_bin
        within = ((weights * aligned**2) @ bins - in_bin * means**2).sum(axis=1) / (total - n_bins - len(members))
    differences = means[:, None, :] - means[:, :, None]  # [b, i, j] = mean_j - mean_i
    later = np.triu(np.ones((n_bins, n_bins), dtype=bool), 1)
    out["rise"] = np.nanmax(np.where(later, differences, -np.inf), axis=(1, 2))
    out["fall"] = np.nanmax(np.where(later, -differences, -np.inf), axis=(1, 2))
    out["noise_sd"] = np.sqrt(np.maximum(within, 0.0))
    floor = out["noise_sd"] if not np.isfinite(noise) else np.maximum(out["noise_sd"], noise)
    out["tau"] = criteria.reversal_z * floor * np.sqrt(2 * n_bins / n)
    out["bin_means"] = means
    return out


def _trend_test(f: np.ndarray, y: np.ndarray, weights: np.ndarray, members: list[np.ndarray]) -> dict[str, np.ndarray]:
    """The common within-corpus slope of y on f (f = 1 at the lowest loss, 0 at the highest: the slope
    is the accuracy change across the loss range) and sum_c S_xx, for the trend test (B,)."""
    sxx, sxy = np.zeros(len(weights)), np.zeros(len(weights))
    for runs in members:
        w, fc, yc = weights[:, runs], f[runs], y[runs]
        total = np.maximum(w.sum(axis=1), 1e-300)
        mean_f = (w @ fc) / total
        sxx += w @ (fc * fc) - total * mean_f**2
        sxy += w @ (fc * yc) - mean_f * (w @ yc)
    with np.errstate(all="ignore"):
        return {"slope": sxy / sxx, "sxx": sxx}


def _scatter_test(sse: np.ndarray, dof: np.ndarray, stats: Mapping[str, np.ndarray], noise: float) -> dict:
    """Residual SD of the transformed-linear law, the trend's z (the slope over its standard error
    under the larger of the noise and that residual SD), and the residuals' chi-square against the
    noise: excess = residual variance / noise variance, its upper-tail p-value (NaN without noise)."""
    dof = np.maximum(dof, 1.0)
    resid_sd = np.sqrt(np.maximum(sse, 0.0) / dof)
    scale = resid_sd if not np.isfinite(noise) else np.maximum(resid_sd, noise)
    with np.errstate(all="ignore"):
        trend_z = stats["slope"] * np.sqrt(stats["sxx"]) / scale
        excess = resid_sd**2 / noise**2 if np.isfinite(noise) else np.full_like(sse, np.nan)
        p_value = chi2.sf(sse / noise**2, dof) if np.isfinite(noise) else np.full_like(sse, np.nan)
    return {"resid_sd": resid_sd, "trend_z": trend_z, "excess": excess, "scatter_p": p_value}


def decide(stats: Mapping[str, np.ndarray], criteria: Criteria, noise: float = np.nan) -> np.ndarray:
    """The rule (index into RULES, RULE_CLASSES) that classifies every row of `stats`: the first
    that holds, in RULES order.

    noise: the SD of one run's score when known (Noise.judged; NaN: unknown). The trend test then
    judges the slope against it (or against the residual scatter when that is larger), and a curve is
    noisy when its residuals exceed it (excess >= max_excess, chi-square p < scatter_alpha) and are
    large beside the trend (r2 < noisy_r2: otherwise a precise task's scatter of a point about a
    30-point trend would be "noisy" only because its items are many). Without
    it the trend is judged against the residual scatter alone and a curve is noisy when the law explains
    less than min_r2 of its variation."""
    critical = norm.ppf(1 - criteria.alpha / 2)
    nonmonotonic = (stats["rise"] >= stats["tau"]) & (stats["fall"] >= stats["tau"])
    trendless = ~(np.abs(stats["trend_z"]) >= critical)
    inverse = stats["slope"] < 0
    breakthrough = (
        (stats["delta_bic"] >= criteria.min_delta_bic)
        & (stats["sigmoid_r2"] >= criteria.min_r2)
        & (stats["sigmoid_step"] > 0)
        & (stats["sigmoid_width"] <= criteria.max_width)
        & (stats["upper_plateau"] >= criteria.min_plateau)
        & (stats["lower_plateau"] >= criteria.min_plateau)
    )
    if np.isfinite(noise):
        beyond = (stats["excess"] >= criteria.max_excess) & (stats["scatter_p"] < criteria.scatter_alpha)
        noisy = beyond & ~(stats["r2"] >= criteria.noisy_r2)
    else:
        noisy = ~(stats["r2"] >= criteria.min_r2)
    conditions = [nonmonotonic, trendless, inverse, breakthrough, noisy]
    return np.select(conditions, range(len(conditions)), default=len(conditions))


RULE_CLASSES = ("nonmonotonic", "trendless", "inverse", "breakthrough", "noisy", "predictable")
RULES = (
    "rise >= tau and fall >= tau: moves in both directions beyond noise",
    "|trend_z| < z_critical: no trend stands out of the noise (flat, or too noisy to discern one)",
    "trend_z <= -z_critical: accuracy falls as the loss improves, beyond noise",
    "sigmoid preferred (delta_bic >= min_delta_bic, sigmoid_r2 >= min_r2), sharp (sigmoid_width <= "
    "max_width), both plateaus populated (>= min_plateau)",
    "excess >= max_excess, scatter_p < scatter_alpha and r2 < noisy_r2 (noise unknown: r2 < min_r2): rises with "
    "scale but varies around the trend far beyond the noise of one run's score, and much beside the trend",
    "trend_z >= z_critical and the residuals within the noise or small beside the trend (excess < max_excess, "
    "scatter_p >= scatter_alpha or r2 >= noisy_r2; noise unknown: r2 >= min_r2): rises with scale without too "
    "much variation around the trend",
)
REPORTED = ("trend_z", "slope", "excess", "scatter_p", "resid_sd", "rho", "change", "r2", "gamma", "sigmoid_r2",
            "delta_bic", "sigmoid_width", "sigmoid_centre", "upper_plateau", "lower_plateau", "rise", "fall", "tau",
            "noise_sd", "fit_sd")  # fmt: skip


def classify_curve(
    x: np.ndarray,
    y: np.ndarray,
    groups: Sequence | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    criteria: Criteria | None = None,
    task: str = "",
    noise: Noise | None = None,
) -> Verdict:
    """The class of one curve (losses x, accuracies y; groups: each run's training corpus, None for
    one corpus), with its evidence, confidence and the data for a plot. noise: the SD of one run's
    score the flat and predictable rules judge against (decide), None when unknown."""
    criteria = criteria or Criteria()
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    labels = np.asarray(groups if groups is not None else np.zeros(len(x)), dtype=object)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y, labels = x[keep], y[keep], labels[keep]
    n = len(x)
    if n < MIN_RUNS or np.ptp(y) == 0:
        reason = f"{n} runs, at least {MIN_RUNS} needed" if n < MIN_RUNS else f"accuracy constant at {y[0]:.4g}"
        return Verdict(task, UNCLASSIFIED, 1.0, {"n": n, "reason": reason})
    names, codes = np.unique(labels.astype(str), return_inverse=True)
    sizes = np.bincount(codes)
    if sizes[sizes > 2].sum() < MIN_RUNS:
        reason = f"{sizes[sizes > 2].sum()} runs in corpora with at least 3 runs, at least {MIN_RUNS} needed"
        return Verdict(task, UNCLASSIFIED, 1.0, {"n": n, "reason": reason})
    noise = noise or Noise()
    stats = statistics(x, y, codes, _stratified_weights(codes, n_bootstrap, seed), criteria, noise.judged)
    rules = decide(stats, criteria, noise.judged)
    classes = np.array(RULE_CLASSES)[rules]
    verdict = str(classes[0])
    votes = {c: round(float(np.mean(classes[1:] == c)), 4) for c in CLASSES if np.any(classes[1:] == c)}
    confidence = float(np.mean(classes[1:] == verdict)) if n_bootstrap else float("nan")
    evidence: dict = {"n": n, "corpora": len(names), "rule": RULES[rules[0]], "votes": votes}
    for name in REPORTED:
        boot = stats[name][1:][np.isfinite(stats[name][1:])]
        interval = np.quantile(boot, (0.025, 0.975)).tolist() if len(boot) > 1 else [None, None]
        evidence[name] = {"value": _finite(stats[name][0]), "ci95": [_finite(v) for v in interval]}
    evidence["z_critical"] = _finite(norm.ppf(1 - criteria.alpha / 2))
    evidence["noise"] = noise.to_dict()
    evidence["judged"] = "noise" if np.isfinite(noise.judged) else "residual scatter (noise unknown)"
    curves = _curves(x, stats, verdict, list(names))
    curves["stats"] = {name: value[:1] for name, value in stats.items()}  # the data's row, for taxonomy_band
    curves["judged"] = noise.judged
    return Verdict(task, verdict, round(confidence, 4), evidence, curves)


def _finite(value) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), 6)


def _curves(x: np.ndarray, stats: Mapping[str, np.ndarray], verdict: str, names: list[str]) -> dict:
    """Per corpus, the fitted curve of the verdict's family on a loss grid and its 95 % band."""
    low, high = float(x.min()), float(x.max())
    grid = np.linspace(low, high, 60)
    if verdict == "breakthrough":
        features = _sigmoid_features(grid, stats["sigmoid_width"] * (high - low), stats["sigmoid_centre"])
        slope, intercept = stats["sig_slope"], stats["sig_intercept"]
    else:
        features = _exp_features(grid, stats["gamma"] * (high - low), low, high)
        slope, intercept = stats["exp_slope"], stats["exp_intercept"]
    curves = intercept[:, None, :] + slope[:, None, :] * features[:, :, None]  # (B + 1, grid, C)
    out = {"x": grid, "bin_means": stats["bin_means"][0], "fits": {}}
    for c, name in enumerate(names):
        band = curves[1:, :, c][np.isfinite(curves[1:, :, c]).all(axis=1)]
        low_band, high_band = np.quantile(band, (0.025, 0.975), axis=0) if len(band) > 1 else (None, None)
        out["fits"][name] = {"fit": curves[0, :, c], "low": low_band, "high": high_band}
    return out


def classify(
    table: pd.DataFrame,
    x: str,
    tasks: Sequence[str] | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    criteria: Criteria | None = None,
    chance: Mapping[str, float] | None = None,
    metric: str = "acc",
    pooled: bool = False,
    seed_sd: Mapping[str, float] | None = None,
    items: Mapping[str, int] | None = None,
) -> Classification:
    """One verdict per task (default: every task with final rows), x = validation loss `x`.

    Each training corpus (the `dataset` column) gets its own intercept and slope unless `pooled`.
    chance: chance accuracy per task, added to the evidence (`best_above_chance`) when known.
    The noise a task is judged against (Noise.larger): the larger of its seed-to-seed SD of accuracy (from
    `seed_sd`, else measured on the table's repeated seeds, analysis.seeds) and the root-mean-square binomial
    standard error of its rows (their stderr; without one, sqrt(p (1 - p) / items[task]) at the median
    accuracy p when `items` gives the task's item count); either alone where only one is known, else none.
    """
    notes: list[str] = []
    if seed_sd is None:
        seed_sd, note = _measured_seed_sd(table, x, metric)
        notes += [note] if note else []
    runs = final_losses(table, x).set_index("run_id")
    rows = table[(table["kind"] == "task").fillna(False) & table["final"].fillna(False)]
    rows = rows[(rows["metric"] == metric).fillna(False)]
    if rows.empty:
        raise AnalysisError(f"no final task rows with metric {metric!r} to classify")
    known = sorted(rows["name"].dropna().unique())
    tasks = list(tasks) if tasks else known
    if missing := sorted(set(tasks) - set(known)):
        raise AnalysisError(f"no final task rows for {', '.join(missing)}; tasks: {', '.join(known)}")
    verdicts = []
    for task in tasks:
        mine = rows[rows["name"] == task].drop_duplicates("run_id", keep="last").set_index("run_id")
        common = runs.index.intersection(mine.index)
        mine, losses = mine.loc[common], runs.loc[common]
        corpora = None if pooled else losses["dataset"].fillna("?").to_numpy()
        values = mine["value"].to_numpy(float, na_value=np.nan)
        stderr = mine["stderr"].to_numpy(float, na_value=np.nan)
        # the root mean square: the mean variance the chi-square needs (a median is 0 on a task at 0 %)
        sampling_se = float(np.sqrt(np.nanmean(stderr**2))) if np.isfinite(stderr).any() else np.nan
        if not np.isfinite(sampling_se) and items and task in items and np.isfinite(values).any():
            p = float(np.clip(np.nanmedian(values), 0.0, 1.0))
            sampling_se = float(np.sqrt(p * (1 - p) / items[task]))
        noise = _noise(task, seed_sd, sampling_se)
        verdict = classify_curve(
            losses["loss"].to_numpy(float), values, corpora, n_bootstrap, seed, criteria, task, noise
        )
        if np.isfinite(sampling_se):
            verdict.evidence["sampling_se"] = _finite(sampling_se)
        intended = mine["intended"].dropna()
        if len(intended):
            verdict.evidence["intended"] = str(intended.iloc[-1])
        if chance and task in chance:
            verdict.evidence["chance"] = chance[task]
            verdict.evidence["best_above_chance"] = _finite(np.nanmax(values) - chance[task])
        verdict.curve["runs"] = pd.DataFrame(
            {"loss": losses["loss"].to_numpy(float), "value": values, "dataset": losses["dataset"].to_numpy()}
        )
        verdicts.append(verdict)
    return Classification(x, tuple(verdicts), tuple(notes))


def _measured_seed_sd(table: pd.DataFrame, x: str, metric: str) -> tuple[dict[str, float], str]:
    """Each task's pooled seed SD measured on the table's repeated seeds, and a note when none could be."""
    try:
        spread = seed_spread(table, x, metric)
    except AnalysisError as err:
        return {}, f"seed SD not measured ({err}); the fixed thresholds apply"
    return spread.task_sd(), ""


def _noise(task: str, seed_sd: Mapping[str, float], sampling_se: float) -> Noise:
    return Noise.larger(float(seed_sd.get(task, np.nan)), sampling_se)


# --- the share of predictable tasks over the defensible choices ---------------------------------

# the thresholds a reader could defend as well as the defaults (docs/analysis.md, "The taxonomy band")
BAND_CRITERIA = {"alpha": (0.01, 0.05), "max_excess": (2.0, 4.0, 9.0), "noisy_r2": (0.7, 0.8, 0.9)}


@dataclass(frozen=True)
class Band:
    """The share of predictable tasks under every combination of the defensible choices: loss axis,
    pooled or per corpus, and the BAND_CRITERIA thresholds; one row per combination (`rows`)."""

    rows: pd.DataFrame  # subset, x, pooled, alpha, max_excess, noisy_r2, tasks, predictable, share
    default: Criteria
    notes: tuple[str, ...] = ()

    def summary(self) -> str:
        lines = []
        for subset, mine in self.rows.groupby("subset", sort=False):
            default = mine[_is_default(mine, self.default) & ~mine["pooled"]]
            head = (
                f"{subset}: predictable {mine['share'].min():.0%} - {mine['share'].max():.0%} of the classified tasks"
            )
            if len(default):
                first = default.iloc[0]
                head += (f" (defaults, per corpus, x = {first['x']}: {first['predictable']} of {first['tasks']}, "
                         f"{first['share']:.0%}); Lourie et al.: 39 %")  # fmt: skip
            lines.append(head)
            per = mine.groupby(["x", "pooled"], sort=False)["share"].agg(["min", "max"]).reset_index()
            for r in per.itertuples():
                lines.append(f"  x = {r.x}, {'pooled' if r.pooled else 'per corpus'}: {r.min:.0%} - {r.max:.0%}")
        choices = ", ".join(f"{k} {list(v)}" for k, v in BAND_CRITERIA.items())
        lines.append(f"over: the loss axes above, pooled or per corpus, and {choices}")
        return "\n".join([*lines, *self.notes])

    def to_dict(self) -> dict:
        out = {}
        for subset, mine in self.rows.groupby("subset", sort=False):
            out[subset] = {"min": float(mine["share"].min()), "max": float(mine["share"].max()),
                           "rows": mine.drop(columns="subset").to_dict(orient="records")}  # fmt: skip
        return {"subsets": out, "choices": {k: list(v) for k, v in BAND_CRITERIA.items()}, "notes": list(self.notes),
                "paper_share": 0.39}  # fmt: skip


def _is_default(rows: pd.DataFrame, criteria: Criteria) -> pd.Series:
    return (
        (rows["alpha"] == criteria.alpha)
        & (rows["max_excess"] == criteria.max_excess)
        & (rows["noisy_r2"] == criteria.noisy_r2)
    )


def taxonomy_band(
    table: pd.DataFrame,
    axes: Sequence[str] | None = None,
    metric: str = "acc",
    tasks: Sequence[str] | None = None,
    seed_sd: Mapping[str, float] | None = None,
) -> Band:
    """The share of predictable tasks (of those classified) for every loss axis (default: every validation
    set with a final row on every run), pooled and per corpus, and every combination of BAND_CRITERIA.
    A table whose task rows come at several numbers of shots is split by it (one subset per shots)."""
    finals = table[(table["kind"] == "val_loss").fillna(False) & table["final"].fillna(False)]
    if axes is None:
        per_axis = finals.groupby("name")["run_id"].nunique()
        axes = sorted(per_axis[per_axis == finals["run_id"].nunique()].index) or sorted(per_axis.index)
    subsets = _shot_subsets(table, metric)
    records, notes = [], []
    combos: list[dict[str, Any]] = [
        dict(zip(BAND_CRITERIA, values, strict=True)) for values in itertools.product(*BAND_CRITERIA.values())
    ]
    for subset, part in subsets.items():
        for axis in axes:
            for pooled in (False, True):
                found = classify(part, axis, tasks, n_bootstrap=0, metric=metric, pooled=pooled, seed_sd=seed_sd)
                notes += [n for n in found.notes if n not in notes]
                judged = [v for v in found if "stats" in v.curve]
                for combo in combos:
                    criteria = replace(Criteria(), **combo)
                    classes = [RULE_CLASSES[int(decide(v.curve["stats"], criteria, v.curve["judged"])[0])]
                               for v in judged]  # fmt: skip
                    k = sum(c == "predictable" for c in classes)
                    share = k / len(judged) if judged else float("nan")
                    records.append({"subset": subset, "x": axis, "pooled": pooled, **combo, "tasks": len(judged),
                                    "predictable": k, "share": share})  # fmt: skip
    return Band(pd.DataFrame(records), Criteria(), tuple(notes))


def _shot_subsets(table: pd.DataFrame, metric: str) -> dict[str, pd.DataFrame]:
    """The table whole ("all"), or split by the task rows' num_fewshot when they have several."""
    rows = table[(table["kind"] == "task").fillna(False) & (table["metric"] == metric).fillna(False)]
    shots = rows["num_fewshot"].dropna().unique()
    per_run = rows.groupby("run_id")["num_fewshot"].nunique()
    if len(shots) < 2 or per_run.max() > 1:  # tasks at their own shots (gadre2024), not runs at several
        return {"all": table}
    out = {}
    for k in sorted(shots):
        runs = set(rows.loc[rows["num_fewshot"] == k, "run_id"])
        out[f"{k}-shot"] = table[table["run_id"].isin(runs)]
    return out


def checkpoints_as_runs(table: pd.DataFrame, run_id: str) -> pd.DataFrame:
    """One run's checkpoints as runs of their own (run ids RUN@STEP, every row final): its curve over
    training, to classify like a curve over model sizes. Steps without both a validation loss and a task
    row are left out."""
    mine = table[(table["run_id"] == run_id).fillna(False)].copy()
    if mine.empty:
        known = ", ".join(sorted(table["run_id"].dropna().unique())[:20])
        raise AnalysisError(f"no rows of run {run_id!r}; runs include: {known}")
    kinds = mine.groupby("step")["kind"].agg(lambda k: {"val_loss", "task"} <= set(k.dropna()))
    steps = kinds[kinds].index
    mine = mine[mine["step"].isin(steps)]
    mine["run_id"] = mine["run_id"] + "@" + mine["step"].astype("Int64").astype(str)
    mine["final"] = True
    return mine
