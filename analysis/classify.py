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
  two bin means must reach to count (criteria.reversal_z standard errors, at least min_change).
The verdict is a fixed sequence of threshold rules on these statistics (`decide`); the confidence is
the share of bootstrap resamples on which the same rules give the same class.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import norm

from analysis.errors import AnalysisError
from analysis.seeds import seed_spread
from analysis.select import final_losses
from analysis.separable import counts
from analysis.verdicts import CLASSES, UNCLASSIFIED, Classification, Verdict

MIN_RUNS = 10
SEED = "seed"  # Noise.source of a measured seed-to-seed SD
SIGMOID_WIDTH = 2 * np.log(9)  # 10-90 % of a logistic step spans this many units of 1/slope


@dataclass(frozen=True)
class Noise:
    """The SD of one run's score on a task, and where it comes from: `seed` (the seed-to-seed SD
    measured on repeated runs, analysis.seeds), `binomial` (the median standard error of the task rows)
    or `none` (sd NaN).

    Only a seed SD enters the rules (`judged`): runs differ by their seeds independently, so a new
    run lands a seed SD from the law's curve however good the law. The binomial error does not: every
    run answers the same items, so the items' sampling error moves all runs alike and does not scatter
    a curve; the fixed min_change (about two binomial standard errors of the median released task)
    stands for it, as before seed SDs existed."""

    source: str = "none"
    sd: float = float("nan")

    @property
    def judged(self) -> float:
        """The SD the flat and predictable rules judge against (NaN: the fixed thresholds alone)."""
        return self.sd if self.source == SEED else float("nan")

    def to_dict(self) -> dict:
        return {"source": self.source, "sd": _finite(self.sd)}

    def label(self) -> str:
        return "none" if self.source == "none" else f"{self.source} {self.sd:.3g}"


@dataclass(frozen=True)
class Criteria:
    """The thresholds of the rules (docs/analysis.md, "Classifying task curves", says why)."""

    alpha: float = 0.05  # level of the two-sided Spearman test for a trend
    min_change: float = 0.02  # accuracy change across the loss range below which a curve is flat
    reversal_z: float = 3.0  # rise and fall must both exceed this many SEs of a bin-mean difference
    n_bins: int = 8
    min_r2: float = 0.8  # predictable: the transformed-linear law explains at least this share
    min_delta_bic: float = 10.0  # breakthrough: "very strong" evidence for the sigmoid (Kass-Raftery)
    max_width: float = 0.5  # breakthrough: transition at most this share of the loss range
    min_plateau: float = 0.1  # breakthrough: at least this share of runs on each plateau
    noise_z: float = 2.0  # flat: |change| below this many noise SDs of one run's score (and below min_change)


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
    x: np.ndarray, y: np.ndarray, groups: np.ndarray, weights: np.ndarray, criteria: Criteria
) -> dict[str, np.ndarray]:
    """The statistics of the module docstring for every row of `weights` (draw counts, (B, n)).

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

    exp_index, exp_sse, exp = _grouped_fits(_exp_features(x, RATES, low, high), y, weights, members)
    out |= {"gamma": RATES[exp_index] / (high - low), "exp_slope": exp["slope"], "exp_intercept": exp["intercept"]}
    with np.errstate(all="ignore"):
        out["r2"] = 1 - exp_sse / total_ss
        out["fit_sd"] = np.sqrt(np.maximum(total_ss - exp_sse, 0.0) / weights.sum(axis=1))  # SD of the trend

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
    out["tau"] = np.maximum(criteria.min_change, criteria.reversal_z * out["noise_sd"] * np.sqrt(2 * n_bins / n))
    out["bin_means"] = means
    return out


def decide(stats: Mapping[str, np.ndarray], n_effective: int, criteria: Criteria, noise: float = np.nan) -> np.ndarray:
    """The rule (index into RULES, RULE_CLASSES) that classifies every row of `stats`: the first
    that holds, in RULES order.

    noise: the SD of one run's score when known (the seed-to-seed SD, else the binomial standard
    error; NaN: unknown). A curve is then also flat when its change is below noise_z noise SDs, and
    predictable only when the trend's SD is large beside it (noise_r2 >= min_r2)."""
    critical = norm.ppf(1 - criteria.alpha / 2) / np.sqrt(n_effective)  # rho's null SD: 1 / sqrt(n - 1)
    nonmonotonic = (stats["rise"] >= stats["tau"]) & (stats["fall"] >= stats["tau"])
    flat = max(criteria.min_change, criteria.noise_z * noise) if np.isfinite(noise) else criteria.min_change
    trendless = (np.abs(stats["rho"]) < critical) | (np.abs(stats["change"]) < flat)
    inverse = stats["rho"] < 0
    breakthrough = (
        (stats["delta_bic"] >= criteria.min_delta_bic)
        & (stats["sigmoid_r2"] >= criteria.min_r2)
        & (stats["sigmoid_step"] > 0)
        & (stats["sigmoid_width"] <= criteria.max_width)
        & (stats["upper_plateau"] >= criteria.min_plateau)
        & (stats["lower_plateau"] >= criteria.min_plateau)
    )
    predictable = (stats["r2"] >= criteria.min_r2) & (noise_r2(stats["fit_sd"], noise) >= criteria.min_r2)
    conditions = [nonmonotonic, trendless, inverse, breakthrough, predictable]
    return np.select(conditions, range(len(conditions)), default=len(conditions))


def noise_r2(fit_sd: np.ndarray, noise: float) -> np.ndarray:
    """The share of a fresh run's variance that a perfect law would explain, fit_sd^2 / (fit_sd^2 +
    noise^2): a trend must stand out of one run's noise as R^2 asks it to stand out of the scatter
    (min_r2 = 0.8: noise at most half the trend's SD). 1 when the noise is unknown."""
    if not np.isfinite(noise):
        return np.ones_like(fit_sd)
    with np.errstate(all="ignore"):
        return fit_sd**2 / (fit_sd**2 + noise**2)


RULE_CLASSES = ("nonmonotonic", "trendless", "inverse", "breakthrough", "predictable", "noisy")
RULES = (
    "rise >= tau and fall >= tau: moves in both directions beyond noise",
    "|rho| < rho_critical or |change| < max(min_change, noise_z noise): no detectable or no material trend",
    "rho < 0: accuracy falls as the loss improves",
    "sigmoid preferred (delta_bic >= min_delta_bic, sigmoid_r2 >= min_r2), sharp (sigmoid_width <= "
    "max_width), both plateaus populated (>= min_plateau)",
    "r2 >= min_r2 and noise_r2 >= min_r2: the transformed-linear law explains most of the variation "
    "within corpora, and its trend stands out of one run's noise",
    "rises with scale but r2 < min_r2 or noise_r2 < min_r2: large variation around the trend, or a trend "
    "small beside one run's noise",
)
REPORTED = ("rho", "change", "r2", "gamma", "sigmoid_r2", "delta_bic", "sigmoid_width", "sigmoid_centre",
            "upper_plateau", "lower_plateau", "rise", "fall", "tau", "noise_sd", "fit_sd")  # fmt: skip


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
    stats = statistics(x, y, codes, _stratified_weights(codes, n_bootstrap, seed), criteria)
    n_effective = int(np.sum(sizes[sizes > 2] - 1))
    noise = noise or Noise()
    rules = decide(stats, n_effective, criteria, noise.judged)
    classes = np.array(RULE_CLASSES)[rules]
    verdict = str(classes[0])
    votes = {c: round(float(np.mean(classes[1:] == c)), 4) for c in CLASSES if np.any(classes[1:] == c)}
    confidence = float(np.mean(classes[1:] == verdict)) if n_bootstrap else float("nan")
    evidence: dict = {"n": n, "corpora": len(names), "rule": RULES[rules[0]], "votes": votes}
    for name in REPORTED:
        boot = stats[name][1:][np.isfinite(stats[name][1:])]
        interval = np.quantile(boot, (0.025, 0.975)).tolist() if len(boot) > 1 else [None, None]
        evidence[name] = {"value": _finite(stats[name][0]), "ci95": [_finite(v) for v in interval]}
    evidence["rho_critical"] = _finite(norm.ppf(1 - criteria.alpha / 2) / np.sqrt(n_effective))
    evidence["noise"] = noise.to_dict()
    evidence["noise_r2"] = _finite(noise_r2(stats["fit_sd"][:1], noise.judged)[0])
    return Verdict(task, verdict, round(confidence, 4), evidence, _curves(x, stats, verdict, list(names)))


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
) -> Classification:
    """One verdict per task (default: every task with final rows), x = validation loss `x`.

    Each training corpus (the `dataset` column) gets its own intercept and slope unless `pooled`.
    chance: chance accuracy per task, added to the evidence (`best_above_chance`) when known.
    The noise a task is judged against (Noise): its seed-to-seed SD of accuracy from `seed_sd`, else
    measured on the table's repeated seeds (analysis.seeds), else the median binomial standard error
    of its rows, else none.
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
        sampling_se = float(np.nanmedian(stderr)) if np.isfinite(stderr).any() else np.nan
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
    if task in seed_sd and np.isfinite(seed_sd[task]):
        return Noise(SEED, float(seed_sd[task]))
    if np.isfinite(sampling_se):
        return Noise("binomial", sampling_se)
    return Noise()
