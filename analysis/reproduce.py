"""Gadre et al. 2024's protocol (docs/analysis.md) on their released data: per training corpus, the
over-training law on 5 runs, Err(L) on 6, chained predictions for the held-out 1.4B and 6.9B runs.
GADRE2024 is the study's entry in analysis.studies.STUDIES.

`reproduce()` returns one record per (dataset, target, quantity) with the keys of RECORD_KEYS:
quantity `loss` is the C4 validation loss, `err17` / `err46` the mean top-1 error over the paper's
17-task subset / all 46 tasks, predicted as Err(L_pred). ci_low / ci_high are bootstrap percentile
intervals (runs resampled; for errors the loss and error fits both resampled, chained).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import gadre2024
from analysis.errors import AnalysisError
from analysis.extrapolate import ERROR_COLUMNS, Extrapolation, Split, chain_error, extrapolate
from analysis.select import downstream_errors
from analysis.studies import Study

RECORD_KEYS = ("dataset", "target", "quantity", "observed", "predicted", "rel_error", "ci_low", "ci_high")
QUANTITIES = ("loss", "err17", "err46")
LOSS_LAW = "overtrain"


def split(datasets: list[str]) -> Split:
    """The paper's fit, error-fit and held-out runs for these training datasets."""
    return Split(
        heldout=tuple(r for d in datasets for r in gadre2024.heldout_runs(d).values()),
        fit=tuple(r for d in datasets for r in gadre2024.loss_fit_runs(d)),
        error_fit=tuple(r for d in datasets for r in gadre2024.error_fit_runs(d)),
    )


def table_from(source: str | Path | pd.DataFrame | None) -> pd.DataFrame:
    """A results table from a table, a results file, a released-layout directory or None (shipped)."""
    return GADRE2024.table(source)


def run_protocol(table: pd.DataFrame, n_bootstrap: int = 1000, seed: int = 0) -> Extrapolation:
    """The loss law and the 17-task Err(L) per dataset; runs also carry the 46-task error
    columns (`*_err46`)."""
    datasets = [d for d in gadre2024.DATASETS if d in set(table["dataset"].dropna())]
    if not datasets:
        raise AnalysisError(f"no runs of the {gadre2024.NAME} training datasets {', '.join(gadre2024.DATASETS)}")
    the_split = split(datasets)
    result = extrapolate(
        table, LOSS_LAW, gadre2024.X, list(gadre2024.SUBSET17), split=the_split, n_bootstrap=n_bootstrap, seed=seed
    )
    errors46 = downstream_errors(table)  # every task that all runs have: the 46
    parts = []
    for dataset, runs in result.runs.groupby("dataset", sort=True):
        runs = runs.drop(columns=[c for c in ERROR_COLUMNS if c in runs])
        runs["observed_error"] = runs["run_id"].map(errors46).astype(float)
        chain_error(runs, the_split.fits_error(runs), result.fits[dataset].bootstrap, n_bootstrap, seed)
        mine = [c for c in ERROR_COLUMNS if c in runs]
        parts.append(runs.set_index("run_id")[mine].add_suffix("_err46"))
    runs = result.runs.join(pd.concat(parts), on="run_id")
    return Extrapolation(result.law, result.x, result.target, result.fits, runs, result.warnings)


# quantity -> the run columns (extrapolate's) of its observed, predicted, rel_error, ci_low, ci_high
LOSS_RECORD = ("observed", "predicted", "rel_error", "ci_low", "ci_high")
ERROR_RECORD = ("observed_error", "predicted_error", "error_rel_error", "error_ci_low", "error_ci_high")


def records(result: Extrapolation) -> list[dict]:
    """One record per held-out target and quantity, in RECORD_KEYS order (NaN as None)."""
    columns = {"loss": LOSS_RECORD, "err17": ERROR_RECORD, "err46": tuple(f"{c}_err46" for c in ERROR_RECORD)}
    datasets = result.runs["dataset"].drop_duplicates().sort_values()
    return target_records(result, {d: gadre2024.heldout_runs(d) for d in datasets}, columns)


def target_records(
    result: Extrapolation, targets: Mapping[str, Mapping[str, str]], columns: Mapping[str, Sequence[str]]
) -> list[dict]:
    """Records in RECORD_KEYS order (NaN as None) for targets (dataset -> label -> run id; ids absent
    from the result are skipped) and quantities (name -> its five run columns, as LOSS_RECORD)."""
    out = []
    runs = result.runs.set_index("run_id")
    for dataset, labels in targets.items():
        for target, run_id in labels.items():
            if run_id not in runs.index:
                continue
            for quantity, names in columns.items():
                values = [runs.at[run_id, c] if c in runs else np.nan for c in names]
                values = [None if pd.isna(v) else float(v) for v in values]
                out.append(dict(zip(RECORD_KEYS, [dataset, target, quantity, *values], strict=True)))
    return out


def reproduce(source: str | Path | pd.DataFrame | None = None, n_bootstrap: int = 1000, seed: int = 0) -> list[dict]:
    """The protocol's held-out records for a table, results file or data directory (None: shipped)."""
    return records(run_protocol(table_from(source), n_bootstrap, seed))


def records_frame(rows: list[dict]) -> pd.DataFrame:
    """The records as a table, relative errors in percent (column rel_error_%)."""
    frame = pd.DataFrame(rows, columns=list(RECORD_KEYS))
    frame["rel_error"] = frame["rel_error"] * 100
    return frame.rename(columns={"rel_error": "rel_error_%"})


@dataclass(frozen=True)
class Reproduction:
    """The protocol rerun: its fits and predictions, and the held-out records."""

    result: Extrapolation
    records: list[dict]
    n_bootstrap: int

    def summary(self) -> str:
        head = (f"{gadre2024.NAME}: loss law {LOSS_LAW} on 5 runs, Err(L) on 6, per training corpus; "
                f"{self.n_bootstrap} bootstrap resamples")  # fmt: skip
        table = records_frame(self.records).to_string(index=False, float_format="{:.4g}".format, na_rep="-")
        return f"{head}\n{table}"


def reproduction(table: pd.DataFrame, n_bootstrap: int = 1000, seed: int = 0) -> Reproduction:
    """The protocol on a results table, with its records."""
    result = run_protocol(table, n_bootstrap, seed)
    return Reproduction(result, records(result), n_bootstrap)


GADRE2024 = Study(
    name=gadre2024.NAME,
    load=gadre2024.load,
    reproduce=reproduction,
    is_release=gadre2024.is_release,
    chance_levels=gadre2024.chance_levels,
    x=gadre2024.X,
    loss_law=LOSS_LAW,
    second_x=gadre2024.PROGRAMMING,
)
