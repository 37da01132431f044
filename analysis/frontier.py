"""The compute frontier at one token multiplier: L(C) = E + A / C^alpha fitted to the final losses of the
runs at M (default 20, compute-optimal), per training dataset, with each run's relative residual.

The law is the registry's `power_law` (L = E + A / D^alpha) with compute C = 6ND as its one input. A
configuration swept over LRs enters at its best LR (lr_sweep.best_lr_runs); seeds are averaged. Does the
loss follow a power law with an irreducible term over the ladder? The residuals say.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.diagnostics import physical
from analysis.errors import AnalysisError
from analysis.fitting import LEAST_SQUARES_GRID, Fit, fit_law
from analysis.laws import get_law
from analysis.lr_sweep import best_lr_runs
from analysis.select import OWN, entropy_floors, final_losses

FRONTIER_LAW = "power_law"
FIT_MULTIPLIER = 20.0


@dataclass(frozen=True)
class Frontier:
    x: str
    multiplier: float
    fits: dict[str, Fit]  # by training dataset
    runs: pd.DataFrame  # one row per (dataset, arch, size): params, flops, observed, seeds, predicted, residual
    floors: dict[str, float]  # by training dataset where known: the validation text's entropy (select.entropy_floors)

    def summary(self) -> str:
        lines = [f"frontier at M = {self.multiplier:g}: L(C) = E + A / C^alpha on the final loss ({self.x}), "
                 "each size at its best LR, seed means; residual = observed / predicted - 1"]  # fmt: skip
        for dataset, fit in self.fits.items():
            if fit.fitted:
                values = ", ".join(f"{k}={v:.4g}" for k, v in fit.params.items())
                lines.append(f"{dataset}: fit on {fit.n_points} sizes, residual {fit.residual:.4g}: {values}")
                if dataset in self.floors:
                    lines.append(f"  the validation text's entropy under its generator: {self.floors[dataset]:.4g}")
                if not fit.ok:
                    lines.append(f"  {fit.status}: {fit.reason}")
            else:
                lines.append(f"{dataset}: fit failed ({fit.status}): {fit.reason}")
        lines.append(self.runs.to_string(index=False, float_format="{:.4g}".format, na_rep="-"))
        return "\n".join(lines)


def frontier(table: pd.DataFrame, x: str = OWN, multiplier: float = FIT_MULTIPLIER) -> Frontier:
    """The frontier fit (module docstring) per training dataset."""
    runs = final_losses(best_lr_runs(table, x) if table["lr"].notna().any() else table, x)
    at = runs[np.isclose(runs["multiplier"], multiplier)]
    if at.empty:
        found = ", ".join(f"{m:g}" for m in sorted(runs["multiplier"].dropna().unique()))
        raise AnalysisError(f"no runs at M = {multiplier:g} with a final loss on {x}; multipliers: {found}")
    points = at.groupby(["dataset", "arch", "size"], sort=True).agg(
        params=("params", "median"), flops=("flops", "mean"), observed=("loss", "mean"), seeds=("run_id", "count")
    )
    points = points.reset_index().sort_values(["dataset", "params"], kind="stable").reset_index(drop=True)
    law = get_law(FRONTIER_LAW)
    fits, floors = {}, entropy_floors(table, x)
    for dataset, group in points.groupby("dataset", sort=True):
        observed = group["observed"].to_numpy()
        fit = fit_law(law, group["flops"].to_numpy(), observed, LEAST_SQUARES_GRID)
        points.loc[group.index, "predicted"] = fit.predict(group["flops"].to_numpy()) if fit.ok else np.nan
        fits[str(dataset)] = physical(fit, observed, floors.get(str(dataset)))
    points["residual"] = points["observed"] / points["predicted"] - 1
    return Frontier(x, multiplier, fits, points, {d: v for d, v in floors.items() if d in fits})
