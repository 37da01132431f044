"""The LR check (`testbed analyze lr`): does the ladder's LR rule sit at each rung's best peak LR?

A configuration is (dataset, arch, size, multiplier, batch_size); an LR sweep runs it at several peak LRs
(the row column `lr`, the LR actually used). Per configuration and LR, the final validation loss on `x`
is averaged over seeds. Per configuration with at least MIN_LRS distinct LRs:

- the best swept LR and its loss, and the interpolated optimum: the vertex of the parabola in log LR
  through the best point and its two neighbours (only when the best is not at an edge of the range);
- the rule's run: the one with lr_factor == `chosen` (`train.lr_factor` multiplies the ladder's LR; a study
  that trains at a fixed fraction of it, as overtrain_micro.yaml's docs_en runs at a quarter, checks that
  fraction: `analyze lr --chosen-factor 0.25`). Without an lr_factor column, or when several LRs carry the
  chosen factor (the LR was set directly with `train.lr`), the rule's run is unknown and only the best is
  reported;
- a verdict: `ok` (the rule's loss is within `tolerance`, relative, of the best, and the best is inside
  the swept range), `rule_off` (it is not), `edge` (the best LR is the smallest or largest swept: the
  optimum may lie outside, extend the sweep), `rule_unknown`, `too_few_lrs`.

Across sizes (per dataset, arch, multiplier, batch_size) the interpolated optima are fitted as a power of
the model size (`against`: params or params_nonembed), a line in log-log: lr* ~ size^b. The rule's own
exponent against the same axis comes from the rows: lr / lr_factor per size (the ladder's rule is in
d_model, which the rows do not carry).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.errors import AnalysisError
from analysis.select import OWN, final_losses

MIN_LRS = 3
CONFIG = ["dataset", "arch", "size", "multiplier", "batch_size"]
FAMILY = ["dataset", "arch", "multiplier", "batch_size"]  # a configuration without its size
SCALES = ("params", "params_nonembed")
SETTINGS = ["lr", "lr_factor", "batch_size", "params_nonembed"]  # per-run columns final_losses leaves out
OK, RULE_OFF, EDGE, RULE_UNKNOWN, TOO_FEW = "ok", "rule_off", "edge", "rule_unknown", "too_few_lrs"


def rounded_lrs(lrs: pd.Series) -> list[float]:
    """Peak LRs to 10 significant digits: the same LR computed two ways (rule x factor, or set directly)
    compares equal."""
    return [float(f"{v:.10g}") for v in lrs.to_numpy(dtype=float, na_value=np.nan)]


def lr_runs(table: pd.DataFrame, x: str = OWN) -> pd.DataFrame:
    """select.final_losses' runs with their peak LR, lr_factor, batch size and non-embedding params;
    runs without a peak LR are left out, LRs rounded to 10 significant digits (float noise)."""
    runs = final_losses(table, x)
    settings = table.groupby("run_id")[SETTINGS].first()
    runs = runs.join(settings, on="run_id")
    for column in SETTINGS:
        runs[column] = runs[column].to_numpy(dtype=float, na_value=np.nan)
    runs = runs[runs["lr"].notna()].copy()
    if runs.empty:
        raise AnalysisError("no run has a peak LR (column lr); the table predates it or is a published release")
    runs["lr"] = rounded_lrs(runs["lr"])
    runs["rule_lr"] = runs["lr"] / runs["lr_factor"]
    repeated = runs.duplicated([*CONFIG, "lr", "seed"])
    if repeated.any():
        row = runs.loc[repeated].iloc[0]
        ids = runs.loc[(runs[[*CONFIG, "lr"]] == row[[*CONFIG, "lr"]]).all(axis=1), "run_id"]
        raise AnalysisError(f"runs {', '.join(ids)} share configuration, LR and seed: they differ in something "
                            "else (another sweep axis?); select one setting first")  # fmt: skip
    return runs


def join_sweeps(table: pd.DataFrame, more: pd.DataFrame) -> pd.DataFrame:
    """`table` with the runs of `more` it lacks: a run already in it by id, or by configuration, peak LR and
    seed (the same run trained by two sweeps), is taken from `table` alone."""
    key = [*CONFIG, "lr", "seed"]

    def keys(frame: pd.DataFrame) -> pd.Series:
        settings = frame.groupby("run_id")[key].first()
        settings["lr"] = rounded_lrs(settings["lr"])
        return settings.astype(str).agg("|".join, axis=1)

    have = keys(table)
    theirs = keys(more)
    skip = set(have.index) | set(theirs.index[theirs.isin(set(have))])
    return pd.concat([table, more[~more["run_id"].isin(skip)]], ignore_index=True)


def lr_curves(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (configuration, LR): the seed-mean final loss, its seed-to-seed SD relative to it (NaN with
    one seed), seeds, lr_factor, the rule's LR, sizes."""
    grouped = runs.groupby([*CONFIG, "lr"], sort=True, dropna=False)
    curves = grouped.agg(
        loss=("loss", "mean"),
        loss_sd=("loss", "std"),
        seeds=("run_id", "count"),
        lr_factor=("lr_factor", "first"),
        rule_lr=("rule_lr", "median"),
        params=("params", "median"),
        params_nonembed=("params_nonembed", "median"),
    ).reset_index()
    curves["loss_sd"] = curves["loss_sd"] / curves["loss"]  # relative: comparable across rungs and corpora
    return curves


def log_parabola_vertex(lrs: np.ndarray, losses: np.ndarray) -> float:
    """The LR at the vertex of the parabola in log LR through three points whose middle one is lowest."""
    u = np.log(lrs)
    c2, c1, _ = np.polyfit(u, losses, 2)
    if not c2 > 0:
        return float("nan")
    return float(np.exp(-c1 / (2 * c2)))


def _rule(curve: pd.DataFrame, chosen: float) -> tuple[float, float, str]:
    """The rule's LR (lr_factor `chosen`), its loss (NaN when unknown) and a sentence on how its run was found."""
    if curve["lr_factor"].isna().all():
        return np.nan, np.nan, "no lr_factor in the rows: the rule's run is unknown"
    at_rule = curve[np.isclose(curve["lr_factor"], chosen)]
    if len(at_rule) > 1:
        return np.nan, np.nan, (f"{len(at_rule)} LRs carry lr_factor {chosen:g} (set directly with train.lr?): "
                                "the rule's run is unknown")  # fmt: skip
    if at_rule.empty:
        rule_lr = float(curve["rule_lr"].median()) * chosen
        return rule_lr, np.nan, f"the rule's LR {rule_lr:.4g} (lr_factor {chosen:g}) was not run"
    return float(at_rule["lr"].iloc[0]), float(at_rule["loss"].iloc[0]), ""


def _check(curve: pd.DataFrame, tolerance: float, chosen: float) -> dict:
    """The check of one configuration's curve (sorted by LR)."""
    lrs, losses = curve["lr"].to_numpy(), curve["loss"].to_numpy()
    n, best = len(lrs), int(np.argmin(losses))
    edge = "" if 0 < best < n - 1 else ("low" if best == 0 else "high")
    optimum = np.nan if edge else log_parabola_vertex(lrs[best - 1 : best + 2], losses[best - 1 : best + 2])
    rule_lr, rule_loss, rule_note = _rule(curve, chosen)
    gap = rule_loss / losses[best] - 1
    swept = f"{lrs.min():.4g}..{lrs.max():.4g}"
    low = edge == "low"
    edge_note = (f"the best LR {lrs[best]:.4g} is the {'smallest' if low else 'largest'} swept ({swept}): "
                 f"the optimum may lie {'below' if low else 'above'} the range") if edge else ""  # fmt: skip
    if n < MIN_LRS:
        verdict, note = TOO_FEW, f"only {n} LR(s) swept; at least {MIN_LRS} are needed to judge"
    elif np.isfinite(gap) and gap > tolerance:
        verdict = RULE_OFF
        note = "; ".join(filter(None, [f"the rule's loss is {gap:.2%} above the best's (tolerance {tolerance:.2%})",
                                       edge_note]))  # fmt: skip
    elif edge:
        within = f"the rule's loss is within {gap:.2%} of the best swept" if np.isfinite(gap) else rule_note
        verdict, note = EDGE, "; ".join(filter(None, [edge_note, within]))
    elif not np.isfinite(gap):
        verdict, note = RULE_UNKNOWN, f"best LR inside the range; {rule_note}"
    else:
        verdict, note = OK, f"the rule's loss is within {gap:.2%} of the best's (tolerance {tolerance:.2%})"
    return {"lrs": n, "best_lr": float(lrs[best]), "best_loss": float(losses[best]), "optimum": optimum,
            "rule_lr": rule_lr, "rule_loss": rule_loss, "gap": gap, "verdict": verdict, "note": note}  # fmt: skip


def _exponent(scale: np.ndarray, lr: np.ndarray) -> float:
    """b of lr ~ scale^b, least squares in log-log; NaN with fewer than two distinct sizes."""
    if len(np.unique(scale)) < 2:
        return float("nan")
    return float(np.polyfit(np.log(scale), np.log(lr), 1)[0])


def _scaling(checks: pd.DataFrame, curves: pd.DataFrame, against: str) -> pd.DataFrame:
    """Per family (configuration without size): the fitted exponent of the optimum LR and the rule's."""
    rows = []
    by_family = (frame.groupby(FAMILY, sort=True, dropna=False) for frame in (checks, curves))
    families = zip(*by_family, strict=True)  # the same configurations: the same families in the same order
    for (key, family), (_, sizes) in families:
        usable = family[np.isfinite(family["optimum"])]
        left = [f"{r.size} ({r.verdict})" for r in family.itertuples() if not np.isfinite(r.optimum)]
        rule = sizes.groupby("size")[["rule_lr", against]].median().dropna()
        rows.append(dict(zip(FAMILY, key, strict=True)) | {
            "against": against,
            "sizes": ", ".join(usable["size"]),
            "exponent": _exponent(usable[against].to_numpy(), usable["optimum"].to_numpy()),
            "rule_exponent": _exponent(rule[against].to_numpy(), rule["rule_lr"].to_numpy()),
            "rule_sizes": len(rule),
            "left_out": ", ".join(left),
        })  # fmt: skip
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class LRSweep:
    """The LR check: per-configuration verdicts, the loss at every LR, and the exponents across sizes."""

    x: str
    tolerance: float
    against: str
    chosen: float  # the lr_factor whose run is the rule's
    checks: pd.DataFrame  # one row per configuration: CONFIG, params, then _check's keys
    curves: pd.DataFrame  # one row per (configuration, LR)
    scaling: pd.DataFrame  # one row per family: exponent of the optimum LR and the rule's against `against`
    unswept: tuple[str, ...] = ()  # configurations run at one LR only, left out

    def summary(self) -> str:
        lines = [f"LR check: final loss on {self.x} per peak LR (seed means); the rule's run has lr_factor "
                 f"{self.chosen:g}; tolerance {self.tolerance:.2%} of the best loss"]  # fmt: skip
        shown = self.checks.drop(columns=["note"]).rename(columns={"multiplier": "M", "batch_size": "bs"})
        lines += ["", shown.to_string(index=False, float_format="{:.4g}".format, na_rep="-"), ""]
        lines += [f"{_label(r)}: {r.verdict}: {r.note}" for r in self.checks.itertuples()]
        if self.unswept:
            lines.append(f"left out, run at one LR only: {', '.join(self.unswept)}")
        curves = self.curves.drop(columns=["arch", "rule_lr", "params", "params_nonembed"])
        table = curves.to_string(index=False, float_format="{:.4g}".format, na_rep="-")
        lines += ["", "final loss per LR (loss_sd: seed-to-seed SD over the seed mean):", table]
        lines += ["", f"best LR across sizes, lr* ~ {self.against}^b (interpolated optima, least squares in log-log):"]
        lines += [f"  {_family_label(r)}: {_exponents(r)}" for r in self.scaling.itertuples()]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        checks = _records(self.checks)
        for record, (_, curve) in zip(checks, _by_config(self.curves), strict=True):
            record["losses"] = _records(curve[["lr", "loss", "loss_sd", "seeds", "lr_factor"]])
        return {"x": self.x, "tolerance": self.tolerance, "against": self.against, "chosen": self.chosen,
                "checks": checks, "scaling": _records(self.scaling), "unswept": list(self.unswept)}  # fmt: skip


def _by_config(curves: pd.DataFrame):
    return curves.groupby(CONFIG, sort=True, dropna=False)


def _records(frame: pd.DataFrame) -> list[dict]:
    return json.loads(frame.to_json(orient="records", double_precision=10))


def _label(row) -> str:
    return f"{row.dataset} {row.arch} {row.size} M{row.multiplier:g} bs{row.batch_size:g}"


def _family_label(row) -> str:
    return f"{row.dataset} {row.arch} M{row.multiplier:g} bs{row.batch_size:g}"


def _exponents(row) -> str:
    n = len(row.sizes.split(", ")) if row.sizes else 0
    if np.isfinite(row.exponent):
        fitted = f"b = {row.exponent:.3g} from {n} sizes ({row.sizes})" + (", exact through 2 points" if n == 2 else "")
    else:
        fitted = f"not fitted: {n} size(s) with an interpolated optimum, 2 needed"
    if row.left_out:
        fitted += f"; left out (no interior optimum): {row.left_out}"
    rule = (f"{row.rule_exponent:.3g}" if np.isfinite(row.rule_exponent)
            else f"unknown (the rule's LR, lr / lr_factor, is known for {row.rule_sizes} size(s))")  # fmt: skip
    return f"{fitted}; the rule's b = {rule}"


def lr_sweep(
    table: pd.DataFrame, x: str = OWN, tolerance: float = 0.01, against: str = "params", chosen: float = 1.0
) -> LRSweep:
    """The LR check (module docstring) on a results table; `chosen`: the lr_factor the study trains at."""
    if against not in SCALES:
        raise AnalysisError(f"against must be one of {', '.join(SCALES)}, not {against!r}")
    if not tolerance >= 0:
        raise AnalysisError(f"tolerance must be a non-negative fraction, not {tolerance}")
    if not chosen > 0:
        raise AnalysisError(f"chosen lr_factor must be positive, not {chosen}")
    curves = lr_curves(lr_runs(table, x))
    n_lrs = _by_config(curves)["lr"].transform("size")
    unswept = tuple(_label(r) for r in curves[n_lrs < 2].itertuples())
    curves = curves[n_lrs >= 2].reset_index(drop=True)
    if curves.empty:
        raise AnalysisError(f"no LR sweep: each of the {len(unswept)} configurations ran at one peak LR")
    checks = []
    for key, curve in _by_config(curves):
        sizes = {"params": curve["params"].median(), "params_nonembed": curve["params_nonembed"].median()}
        checks.append(dict(zip(CONFIG, key, strict=True)) | sizes | _check(curve.sort_values("lr"), tolerance, chosen))
    frame = pd.DataFrame(checks)
    return LRSweep(x, tolerance, against, chosen, frame, curves, _scaling(frame, curves, against), unswept)


def best_lr_runs(table: pd.DataFrame, x: str = OWN) -> pd.DataFrame:
    """The table's rows of the runs at each configuration's best LR (seed-mean final loss on `x`), with the
    rows of runs that have no peak LR; a table without LR sweeps comes back whole."""
    runs = lr_runs(table, x)
    curves = lr_curves(runs)
    best = curves.loc[curves.groupby(CONFIG, sort=False, dropna=False)["loss"].idxmin(), [*CONFIG, "lr"]]
    keep = runs.merge(best, on=[*CONFIG, "lr"])["run_id"]
    dropped = set(runs["run_id"]) - set(keep)
    return table[~table["run_id"].isin(dropped)]
