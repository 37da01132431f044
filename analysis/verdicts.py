"""The result of classifying task curves (analysis.classify): one Verdict per task, and the
Classification that holds them with its text summary."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import pandas as pd

CLASSES = ("predictable", "inverse", "nonmonotonic", "noisy", "trendless", "breakthrough")
UNCLASSIFIED = "unclassified"  # too few runs, or constant accuracy: no curve to judge
MIN_INTENDED_CONFIDENCE = 0.8  # a designed task hits its intended class with at least this confidence
# the statistics the text summary shows per task (docs/analysis.md defines them)
SHOWN = ("trend_z", "change", "excess", "r2", "delta_bic")


@dataclass(frozen=True)
class Verdict:
    task: str
    cls: str
    confidence: float
    evidence: dict
    curve: dict = field(default_factory=dict, repr=False)  # grid, fit and band for plots

    @property
    def intended(self) -> str | None:
        """The class the task's suite says it is meant to show (None: not a designed task)."""
        return self.evidence.get("intended")

    @property
    def hit(self) -> bool | None:
        """Whether a designed task landed in its intended class with enough confidence (None: not designed)."""
        if self.intended is None:
            return None
        return self.cls == self.intended and self.confidence >= MIN_INTENDED_CONFIDENCE

    def to_dict(self) -> dict:
        return {"task": self.task, "class": self.cls, "confidence": self.confidence, "evidence": self.evidence}

    def noise_label(self) -> str:
        """Which noise of one run's score the verdict had (noise_text of its evidence)."""
        return noise_text(self.evidence.get("noise") or {})


def noise_text(noise: Mapping) -> str:
    """A noise record (classify.Noise.to_dict) in words: `seed 0.012`, `binomial 0.011`, `none`; where both were
    known, the smaller in brackets: `binomial 0.0137 (seed 0.0086)`."""
    sd = noise.get("sd")
    label = noise.get("source", "none") + (f" {sd:.3g}" if sd is not None else "")
    other = {"seed": ("binomial", "binomial_se"), "binomial": ("seed", "seed_sd")}.get(noise.get("source", ""))
    if other and noise.get(other[1]) is not None:
        label += f" ({other[0]} {noise[other[1]]:.3g})"
    return label


@dataclass(frozen=True)
class Classification:
    """Every task's verdict, with accuracy plotted against the validation loss `x`.

    A sequence of Verdicts (iterate, index, len) that can describe itself: `summary()` as text,
    `counts()` per class, `to_list()` for JSON.
    """

    x: str
    verdicts: tuple[Verdict, ...]
    notes: tuple[str, ...] = ()  # sentences about the whole classification (e.g. why no seed SD was measured)

    def __iter__(self) -> Iterator[Verdict]:
        return iter(self.verdicts)

    def __len__(self) -> int:
        return len(self.verdicts)

    def __getitem__(self, index: int) -> Verdict:
        return self.verdicts[index]

    def counts(self) -> dict[str, int]:
        """How many tasks fall in each class (unclassified only when there are some)."""
        found = pd.Series([v.cls for v in self.verdicts], dtype=object).value_counts()
        return {c: int(found.get(c, 0)) for c in (*CLASSES, UNCLASSIFIED) if c in CLASSES or found.get(c, 0)}

    def designed(self) -> tuple[int, int]:
        """(hits, designed tasks): how many tasks with an intended class landed in it with confidence
        at least MIN_INTENDED_CONFIDENCE."""
        flags = [v.hit for v in self.verdicts if v.hit is not None]
        return sum(flags), len(flags)

    def table(self) -> pd.DataFrame:
        """One row per task: class, confidence and the SHOWN statistics (NaN where missing); with
        designed tasks, their intended class beside the verdict."""
        rows = []
        designed = any(v.intended for v in self.verdicts)
        for v in self.verdicts:
            values = {k: (v.evidence.get(k) or {}).get("value") for k in SHOWN}
            values = {k: float("nan") if number is None else number for k, number in values.items()}
            intended = {"intended": v.intended or "-"} if designed else {}
            rows.append(
                {"task": v.task, "class": v.cls, **intended, "confidence": v.confidence, **values,
                 "noise": v.noise_label()}
            )  # fmt: skip
        return pd.DataFrame(rows)

    def summary(self) -> str:
        """The verdicts as a table (class, confidence, key statistics), the share of each class, and
        how many designed tasks landed in their intended class."""
        table = self.table().to_string(index=False, float_format="{:.3f}".format, na_rep="-")
        n = len(self.verdicts)
        shares = ", ".join(f"{name} {k} ({k / n:.0%})" for name, k in self.counts().items())
        sources = pd.Series([(v.evidence.get("noise") or {}).get("source", "none") for v in self.verdicts])
        noise = ", ".join(f"{source} {k}" for source, k in sources.value_counts().sort_index().items())
        lines = [f"loss axis: {self.x}", table, "", f"{n} tasks: {shares}",
                 f"noise of one run's score: {noise} (seed: the measured seed-to-seed SD; binomial: the rows' "
                 "standard error over the task's items; the larger where both are known; the trend test (trend_z) "
                 "and the scatter test (excess = residual variance / noise variance) judge against it; none: "
                 "against the residual scatter, and noisy means r2 < 0.8)"]  # fmt: skip
        hits, designed = self.designed()
        if designed:
            lines.append(f"designed tasks: {hits} of {designed} in their intended class with confidence >= "
                         f"{MIN_INTENDED_CONFIDENCE}")  # fmt: skip
        return "\n".join([*lines, *self.notes])

    def to_list(self) -> list[dict]:
        return [v.to_dict() for v in self.verdicts]
