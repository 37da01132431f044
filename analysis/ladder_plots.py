"""The ladder's figures (`testbed analyze ladder-plots`): iso-step curves, the over-training law's residuals
and the compute frontier's, written into one directory.

A configuration swept over LRs enters the two fits at its best LR (lr_sweep.best_lr_runs). The over-training
law is Gadre et al.'s protocol on the runs (analysis.replicate: its roles, seed means) when the table
has the runs it needs, else analysis.extrapolate's default split (the largest size held out) on seed means.
A figure that cannot be drawn is skipped with its reason; none at all is an error.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from analysis.errors import AnalysisError
from analysis.extrapolate import Extrapolation, extrapolate
from analysis.frontier import frontier
from analysis.lr_sweep import best_lr_runs
from analysis.plots import plot_frontier, plot_iso_step, plot_residuals
from analysis.replicate import replicate
from analysis.seeds import seed_means
from analysis.select import OWN, TOTAL

ISO_STEP, RESIDUALS, FRONTIER = "iso_step.png", "residuals.png", "frontier.png"


def overtrain_fit(
    table: pd.DataFrame,
    x: str = OWN,
    n_bootstrap: int = 0,
    seed: int = 0,
    fit_multipliers: bool = False,
    params: str = TOTAL,
) -> tuple[Extrapolation, str]:
    """The over-training law's fit and which split it used: the replication protocol's, else the default."""
    try:
        result = replicate(table, x, n_bootstrap=n_bootstrap, seed=seed, fit_multipliers=fit_multipliers,
                           params=params).result  # fmt: skip
        return result, "Gadre et al.'s roles (replicate" + (", --fit-multipliers)" if fit_multipliers else ")")
    except AnalysisError as err:
        why = str(err)
    means, _ = seed_means(table, x)
    return extrapolate(
        means, "overtrain", x, params=params
    ), f"seed means, largest size held out (replicate's roles not possible: {why})"


def write_ladder_plots(
    table: pd.DataFrame,
    out: str | Path,
    x: str = OWN,
    multiplier: float = 20.0,
    n_bootstrap: int = 0,
    seed: int = 0,
    fit_multipliers: bool = False,
    params: str = TOTAL,
) -> list[str]:
    """Write the three figures into `out` (created); one line per figure: where it is, or why it was skipped."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tuned = best_lr_runs(table, x) if table["lr"].notna().any() else table
    lines = [_attempt("iso-step", lambda: (plot_iso_step(table, out / ISO_STEP, x, multiplier), ""))]

    def residuals() -> tuple[Path, str]:
        result, split = overtrain_fit(tuned, x, n_bootstrap, seed, fit_multipliers, params)
        return plot_residuals(result, out / RESIDUALS), split

    lines.append(_attempt("residuals", residuals))
    lines.append(_attempt("frontier", lambda: (plot_frontier(frontier(tuned, x, multiplier), out / FRONTIER), "")))
    if all(": skipped" in line for line in lines):
        raise AnalysisError("no figure could be drawn: " + " | ".join(lines))
    return lines


def _attempt(name: str, draw: Callable[[], tuple[Path, str]]) -> str:
    try:
        path, note = draw()
    except AnalysisError as err:
        return f"{name}: skipped ({err})"
    return f"{name}: {path}" + (f" ({note})" if note else "")
