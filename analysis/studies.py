"""Published studies: their released results imported as a results table, their protocol rerun.

Each study is one entry of STUDIES. `testbed analyze import NAME` and `testbed analyze reproduce
NAME` offer its names; `report` and `classify` recognise a table imported from a study
(`release_of`) and then follow its protocol, loss axes and chance levels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pandas as pd

from analysis.errors import AnalysisError
from analysis.extrapolate import Extrapolation
from analysis.registry import Registry
from analysis.select import load_table


class Reproduction(Protocol):
    """What rerunning a study's protocol gives."""

    # read-only properties, so that a frozen dataclass is a Reproduction
    @property
    def result(self) -> Extrapolation: ...  # the protocol's fits and predictions

    @property
    def records(self) -> list[dict]: ...  # one record per held-out target and quantity: `reproduce`'s JSON

    def summary(self) -> str: ...


@dataclass(frozen=True)
class Study:
    name: str
    load: Callable[[str | Path | None], pd.DataFrame]  # released-layout directory (None: shipped copy)
    reproduce: Callable[[pd.DataFrame, int, int], Reproduction]  # (table, n_bootstrap, seed)
    is_release: Callable[[pd.DataFrame], bool]  # whether a results table is this study's import
    chance_levels: Callable[[], dict[str, float]]  # chance accuracy per task
    x: str  # the validation loss the protocol fits on
    loss_law: str  # the loss law the protocol fits
    second_x: str | None = None  # another loss axis to contrast with x (context sensitivity)

    def table(self, source: str | Path | pd.DataFrame | None) -> pd.DataFrame:
        """A results table from a table, a results file, a released-layout directory or None
        (the shipped copy)."""
        if isinstance(source, pd.DataFrame):
            return source
        if source is not None and Path(source).is_file():
            return load_table(source)
        return self.load(source)


STUDIES: Registry[Study] = Registry("study", AnalysisError, plural="studies")
STUDIES.register("gadre2024", "analysis.reproduce:GADRE2024")
STUDIES.register("olmo_ladder", "analysis.olmo_reproduce:OLMO_LADDER")
STUDIES.register("pythia", "analysis.pythia:PYTHIA")


def release_of(table: pd.DataFrame) -> Study | None:
    """The study whose released results `table` is, if any."""
    return next((study for _, study in STUDIES.items() if study.is_release(table)), None)
