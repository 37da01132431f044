"""Isik et al. 2024 (arXiv 2402.04177) on testbed's translation rows (`testbed analyze translation`,
docs/analysis.md, "Translation"): does translation quality after finetuning follow the size D_p of the
pretraining data, and does the mixture's alignment with the translation pair decide whether it does?

Per series (analysis.translation_fits: the points, the laws fitted on the early D_p values and their
predictions of the held-out later ones), a verdict on the judged metric (BLEU unless another log-law metric
is asked for first: `judged_metric`) with cross-entropy beside it, first rule that holds; "BLEU" below stands
for the judged metric. A change counts when it exceeds NOISE_Z combined SDs of the two points (each point's
SD: the larger of its seed error and its standard error; unknown noise: any change counts):
- misaligned: BLEU falls from the first to the last checkpoint (with cross-entropy still improving:
  Isik's misalignment signature); or drops between two successive checkpoints (non-monotone); or does not
  change (flat: noise decides);
- misaligned: BLEU rises unsteadily (Spearman < MIN_SPEARMAN; its dips within noise, which the reason says);
- undetermined: BLEU rises steadily, but the log law could not be fitted or ended on its box's edge;
- misaligned: the log law misses a held-out point by more than `tolerance` (relative);
  these two reasons name the largest rise between successive checkpoints: where BLEU breaks through (a
  skill such as copying names switches on), a law fitted across the jump cannot hold, and `fit_from` (the
  CLI's --fit-from) fits it to the checkpoints after the jump instead, the earlier ones shown as `early`;
  `fit_from="jump"` finds each series' jump by a rule that never sees the held-out points (`jump_start`);
- aligned: BLEU rises steadily and the log law predicts the held-out points within `tolerance`.
The benefit of pretraining: per series, the best checkpoint's BLEU gain over the baseline (bleu_gain rows, or
bleu_noncopy_gain for bleu_noncopy, with their paired-bootstrap p when the table has them, else BLEU minus the
baseline's BLEU), compared
across finetuning sizes: does a larger finetuning set shrink it (Isik's second finding)?
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.errors import AnalysisError
from analysis.translation_fits import (
    BLEU,
    CROSS_ENTROPY,
    EARLY,
    HELDOUT,
    LAW_OF,
    LOG_LAW,
    MIN_FIT_POINTS,
    QUANTITIES,
    SERIES,
    QuantityFit,
    fit_series,
    gain_metric,
    series_points,
    translation_rows,
)

NOISE_Z = 2.0
MIN_SPEARMAN = 0.9
TOLERANCE = 0.10
HOLDOUT = 2
JUMP = "jump"  # fit_from: start each series' fit after its jump (jump_start)
JUMP_FACTOR = 2.0  # a jump rises more than this many times the median rise between checkpoints
ALIGNED, MISALIGNED, UNDETERMINED = "aligned", "misaligned", "undetermined"
RECORD_KEYS = ("arch", "task", "mixture", "alignment", "finetune_tokens", "pretrain_tokens", "quantity",
               "observed", "predicted", "rel_error", "spearman", "verdict")  # fmt: skip
BENEFIT_COLUMNS = [*SERIES, "best_tokens", "gain", "gain_sd", "p_value", "repeats", "source"]


@dataclass(frozen=True)
class Change:
    """How a value moved between two points (at x = `at`), and the combined SD of that move (NaN: unknown)."""

    before: float
    after: float
    sd: float
    at: tuple[float, float]

    @classmethod
    def between(cls, first: pd.Series, second: pd.Series, value: str = "mean", error: str = "uncertainty",
                x: str = "pretrain_tokens") -> Change:  # fmt: skip
        errors = np.array([first[error], second[error]], dtype=float)
        sd = float(np.sqrt(np.nansum(errors**2))) if np.isfinite(errors).any() else float("nan")
        return cls(float(first[value]), float(second[value]), sd, (float(first[x]), float(second[x])))

    @property
    def delta(self) -> float:
        return self.after - self.before

    def beyond_noise(self) -> bool:
        """|delta| above NOISE_Z combined SDs; with no noise estimate, any change."""
        return abs(self.delta) > NOISE_Z * self.sd if np.isfinite(self.sd) else self.delta != 0

    def noise_text(self) -> str:
        return f"{NOISE_Z:g} combined SDs = {NOISE_Z * self.sd:.3g}" if np.isfinite(self.sd) else "no noise estimate"

    def describe(self, axis: str = "D_p") -> str:
        start, end = (tokens_text(x) for x in self.at)
        return f"{self.before:.3g} -> {self.after:.3g} ({self.delta:+.3g}) from {axis} {start} to {end}"


def tokens_text(count: float) -> str:
    """A token count in a few characters: 3k, 31.6M, 1B."""
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(count) >= scale:
            return f"{count / scale:.3g}{suffix}"
    return f"{count:.3g}"


def steps(points: pd.DataFrame) -> list[Change]:
    """The changes between successive points (ascending D_p)."""
    return [Change.between(points.iloc[i], points.iloc[i + 1]) for i in range(len(points) - 1)]


def falls(points: pd.DataFrame) -> list[Change]:
    """The decreases between successive points (ascending D_p), largest first."""
    return sorted((s for s in steps(points) if s.delta < 0), key=lambda s: s.delta)


def metric_label(metric: str) -> str:
    """How the reasons name a judged metric: BLEU, or its row name."""
    return "BLEU" if metric == BLEU else metric


def judge(curves: Mapping[str, QuantityFit], tolerance: float = TOLERANCE, metric: str = BLEU) -> tuple[str, str]:
    """The series' verdict on `metric` (module docstring) and its reason, with the numbers behind it."""
    curve, name = curves.get(metric), metric_label(metric)
    if curve is None or len(curve.pretrained) < 2:
        return UNDETERMINED, f"fewer than 2 pretraining checkpoints with {name} rows: no curve to judge"
    signal = misalignment(curve.pretrained, curves.get(CROSS_ENTROPY), name)
    if signal:
        return MISALIGNED, signal
    return law_verdict(curve, tolerance, name)


def misalignment(points: pd.DataFrame, cross_entropy: QuantityFit | None, name: str = "BLEU") -> str:
    """Why the judged metric's points (ascending D_p) look misaligned beyond noise, or "" when nothing does."""
    whole = Change.between(points.iloc[0], points.iloc[-1])
    improving = ce_improvement(cross_entropy)
    if whole.delta < 0 and whole.beyond_noise():
        signature = f" while cross-entropy improves {improving}: Isik's misalignment signature" if improving else ""
        return f"{name} falls {whole.describe()}, beyond {whole.noise_text()}{signature}"
    drops = [d for d in falls(points) if d.beyond_noise()]
    if drops:
        meanwhile = f"; cross-entropy improves {improving}" if improving else ""
        return f"non-monotone: {name} drops {drops[0].describe()}, beyond {drops[0].noise_text()}{meanwhile}"
    if not whole.beyond_noise():
        return f"flat: {name} {whole.describe()}, within {whole.noise_text()}: noise decides"
    return ""


def ce_improvement(cross_entropy: QuantityFit | None) -> str:
    """The cross-entropy's fall over the pretraining checkpoints when it is beyond noise, else ""."""
    if cross_entropy is None or len(cross_entropy.pretrained) < 2:
        return ""
    points = cross_entropy.pretrained
    whole = Change.between(points.iloc[0], points.iloc[-1])
    return whole.describe() if whole.delta < 0 and whole.beyond_noise() else ""


def jump_hint(curve: QuantityFit, name: str = "BLEU") -> str:
    """Where the judged points (early ones left out) rise most between successive checkpoints, and the
    --fit-from that would fit the law after that rise; "" when it ends at the first judged point."""
    judged = curve.pretrained[curve.pretrained["role"] != EARLY]
    rises = steps(judged)
    whole = sum(r.delta for r in rises)  # the first judged point to the last
    if not rises or whole <= 0:
        return ""
    jump = max(rises, key=lambda r: r.delta)
    return (f"; its largest rise between successive checkpoints is {jump.describe()} ({jump.delta / whole:.0%} of "
            f"the whole rise): if {name} breaks through there, --fit-from {tokens_text(jump.at[1])} fits the law "
            f"after it")  # fmt: skip


def jump_start(points: pd.DataFrame, metric: str, holdout: int) -> float:
    """`fit_from="jump"` for one series: the D_p right after the judged metric's jump, the largest rise between
    successive checkpoints, looked for among the checkpoints the law may be fitted to (never the last
    `holdout`) and leaving at least MIN_FIT_POINTS of them to fit. A rise is a jump when it is beyond noise
    and more than JUMP_FACTOR times the median rise between those checkpoints; without one, 0 (fit them all).
    The held-out points play no part, so the start is not a choice made to fit them."""
    judged = points[(points["metric"] == metric) & (points["pretrain_tokens"] > 0)].sort_values("pretrain_tokens")
    rises = steps(judged.iloc[: len(judged) - holdout])
    allowed = rises[: len(rises) + 1 - MIN_FIT_POINTS]  # a start that leaves enough to fit
    jump = max(allowed, key=lambda r: r.delta, default=None)
    if jump is None or not jump.beyond_noise() or not jump.delta > JUMP_FACTOR * np.median([r.delta for r in rises]):
        return 0.0
    return jump.at[1]


def fit_start_text(fit_from: float | str) -> str:
    """fit_from in words, for the headers."""
    if fit_from == JUMP:
        return (f" from the checkpoint after each series' jump on (--fit-from jump: its largest rise, if beyond "
                f"noise and {JUMP_FACTOR:g}x the median rise, looked for among the checkpoints fitted, never the "
                f"held-out ones; the earlier ones are shown as early)")  # fmt: skip
    return (f" from D = {tokens_text(float(fit_from))} on (the earlier checkpoints are shown as early, neither "
            f"fitted nor held out)") if float(fit_from) > 0 else ""  # fmt: skip


def law_verdict(bleu: QuantityFit, tolerance: float, name: str = "BLEU") -> tuple[str, str]:
    """The verdict of a BLEU (or `name`) curve without a sign of misalignment: does it rise steadily, and does
    the log law fitted on its early points predict the held-out ones?"""
    dips = falls(bleu.pretrained)
    dip = f"; its largest dip {dips[0].describe()} is within {dips[0].noise_text()}: noise decides" if dips else ""
    rise = Change.between(bleu.pretrained.iloc[0], bleu.pretrained.iloc[-1]).describe()
    if not bleu.spearman >= MIN_SPEARMAN:
        return MISALIGNED, f"{name} rises unsteadily: {rise}, Spearman {bleu.spearman:.2f} < {MIN_SPEARMAN:g}{dip}"
    if not bleu.holds:
        why = bleu.warnings[0] if bleu.warnings else f"the log law could not be fitted: {bleu.fit.reason}"
        hint = jump_hint(bleu, name)
        return UNDETERMINED, f"{name} rises steadily ({rise}, Spearman {bleu.spearman:.2f}), but {why}{hint}"
    worst = bleu.max_heldout_error()
    heldout = bleu.points[bleu.points["role"] == HELDOUT]
    if not worst <= tolerance:
        miss = (heldout["predicted"] - heldout["mean"]).abs()
        noisy = bool((miss <= NOISE_Z * heldout["uncertainty"]).all())
        noise = f"; every miss is within {NOISE_Z:g} SDs of its observation: noise decides" if noisy else ""
        noise += jump_hint(bleu, name)
        return MISALIGNED, (f"{name} rises ({rise}, Spearman {bleu.spearman:.2f}) but the log law misses the held-out "
                            f"points by up to {worst:.1%} (tolerance {tolerance:.0%}){noise}")  # fmt: skip
    return ALIGNED, (f"{name} rises {rise}, Spearman {bleu.spearman:.2f}, and the log law predicts the {len(heldout)} "
                     f"held-out points within {worst:.1%} (tolerance {tolerance:.0%}){dip}")  # fmt: skip


def best_gain(points: pd.DataFrame, metric: str = BLEU) -> dict | None:
    """One series' pretraining benefit: the best checkpoint's gain over the baseline, from the metric's gain
    rows (their paired-bootstrap SD and p) when there are some, else the metric minus the baseline's; None
    without the rows to tell. p_value is the largest of the best checkpoint's `repeats` (one per finetuning
    seed and pretraining run)."""
    gain = gain_metric(metric)
    gains = points[(points["pretrain_tokens"] > 0) & (points["metric"] == gain)]
    if not gains.empty:
        best = gains.loc[gains["mean"].idxmax()]
        return {"best_tokens": best["pretrain_tokens"], "gain": best["mean"], "gain_sd": best["uncertainty"],
                "p_value": best["p_value"], "repeats": best["n"], "source": gain}  # fmt: skip
    bleu = points[points["metric"] == metric]
    baseline, checkpoints = bleu[bleu["pretrain_tokens"] == 0], bleu[bleu["pretrain_tokens"] > 0]
    if baseline.empty or checkpoints.empty:
        return None
    best = checkpoints.loc[checkpoints["mean"].idxmax()]
    change = Change.between(baseline.iloc[0], best)
    return {"best_tokens": best["pretrain_tokens"], "gain": change.delta, "gain_sd": change.sd,
            "p_value": float("nan"), "repeats": best["n"], "source": metric}  # fmt: skip


def gain_text(benefit) -> str:
    """A benefit row's gain, its SD and its p: each repeat's paired bootstrap gives one, the largest is shown."""
    text = f"{benefit.gain:+.3g} ± {benefit.gain_sd:.2g}"
    if not np.isfinite(benefit.p_value):
        return text
    of = f", the largest of {benefit.repeats} repeats" if benefit.repeats > 1 else ""
    return f"{text} (p {benefit.p_value:.2g}{of})"


def pretraining_benefit(points: pd.DataFrame, metric: str = BLEU) -> pd.DataFrame:
    """BENEFIT_COLUMNS: one row per series with a baseline or gain rows of `metric`."""
    rows = []
    for key, group in points.groupby(SERIES, dropna=False, sort=True):
        gain = best_gain(group, metric)
        if gain is not None:
            rows.append(dict(zip(SERIES, key, strict=True)) | gain)
    return pd.DataFrame(rows, columns=BENEFIT_COLUMNS)


def benefit_trends(benefit: pd.DataFrame, name: str = "BLEU") -> list[str]:
    """One sentence per (arch, size, task, mixture): the gain at each finetuning size, and whether each size's
    gain is below the next smaller size's beyond noise (a larger finetuning set shrinks the benefit). Each
    step is judged on its own: the gain can grow while both models sit near the floor, then shrink."""
    out = []
    for key, group in benefit.groupby(SERIES[:-1], dropna=False, sort=True):
        group = group.sort_values("finetune_tokens")
        gains = ", ".join(f"{gain_text(r)} at {tokens_text(r.finetune_tokens)}" for r in group.itertuples())
        where = label(dict(zip(SERIES[:-1], key, strict=True)))
        text = f"{where}: best-checkpoint {name} gain {gains} finetuning tokens"
        for i in range(1, len(group)):
            change = Change.between(group.iloc[i - 1], group.iloc[i], "gain", "gain_sd", "finetune_tokens")
            text += f"; {benefit_change(change)}"
        out.append(text)
    return out


def benefit_change(change: Change) -> str:
    """The gain's move between two finetuning sizes, judged against its noise."""
    if not change.beyond_noise():
        text = f"the gain changes within {change.noise_text()}: noise decides"
    else:
        verb = "shrinks" if change.delta < 0 else "grows"
        text = f"a larger finetuning set {verb} the benefit, beyond {change.noise_text()}"
    return f"{text} ({change.describe('finetuning tokens')})"


def label(key: Mapping) -> str:
    """A series (or its prefix without finetune_tokens) in words."""
    text = f"{key['arch']} {key['size']} {key['task']} on {mixture_text(key)} (A = {key['alignment']:g})"
    return text + (f", {tokens_text(key['finetune_tokens'])} finetuning tokens" if "finetune_tokens" in key else "")


def mixture_text(key: Mapping) -> str:
    """The mixture, with the setting that tells its series apart where there is one: `syn_en [schedule wsd]`."""
    return f"{key['mixture']} [{key['setting']}]" if key.get("setting") else str(key["mixture"])


@dataclass(frozen=True)
class Series:
    key: dict  # SERIES -> value
    curves: dict[str, QuantityFit]  # by quantity
    verdict: str
    reason: str
    fit_from: float = 0.0  # the D_p its laws are fitted from (0: all)


@dataclass(frozen=True)
class TranslationAnalysis:
    """Every series' fits, predictions and verdict, and the pretraining benefit per finetuning size."""

    series: tuple[Series, ...]
    benefit: pd.DataFrame  # BENEFIT_COLUMNS
    quantities: tuple[str, ...]  # those shown (the verdict also uses the judged metric and cross-entropy)
    holdout: int
    tolerance: float
    metric: str = BLEU  # the judged metric: verdicts and benefit
    fit_from: float | str = 0.0  # the laws are fitted to the checkpoints from this D_p on (0: all; JUMP)

    def heldout(self) -> pd.DataFrame:
        """One row per held-out point of a shown quantity: size and RECORD_KEYS."""
        rows = []
        for series in self.series:
            for quantity, curve in series.curves.items():
                if quantity not in self.quantities:
                    continue
                for point in curve.points[curve.points["role"] == HELDOUT].itertuples():
                    rows.append(series.key | {"mixture": mixture_text(series.key), "quantity": quantity,
                                              "pretrain_tokens": point.pretrain_tokens, "observed": point.mean,
                                              "predicted": point.predicted, "rel_error": point.rel_error,
                                              "spearman": curve.spearman, "verdict": series.verdict})  # fmt: skip
        frame = pd.DataFrame(rows, columns=["size", *RECORD_KEYS])
        for column in ("finetune_tokens", "pretrain_tokens"):  # whole numbers
            frame[column] = frame[column].astype(float).round().astype("Int64")
        return frame

    def records(self) -> list[dict]:
        """The held-out points as JSON-ready dicts with exactly RECORD_KEYS (the mixture carries its series'
        setting in brackets where runs of one mixture differ in one, `mixture_text`)."""
        frame = self.heldout()[list(RECORD_KEYS)].astype(object)
        return frame.where(frame.notna(), None).to_dict(orient="records")

    def verdict_table(self) -> pd.DataFrame:
        """One row per series: its key, verdict, the judged metric's Spearman and law status, and the reason."""
        rows = []
        for s in self.series:
            bleu = s.curves.get(self.metric)
            rows.append(s.key | {"verdict": s.verdict, "spearman": bleu.spearman if bleu else np.nan,
                                 "law": bleu.status() if bleu else "-", "reason": s.reason})  # fmt: skip
        return pd.DataFrame(rows)

    def counts(self) -> dict[str, int]:
        found = [s.verdict for s in self.series]
        return {v: found.count(v) for v in (ALIGNED, MISALIGNED, UNDETERMINED) if v in found}

    def fit_from_text(self) -> str:
        return fit_start_text(self.fit_from)

    def series_label(self, series: Series) -> str:
        """The series in words and, with fit_from JUMP, where its laws' fit starts."""
        if self.fit_from != JUMP:
            return label(series.key)
        start = f"fitted from D = {tokens_text(series.fit_from)}, after its jump" if series.fit_from > 0 else (
            "no jump: fitted from the first checkpoint")  # fmt: skip
        return f"{label(series.key)} [{start}]"

    def summary(self) -> str:
        lines = [f"translation: per series, BLEU/bleu_noncopy/chrF/ROUGE-L/COMET f(D) = c (log(D/D0))^beta "
                 f"[= (log(A D^alpha))^beta] and cross-entropy L(D) = E + A / D^alpha against pretraining tokens D, "
                 f"fitted (Huber on logs) on all but the last {self.holdout} D values{self.fit_from_text()}; "
                 f"rel_error = |predicted - observed| / observed; tolerance "
                 f"{self.tolerance:.0%}; noise: {NOISE_Z:g} combined SDs; verdicts on "
                 f"{metric_label(self.metric)}"]  # fmt: skip
        for series in self.series:
            lines.append(f"{self.series_label(series)}: {series.verdict}: {series.reason}")
            lines += [f"  {curve.describe()}" for curve in series.curves.values()]
        table = self.heldout().to_string(index=False, float_format="{:.4g}".format, na_rep="-")
        counts = ", ".join(f"{verdict} {k}" for verdict, k in self.counts().items())
        lines += ["", "held-out points:", table, "", f"{len(self.series)} series: {counts}"]
        if not self.benefit.empty:
            name = metric_label(self.metric)
            lines += ["", f"benefit of pretraining (the best checkpoint's {name} gain over no pretraining, ± its SD):",
                      *benefit_trends(self.benefit, name)]  # fmt: skip
        return "\n".join(lines)


def analyze_translation(
    table: pd.DataFrame,
    quantities: Sequence[str] | None = None,
    holdout: int = HOLDOUT,
    tolerance: float = TOLERANCE,
    fit_from: float | str = 0.0,
) -> TranslationAnalysis:
    """Fit, predict and judge every series of the table's translation rows (module docstring).

    quantities: those to fit and show (default: every one of QUANTITIES with rows); the judged metric
    (`judged_metric`) and cross-entropy are fitted whenever present, for the verdict. fit_from: the laws are
    fitted to the checkpoints from this many pretraining tokens on (translation_fits.fit_quantity), or with
    JUMP from each series' jump_start."""
    if holdout < 1:
        raise AnalysisError(f"holdout {holdout}: at least 1 D_p value must be held out to judge the law")
    if not tolerance > 0:
        raise AnalysisError(f"tolerance {tolerance}: must be positive")
    if fit_from != JUMP and not (isinstance(fit_from, int | float) and fit_from >= 0):
        raise AnalysisError(f"fit_from {fit_from}: must be a pretraining token count, 0 or more, or {JUMP!r}")
    rows = translation_rows(table)
    present = [q for q in QUANTITIES if q in set(rows["metric"].dropna())]
    shown = tuple(quantities) if quantities else tuple(present)
    if not shown or (missing := [q for q in shown if q not in present]):
        which = ", ".join(missing) if shown else " or ".join(QUANTITIES)
        found = ", ".join(sorted(rows["metric"].dropna().unique()))
        raise AnalysisError(f"no translation rows with metric {which}; metrics: {found}")
    metric = judged_metric(shown)
    fitted = [q for q in dict.fromkeys([*shown, metric, CROSS_ENTROPY]) if q in present]
    points = series_points(rows)
    series = []
    for key, group in points.groupby(SERIES, dropna=False, sort=True):
        start = jump_start(group, metric, holdout) if fit_from == JUMP else float(fit_from)
        curves = fit_series(group, fitted, holdout, start)
        if curves:
            key = dict(zip(SERIES, key, strict=True))
            series.append(Series(key, curves, *judge(curves, tolerance, metric), fit_from=start))
    benefit = pretraining_benefit(points, metric)
    return TranslationAnalysis(tuple(series), benefit, shown, holdout, tolerance, metric, fit_from)


def judged_metric(quantities: Sequence[str]) -> str:
    """The metric the verdicts judge: the first log-law metric asked for (`--metric bleu_noncopy` judges
    bleu_noncopy), else BLEU."""
    return next((q for q in quantities if LAW_OF.get(q, LOG_LAW) == LOG_LAW), BLEU)
