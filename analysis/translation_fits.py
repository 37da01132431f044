"""The series of translation rows and the laws fitted to them (analysis.translation says what they are for).

A series is one (arch, size, task, mixture, alignment, setting, finetune_tokens); its points are the
pretraining checkpoints' token counts D_p (`tokens`), each the mean over its repeats (finetune seeds, and
pretraining seeds where several), with their SD and count. The setting names the run settings (SPLIT_BY)
in which the runs of one such key differ, e.g. `final_lr_ratio 0.01`, and is empty where they do not: a
cosine run and a constant-LR run of one mixture are two series, never one series' repeats. The
no-pretraining baseline (tokens 0) is kept as a point of role `baseline`, never fitted (log 0). Per quantity:
- BLEU, BLEU on the words not copied from the source (bleu_noncopy, bleu2_noncopy), chrF, ROUGE-L (and
  COMET): Isik's log law f(D) = (log(A D^alpha))^beta, fitted as c (log(D/D0))^beta (`log_law`);
- cross_entropy: the power law L(D) = E + A / D^alpha (`power_law`);
fitted by Huber on log residuals (fitting.HUBER_LOG) on all but the last `holdout` D_p values, which
the fit then predicts (rel_error = |predicted - observed| / observed). With `fit_from`, checkpoints below it
(role `early`) are shown and predicted but neither fitted nor held out: a law for the regime after a skill
has emerged (a breakthrough in BLEU), stated as such. A fit that ends on an edge of its
law's box says so (`QuantityFit.warnings`) and does not count as a law that holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from analysis.diagnostics import edge_warnings
from analysis.errors import AnalysisError
from analysis.extrapolate import relative_error
from analysis.fitting import HUBER_LOG, TOO_FEW_POINTS, Fit, failed, fit_law
from analysis.laws import get_law
from analysis.schema import RUN_SETTINGS, settings_by_run

BLEU, NONCOPY, NONCOPY2, CROSS_ENTROPY = "bleu", "bleu_noncopy", "bleu2_noncopy", "cross_entropy"
# bleu_noncopy (bleu2_noncopy): BLEU (up to bigrams) with every word of the source dropped from hypothesis and
# reference (testbed.translation.metrics)
QUANTITIES = (BLEU, NONCOPY, NONCOPY2, "chrf", "rougeL", "comet", CROSS_ENTROPY)  # the metrics a law is fitted to
GAIN = "bleu_gain"


def gain_metric(metric: str) -> str:
    """The rows of a metric's paired-bootstrap gain over the baseline: bleu -> bleu_gain, bleu_noncopy ->
    bleu_noncopy_gain."""
    return f"{metric}_gain"


LOG_LAW = "log_law"
LAW_OF = {CROSS_ENTROPY: "power_law"}  # every other quantity: LOG_LAW
SERIES = ["arch", "size", "task", "mixture", "alignment", "setting", "finetune_tokens"]
# The run settings that split a series where its runs differ in them; the pretraining seed is not one of them:
# runs that differ in it alone are repeats.
SPLIT_BY = ("multiplier", *RUN_SETTINGS)
REPEAT = ["run_id", "task", "metric", "step", "finetune_tokens", "finetune_seed"]  # one measurement
MIN_FIT_POINTS = 3
FIT, HELDOUT, BASELINE, EARLY = "fit", "heldout", "baseline", "early"  # a point's role


def translation_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The translation rows, one per measurement (a repeated row keeps its last), with the columns renamed
    to what they mean here: task, mixture, finetune_tokens, pretrain_tokens (0 for the baseline).

    finetune_seed null (tables older than the column) is seed 0. Raises AnalysisError without
    translation rows, or when a checkpoint's rows lack their pretraining tokens."""
    rows = table[(table["kind"] == "translation").fillna(False)]
    if rows.empty:
        raise AnalysisError("no translation rows (kind 'translation'): nothing to analyse (`testbed finetune` "
                            "writes them)")  # fmt: skip
    rows = rows.rename(columns={"name": "task", "dataset": "mixture", "finetune_size": "finetune_tokens",
                                "tokens": "pretrain_tokens"})  # fmt: skip
    rows = rows.assign(finetune_seed=rows["finetune_seed"].fillna(0))
    baseline = (rows["step"] == 0).fillna(False) & rows["pretrain_tokens"].isna()
    rows = rows.assign(pretrain_tokens=rows["pretrain_tokens"].mask(baseline, 0))
    if rows["pretrain_tokens"].isna().any():
        bad = rows[rows["pretrain_tokens"].isna()].iloc[0]
        raise AnalysisError(f"{rows['pretrain_tokens'].isna().sum()} translation rows have no pretraining tokens "
                            f"(column tokens), e.g. run {bad['run_id']} step {bad['step']}")  # fmt: skip
    rows = rows.drop_duplicates(REPEAT, keep="last")
    return rows.assign(setting=run_settings(rows))


def run_settings(rows: pd.DataFrame) -> pd.Series:
    """Per row, the SPLIT_BY settings (`name value, ...`) in which the runs of its series key differ; "" where
    they do not. Null is unknown (a row written before its column existed), not a value of its own: a setting
    splits the runs only where they hold two known values (those with null then form a series of their own)."""
    key = [c for c in SERIES if c not in ("setting", "finetune_tokens")]
    settings = settings_by_run(rows, SPLIT_BY)
    runs = rows[[*key, "run_id"]].drop_duplicates("run_id").join(settings, on="run_id").reset_index(drop=True)
    differ = runs.groupby(key, dropna=False)[list(settings.columns)].transform("nunique") > 1  # nulls left out
    text = {
        run: ", ".join(f"{c} {_setting_text(runs.at[i, c])}" for c in settings.columns if differ.at[i, c])
        for i, run in runs["run_id"].items()
    }
    return rows["run_id"].map(text).fillna("").astype(str)


def _setting_text(value) -> str:
    return "null" if pd.isna(value) else f"{value:g}" if isinstance(value, float) else str(value)


def series_points(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (series, pretrain_tokens, metric): the mean over repeats, their SD and count n, the number
    of pretraining runs among them, the rows' mean standard error, the largest p_value (bleu_gain rows), and
    `uncertainty`, the SD of the mean: the largest of the repeats' SD / sqrt(n) (n >= 2), the SD of the runs'
    own means / sqrt(runs) (runs >= 2: finetuning seeds of one pretrained run are not independent draws of
    the pretraining) and the standard error (NaN when none is known)."""
    columns = ("value", "stderr", "p_value", "alignment", "pretrain_tokens", "finetune_tokens")
    numeric = {c: rows[c].to_numpy(float, na_value=np.nan) for c in columns}
    rows = rows.assign(**numeric)
    key = [*SERIES, "pretrain_tokens", "metric"]
    points = rows.groupby(key, dropna=False, sort=True).agg(
        mean=("value", "mean"), sd=("value", "std"), n=("value", "count"), stderr=("stderr", "mean"),
        p_value=("p_value", "max")).reset_index()  # fmt: skip
    run_means = rows.groupby([*key, "run_id"], dropna=False, sort=True)["value"].mean().rename("run_mean")
    between = run_means.reset_index().groupby(key, dropna=False, sort=True)["run_mean"].agg(["std", "count"])
    points = points.merge(between.rename(columns={"std": "run_sd", "count": "runs"}).reset_index(), on=key)
    nested = (points["run_sd"] / np.sqrt(points["runs"])).where(points["runs"] >= 2)
    points["uncertainty"] = np.fmax(np.fmax(points["sd"] / np.sqrt(points["n"]), nested), points["stderr"])
    return points.drop(columns="run_sd")


@dataclass(frozen=True)
class QuantityFit:
    """One quantity of one series: its law's fit on the early D_p values, and every point with its role
    (fit, heldout, baseline), observed mean, prediction and relative error."""

    quantity: str
    fit: Fit
    points: pd.DataFrame  # pretrain_tokens, mean, sd, n, runs, stderr, p_value, uncertainty, role, predicted, rel_error
    spearman: float  # of the mean against D_p over every pretraining checkpoint (the baseline left out)
    warnings: tuple[str, ...] = ()

    @property
    def holds(self) -> bool:
        """Whether the fit is one to believe: made, and inside its law's box."""
        return self.fit.ok and not self.warnings

    @property
    def pretrained(self) -> pd.DataFrame:
        """The pretraining checkpoints' points, by ascending D_p."""
        return self.points[self.points["role"] != BASELINE]

    @property
    def baseline(self) -> pd.Series | None:
        rows = self.points[self.points["role"] == BASELINE]
        return None if rows.empty else rows.iloc[0]

    def status(self) -> str:
        """ok, the failure status, or `edge` (the fit ended on a bound of its box)."""
        return self.fit.status if not self.fit.ok else ("edge" if self.warnings else "ok")

    def max_heldout_error(self) -> float:
        errors = self.points.loc[self.points["role"] == HELDOUT, "rel_error"]
        return float(errors.max()) if errors.notna().any() else float("nan")

    def describe(self) -> str:
        """One line: the fit (or why none), the Spearman rho, the warnings."""
        if self.fit.ok:
            law, params = self.fit.law, self.fit.params
            values = ", ".join(f"{k}={v:.4g}" for k, v in params.items())
            if law.derived is not None:  # the log law: Isik's alpha and ln A too
                values += "; " + ", ".join(f"{k}={v:.4g}" for k, v in law.derived(params).items())
            text = f"{law.name} on {self.fit.n_points} points ({values}), residual {self.fit.residual:.3g}"
        else:
            text = f"{self.fit.law.name} fit failed ({self.fit.status}): {self.fit.reason}"
        return "; ".join([f"{self.quantity}: {text}", f"Spearman {self.spearman:.2f}", *self.warnings])


def fit_quantity(quantity: str, points: pd.DataFrame, holdout: int, fit_from: float = 0.0) -> QuantityFit:
    """Fit the quantity's law (LAW_OF) to its points from D_p >= `fit_from` but the last `holdout` pretraining
    D_p values and predict every pretraining point; at least MIN_FIT_POINTS must remain to fit."""
    points = points.sort_values("pretrain_tokens").reset_index(drop=True)
    pretrained = (points["pretrain_tokens"] > 0).to_numpy()
    early = pretrained & (points["pretrain_tokens"] < fit_from).to_numpy()
    used_ones = pretrained & ~early
    n_fit = int(used_ones.sum()) - holdout
    order = np.cumsum(used_ones) - 1  # 0, 1, ... over the checkpoints the law is fitted to or judged on
    roles = np.where(order < n_fit, FIT, HELDOUT)
    points["role"] = np.where(~pretrained, BASELINE, np.where(early, EARLY, roles))
    law = get_law(LAW_OF.get(quantity, LOG_LAW))
    if n_fit < MIN_FIT_POINTS:
        since = f" from D_p {fit_from:.3g}" if fit_from > 0 else ""
        fit = failed(law, max(n_fit, 0), TOO_FEW_POINTS, f"{used_ones.sum()} pretraining token counts{since}, "
                     f"{holdout} held out: {max(n_fit, 0)} left to fit, at least {MIN_FIT_POINTS} needed",
                     HUBER_LOG)  # fmt: skip
    else:
        used = points[points["role"] == FIT]
        fit = fit_law(law, used["pretrain_tokens"].to_numpy(), used["mean"].to_numpy(), HUBER_LOG)
    points["predicted"] = np.nan
    if fit.ok:
        points.loc[pretrained, "predicted"] = fit.predict(points.loc[pretrained, "pretrain_tokens"].to_numpy())
    points["rel_error"] = relative_error(points["predicted"], points["mean"])
    ranked = points[pretrained]
    return QuantityFit(quantity, fit, points, _spearman(ranked["pretrain_tokens"], ranked["mean"]),
                       tuple(edge_warnings(fit)))  # fmt: skip


def _spearman(x: pd.Series, y: pd.Series) -> float:
    """Spearman's rho; NaN with fewer than 2 points or a constant series."""
    if len(x) < 2 or np.ptp(y) == 0 or np.ptp(x) == 0:
        return float("nan")
    return float(spearmanr(x, y).statistic)


def fit_series(
    points: pd.DataFrame, quantities: Sequence[str], holdout: int, fit_from: float = 0.0
) -> dict[str, QuantityFit]:
    """Every quantity of one series' points that has rows, fitted."""
    present = set(points["metric"])
    return {q: fit_quantity(q, points[points["metric"] == q], holdout, fit_from) for q in quantities if q in present}
