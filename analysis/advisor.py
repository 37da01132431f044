"""Which run next: the candidate runs that shrink the prediction interval at a target most per FLOP (docs/planning.md).

Inputs, for one training dataset: `points`, the runs already done (run_id, params, multiplier, tokens, flops,
loss and, where the table has tasks, error); `candidates`, runs not done yet with their cost (run_id, params,
multiplier, tokens, flops); `targets`, the configurations whose loss (and chained error) is to be predicted.

The criterion. U(S) = the mean over targets and quantities (loss; error where there is one) of ln(width of
the 95 % interval) when the law is fitted on the done runs plus the added set S. Greedy: each step adds the
affordable candidate with the largest gain per FLOP, (U(S) - U(S + c)) / flops(c); it stops after k runs,
when no candidate fits the budget, or when none shrinks U.

How a run is valued before it is run (the imputation). Its loss is imputed from the fit to the done runs:
the law's prediction plus or minus s, the fit's residual SD (a new run scatters about the law as the done
ones do). Two antithetic scenarios: the added runs get residuals +s, -s, +s, ... in the order added, and
their negation; U is averaged over the two. Its error likewise: Err(L) at the imputed loss plus or minus
Err's residual SD. What this assumes: the law and its current parameters are right. The criterion values a
run for pinning the law down where the targets need it (leverage, spread of N and M), never for revealing
that the law is wrong there; a fit on few runs imputes from shaky parameters. Re-advise after each run
finishes (the backtest does: analysis.advise_backtest).

The widths. Bayesian bootstrap refits (Rubin 1981): `draws` rows of Exp(1) weights over the points, each
refitted exactly by the separable least-squares profile (analysis.resample.separable_refits), the error law
chained replicate by replicate as analysis.resample.chain does. The weights of the done runs and of the
i-th added run are the same for every candidate (common random numbers), so candidates are compared on the
same draws. A width is the replicates' 10-90 % range times 1.96 / 1.2816 (a normal's 95 % width), steadier
than the 2.5-97.5 % range with few draws. Positive weights keep every point in every replicate, so a fit
on five runs does not lose replicates as the resampling bootstrap does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.errors import AnalysisError
from analysis.extrapolate import ERROR_LAW, ERROR_METHOD, loss_law, run_inputs
from analysis.fitting import Fit, fit_law
from analysis.resample import separable_refits

LOSS, ERR = "loss", "err"
PER_FLOP, GAIN = "per FLOP", "narrowing alone"  # the two greedy rules
Z95, Z80 = 1.959963984540054, 1.2815515655446004
CANDIDATE_COLUMNS = ("run_id", "params", "multiplier", "tokens", "flops")


@dataclass(frozen=True)
class Target:
    """A configuration to predict: its label, N and M = D / N."""

    label: str
    params: float
    multiplier: float

    def row(self) -> dict:
        tokens = self.params * self.multiplier
        return {
            "params": self.params,
            "multiplier": self.multiplier,
            "tokens": tokens,
            "flops": 6 * self.params * tokens,
        }


@dataclass(frozen=True)
class Step:
    """One added run and what it is expected to do."""

    run_id: str
    params: float
    multiplier: float
    flops: float
    total_flops: float  # of the runs added so far, this one included
    widths: dict[str, float]  # "<target> <quantity>" -> expected 95 % width after this run
    gain: float  # the drop of U (mean log width)
    reason: str

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class Advice:
    """The greedy proposal: the widths now, then one Step per added run."""

    law: str
    quantities: tuple[str, ...]
    targets: tuple[Target, ...]
    predictions: dict[str, float]  # "<target> <quantity>" -> the current fit's prediction
    widths: dict[str, float]  # expected 95 % widths with the done runs alone
    steps: tuple[Step, ...]
    stopped: str  # why the greedy stopped
    n_points: int
    n_candidates: int
    draws: int
    notes: tuple[str, ...] = field(default=())
    rule: str = "per FLOP"  # which greedy the steps follow: PER_FLOP, or GAIN (the better plan under a budget)

    def summary(self) -> str:
        keys = list(self.widths)
        lines = [
            f"law {self.law} on {self.n_points} done runs; {self.n_candidates} candidates; criterion: mean log width "
            f"of the 95 % interval ({self.draws} Bayesian-bootstrap draws, imputed losses: docs/planning.md)",
            "now: " + ", ".join(f"{k} {self.predictions[k]:.4g} +- {self.widths[k] / 2:.3g}" for k in keys),
        ]
        for i, step in enumerate(self.steps, 1):
            widths = ", ".join(f"{step.widths[k]:.3g}" for k in keys)
            lines.append(f"{i:>2}. {step.reason}")
            lines.append(f"    widths after ({', '.join(keys)}): {widths}; {step.total_flops:.3g} FLOPs so far")
        lines.append(f"stopped: {self.stopped}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "law": self.law,
            "quantities": list(self.quantities),
            "targets": [t.__dict__ for t in self.targets],
            "predictions": self.predictions,
            "widths": self.widths,
            "steps": [s.to_dict() for s in self.steps],
            "stopped": self.stopped,
            "n_points": self.n_points,
            "n_candidates": self.n_candidates,
            "draws": self.draws,
            "notes": list(self.notes),
            "rule": self.rule,
        }


def interval_width(replicates: np.ndarray) -> np.ndarray:
    """The 95 % width of each column, from the replicates' 10-90 % range (normal ratio); NaN with < 3 rows."""
    replicates = replicates[np.isfinite(replicates).all(axis=1)]
    if len(replicates) < 3:
        return np.full(replicates.shape[1:], np.nan)
    low, high = np.quantile(replicates, (0.1, 0.9), axis=0)
    return (high - low) * Z95 / Z80


class _Criterion:
    """U(S) for sets S of candidate indices, on fixed weight draws (module docstring)."""

    def __init__(self, law_name: str, points: pd.DataFrame, candidates: pd.DataFrame, targets: Sequence[Target],
                 draws: int, seed: int, error_points: pd.DataFrame | None):  # fmt: skip
        self.law = loss_law(law_name)
        if self.law.basis is None or len(self.law.nonlinear) > 1:
            raise AnalysisError(f"law {law_name}: the advisor needs a separable law (one nonlinear parameter)")
        self.x = run_inputs(self.law, points)
        self.y = points["loss"].to_numpy(dtype=float)
        self.cx = run_inputs(self.law, candidates)
        self.tx = run_inputs(self.law, pd.DataFrame([t.row() for t in targets]))
        self.loss = fit_law(self.law, self.x, self.y)
        if not self.loss.ok:
            raise AnalysisError(f"the loss law cannot be fitted on the {len(points)} done runs: {self.loss.reason}")
        self.s_loss = _finite_or_zero(self.loss.residual)
        self.error: Fit | None = None
        if "error" in points and points["error"].notna().all():
            pairs = points[["loss", "error"]]
            if error_points is not None:
                pairs = pd.concat([pairs, error_points[["loss", "error"]]], ignore_index=True)
            self.el, self.ey = pairs["loss"].to_numpy(dtype=float), pairs["error"].to_numpy(dtype=float)
            error = fit_law(ERROR_LAW, self.el, self.ey, ERROR_METHOD)
            self.error = error if error.ok else None
            self.s_error = _finite_or_zero(error.residual) if error.ok else 0.0
        rng = np.random.default_rng(seed)
        room = len(candidates) + 1
        self.w_loss = rng.exponential(size=(draws, len(self.y) + room))
        self.w_error = rng.exponential(size=(draws, (len(self.ey) if self.error else 0) + room))
        self.quantities = (LOSS, ERR) if self.error else (LOSS,)

    def predictions(self) -> np.ndarray:
        """The current fits' predictions at the targets, (quantities, targets)."""
        loss = self.loss.predict(self.tx)
        rows = [loss] + ([self.error.predict(loss[None])] if self.error else [])
        return np.array(rows)

    def widths(self, added: Sequence[int]) -> np.ndarray:
        """Expected 95 % widths (quantities, targets) with the candidates `added` imputed: the geometric mean
        over the two antithetic scenarios."""
        logs = [np.log(self._scenario(list(added), sign)) for sign in (1.0, -1.0)]
        return np.exp(np.mean(logs, axis=0))

    def _scenario(self, added: list[int], sign: float) -> np.ndarray:
        x_new = self.cx[:, added]
        signs = sign * (-1.0) ** np.arange(len(added))
        l_new = self.loss.predict(x_new) + signs * self.s_loss if added else np.empty(0)
        x, y = np.hstack([self.x, x_new]), np.concatenate([self.y, l_new])
        with np.errstate(all="ignore"):
            params = separable_refits(self.loss, x, y, self.w_loss[:, : y.size])
            loss = self.law.function(self.tx, *params.T[:, :, None])  # (replicates, targets)
        rows = [interval_width(loss)]
        if self.error is not None:
            e_new = self.error.predict(l_new[None]) + signs * self.s_error if added else np.empty(0)
            el, ey = np.concatenate([self.el, l_new]), np.concatenate([self.ey, e_new])
            with np.errstate(all="ignore"):
                eparams = separable_refits(self.error, el[None], ey, self.w_error[:, : ey.size])
                m = min(len(eparams), len(loss))
                chained = ERROR_LAW.function(loss[None, :m], *eparams[:m].T[:, :, None])
            rows.append(interval_width(chained))
        return np.maximum(np.array(rows), 1e-300)


def _finite_or_zero(value: float) -> float:
    return float(value) if math.isfinite(value) else 0.0


def _check(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    if missing := [c for c in columns if c not in frame]:
        raise AnalysisError(f"{what} lack column(s) {', '.join(missing)}")
    bad = frame[list(columns[1:])].isna().any(axis=1) if len(frame) else pd.Series(dtype=bool)
    if bad.any():
        raise AnalysisError(f"{what}: run {frame.loc[bad, columns[0]].iloc[0]} has no {', '.join(columns[1:])}")


def advise(
    points: pd.DataFrame,
    candidates: pd.DataFrame,
    targets: Sequence[Target],
    k: int | None = None,
    budget: float | None = None,
    draws: int = 64,
    seed: int = 0,
    law: str = "overtrain",
    error_points: pd.DataFrame | None = None,
) -> Advice:
    """Greedily choose up to k candidates (and at most `budget` FLOPs) by gain in certainty per FLOP
    (module docstring). error_points: extra (loss, error) pairs the error law is fitted on besides the points'."""
    _check(points, ("run_id", *CANDIDATE_COLUMNS[1:], "loss"), "the done runs")
    _check(candidates, CANDIDATE_COLUMNS, "the candidate runs")
    if not targets:
        raise AnalysisError("no target to predict")
    if k is not None and k < 1:
        raise AnalysisError(f"k={k}: at least one run must be proposed")
    if (candidates["flops"] <= 0).any():
        raise AnalysisError(f"candidate {candidates.loc[candidates['flops'] <= 0, 'run_id'].iloc[0]}: FLOPs <= 0")
    candidates = candidates.reset_index(drop=True)
    criterion = _Criterion(law, points.reset_index(drop=True), candidates, targets, draws, seed, error_points)
    keys = [f"{t.label} {q}" for q in criterion.quantities for t in targets]
    flat = lambda a: dict(zip(keys, map(float, np.ravel(a)), strict=True))  # noqa: E731
    now = criterion.widths([])
    rules = (PER_FLOP, GAIN) if budget is not None else (PER_FLOP,)
    plans = {rule: _greedy(criterion, candidates, points, k, budget, rule, now, flat) for rule in rules}
    rule = min(rules, key=lambda r: (plans[r][2], rules.index(r)))  # the lower final U; ties: per FLOP
    steps, stopped, _ = plans[rule]
    notes = []
    if len(rules) > 1:
        spent = {r: sum(s.flops for s in plans[r][0]) for r in rules}
        notes.append(f"within the budget, the greedy by narrowing per FLOP ends at mean log width "
                     f"{plans[PER_FLOP][2]:.4g} ({spent[PER_FLOP]:.3g} FLOPs), the greedy by narrowing alone at "
                     f"{plans[GAIN][2]:.4g} ({spent[GAIN]:.3g} FLOPs): proposed the {rule} one")  # fmt: skip
    if criterion.error is None and "error" in points and points["error"].notna().any():
        notes.append("the error law could not be fitted on the done runs: the criterion uses the loss alone")
    return Advice(criterion.law.name, criterion.quantities, tuple(targets), flat(criterion.predictions()), flat(now),
                  tuple(steps), stopped, len(points), len(candidates), draws, tuple(notes), rule)  # fmt: skip


def _greedy(criterion: _Criterion, candidates: pd.DataFrame, points: pd.DataFrame, k: int | None,
            budget: float | None, rule: str, now: np.ndarray, flat) -> tuple[list[Step], str, float]:  # fmt: skip
    """Add candidates one at a time by `rule` (gain per FLOP, or gain alone) until k runs, the budget, or no gain;
    the steps, why it stopped, and the final U."""
    added: list[int] = []
    steps: list[Step] = []
    spent, stopped = 0.0, f"{k} runs proposed" if k else "no run left"
    current = float(np.mean(np.log(now)))
    while k is None or len(steps) < k:
        left = [i for i in range(len(candidates)) if i not in added]
        affordable = [i for i in left if budget is None or spent + candidates.at[i, "flops"] <= budget * (1 + 1e-9)]
        if not affordable:
            left_over = (budget or 0.0) - spent  # candidates left but none affordable: there is a budget
            stopped = (
                f"none of the {len(left)} runs left fits the {left_over:.3g} FLOPs left" if left else "no run left"
            )
            break
        widths = {i: criterion.widths([*added, i]) for i in affordable}
        gains = {i: current - float(np.mean(np.log(w))) for i, w in widths.items()}
        cost = (lambda i: candidates.at[i, "flops"]) if rule == PER_FLOP else (lambda i: 1.0)
        best = max(affordable, key=lambda i: gains[i] / cost(i))
        if not gains[best] > 0:
            stopped = f"none of the {len(affordable)} affordable candidates shrinks the intervals"
            break
        spent += float(candidates.at[best, "flops"])
        reason = _reason(candidates, best, points, added, gains, len(affordable), rule)
        row = candidates.loc[best]
        steps.append(Step(str(row["run_id"]), float(row["params"]), float(row["multiplier"]), float(row["flops"]),
                          spent, flat(widths[best]), gains[best], reason))  # fmt: skip
        added.append(best)
        current -= gains[best]
    return steps, stopped, current


def _reason(candidates: pd.DataFrame, best: int, points: pd.DataFrame, added: list[int], gains: dict, n: int,
            rule: str) -> str:  # fmt: skip
    """One line: what the run is, what it buys, and what it adds to the fit set."""
    row = candidates.loc[best]
    fitted = pd.concat(
        [points[["params", "multiplier", "flops"]], candidates.loc[added, ["params", "multiplier", "flops"]]]
    )
    same = np.isclose(fitted["params"], row["params"], rtol=1e-6)
    if (same & np.isclose(fitted["multiplier"], row["multiplier"])).any():
        novelty = "repeats a configuration already in the fit (averages its noise)"
    elif row["params"] > fitted["params"].max() * (1 + 1e-6):
        novelty = f"the largest model yet ({row['params'] / fitted['params'].max():.3g}x the largest N)"
    elif row["flops"] > fitted["flops"].max():
        novelty = f"the most compute yet ({row['flops'] / fitted['flops'].max():.3g}x)"
    elif not same.any():
        novelty = "a model size the fit lacks"
    elif row["multiplier"] > fitted.loc[same, "multiplier"].max():
        novelty = f"over-trains this size further (M {fitted.loc[same, 'multiplier'].max():g} -> {row['multiplier']:g})"
    else:
        novelty = f"a new multiplier for this size (M = {row['multiplier']:g})"
    shrink = 100 * (1 - math.exp(-gains[best]))
    if rule == PER_FLOP:
        rank = sorted(gains.values(), reverse=True).index(gains[best]) + 1
        why = f"the most per FLOP of {n} affordable (#{rank} by narrowing alone)"
    else:
        why = f"the most narrowing of {n} affordable (within the budget, this plan narrows more than per FLOP)"
    return (
        f"{row['run_id']} (N={row['params']:.3g}, M={row['multiplier']:g}, {row['flops']:.3g} FLOPs): intervals "
        f"{shrink:.3g} % narrower, {why}; {novelty}"
    )
