"""Context sensitivity (Lourie et al.): does the ordering of two training corpora on a task flip when
the x-axis changes from one validation loss to another?

For a task, a pair of corpora (A, B) and an x-axis: fit each corpus's accuracy linearly in that
validation loss, and compare the two lines over the loss range both corpora cover: `gap` = A's
accuracy minus B's at the middle of that common range (for lines, also the mean gap over it).
A positive gap means A looks better at equal loss. Runs are resampled within each corpus for a
95 % percentile interval. The verdict compares the two axes:
- `flip`: the gap is significant (interval excludes 0) on both axes, with opposite signs;
- `inconclusive`: the signs differ but at least one interval contains 0;
- `same order`: the signs agree;
- `no overlap`: on some axis the corpora share less than MIN_OVERLAP of their loss ranges.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis.errors import AnalysisError
from analysis.select import final_losses

MIN_OVERLAP = 0.1  # shared loss range below this share of the smaller corpus range: not comparable
COLUMNS = ["task", "corpus_a", "corpus_b", "gap_1", "low_1", "high_1", "gap_2", "low_2", "high_2", "verdict"]


def _line_at(loss: np.ndarray, value: np.ndarray, draws: np.ndarray, at: float) -> np.ndarray:
    """Least-squares line of value on loss, evaluated at `at`, for every row of index draws."""
    xs, ys = loss[draws], value[draws]
    xm, ym = xs.mean(axis=1, keepdims=True), ys.mean(axis=1, keepdims=True)
    with np.errstate(all="ignore"):
        slope = ((xs - xm) * (ys - ym)).sum(axis=1) / ((xs - xm) ** 2).sum(axis=1)
    return ym[:, 0] + slope * (at - xm[:, 0])


def _gap(a: pd.DataFrame, b: pd.DataFrame, draws: dict[str, np.ndarray], x: str) -> tuple[float, float, float]:
    low, high = max(a[x].min(), b[x].min()), min(a[x].max(), b[x].max())
    smaller = min(np.ptp(a[x]), np.ptp(b[x]))
    if not high - low >= MIN_OVERLAP * smaller:
        return np.nan, np.nan, np.nan
    middle = (low + high) / 2
    gaps = _line_at(a[x].to_numpy(), a["value"].to_numpy(), draws["a"], middle) - _line_at(
        b[x].to_numpy(), b["value"].to_numpy(), draws["b"], middle
    )
    interval = np.quantile(gaps[1:][np.isfinite(gaps[1:])], (0.025, 0.975)) if len(gaps) > 2 else [np.nan] * 2
    return float(gaps[0]), float(interval[0]), float(interval[1])


def verdict(gap_1: float, low_1: float, high_1: float, gap_2: float, low_2: float, high_2: float) -> str:
    if not (np.isfinite(gap_1) and np.isfinite(gap_2)):
        return "no overlap"
    if np.sign(gap_1) == np.sign(gap_2):
        return "same order"
    significant = (low_1 > 0 or high_1 < 0) and (low_2 > 0 or high_2 < 0)
    return "flip" if significant else "inconclusive"


def context_sensitivity(
    table: pd.DataFrame,
    x: str,
    vs: str,
    tasks: Sequence[str] | None = None,
    n_bootstrap: int = 200,
    seed: int = 0,
    metric: str = "acc",
) -> pd.DataFrame:
    """One row per (task, pair of training corpora): the gap on axis 1 (`x`) and axis 2 (`vs`),
    their intervals and the verdict (module docstring). attrs['x'] = (x, vs)."""
    losses = final_losses(table, x)[["run_id", "dataset", "loss"]].rename(columns={"loss": "x1"})
    other = final_losses(table, vs)[["run_id", "loss"]].rename(columns={"loss": "x2"})
    runs = losses.merge(other, on="run_id")
    rows = table[(table["kind"] == "task").fillna(False) & table["final"].fillna(False)]
    rows = rows[(rows["metric"] == metric).fillna(False)][["run_id", "name", "value"]]
    known = sorted(rows["name"].dropna().unique())
    tasks = list(tasks) if tasks else known
    if missing := sorted(set(tasks) - set(known)):
        raise AnalysisError(f"no final task rows for {', '.join(missing)}; tasks: {', '.join(known)}")
    corpora = sorted(runs["dataset"].dropna().unique())
    if len(corpora) < 2:
        raise AnalysisError(f"context sensitivity needs two training corpora, found {corpora or 'none'}")
    rng = np.random.default_rng(seed)
    out = []
    for task in tasks:
        data = runs.merge(rows[rows["name"] == task], on="run_id").astype({"value": float})
        by_corpus = {c: g.reset_index(drop=True) for c, g in data.groupby("dataset")}
        draws = {c: np.vstack([np.arange(len(g)), rng.integers(0, len(g), (n_bootstrap, len(g)))])
                 for c, g in by_corpus.items()}  # fmt: skip
        for a, b in itertools.combinations(corpora, 2):
            if a not in by_corpus or b not in by_corpus:
                continue
            pair = {"a": draws[a], "b": draws[b]}
            first = _gap(by_corpus[a], by_corpus[b], pair, "x1")
            second = _gap(by_corpus[a], by_corpus[b], pair, "x2")
            out.append([task, a, b, *first, *second, verdict(*first, *second)])
    frame = pd.DataFrame(out, columns=COLUMNS)
    frame.attrs["x"] = (x, vs)
    return frame
