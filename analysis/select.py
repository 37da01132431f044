"""From the long results table to one row per run (its final validation loss and downstream error), or one per
scored checkpoint (checkpoint_points: the (loss, error) points along each run)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.errors import AnalysisError
from analysis.schema import read_table

OWN = "own"  # x-axis name: each run's validation set named like its training dataset
RUN_COLUMNS = ["run_id", "arch", "size", "dataset", "seed", "params", "multiplier", "tokens", "flops"]
NUMERIC = ["params", "multiplier", "tokens", "flops"]
# How a law counts a model's N: every parameter (as trained and planned), or without the embedding and
# output-projection parameters (Kaplan et al. 2020's count, which gave them cleaner laws at small sizes).
TOTAL, NONEMBED = "total", "nonembed"
PARAM_COUNTS = (TOTAL, NONEMBED)
TOKENS_PER_PARAM = "tokens_per_param"  # D / N under a count other than the design's, the laws' M


def load_table(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise AnalysisError(f"{path}: no such results file")
    try:
        return read_table(path)
    except (ValueError, TypeError, OSError) as err:
        message = str(err)
        raise AnalysisError(message if str(path) in message else f"{path}: {message}") from None


def _final(table: pd.DataFrame, kind: str) -> pd.DataFrame:
    return table[(table["kind"] == kind).fillna(False) & table["final"].fillna(False)]


def _one_per_run(rows: pd.DataFrame, what: str, keys: Sequence[str] = ("run_id",)) -> None:
    """Two end-of-training numbers for the same run and name (two numbers for the same checkpoint, with keys
    POINT) mean the table was collected twice."""
    duplicated = rows.duplicated([*keys, "name"])
    if duplicated.any():
        run_id, name = rows.loc[duplicated, ["run_id", "name"]].iloc[0]
        if "step" in keys:
            step = rows.loc[duplicated, "step"].iloc[0]
            raise AnalysisError(f"run {run_id} has more than one {what} row named {name!r} at step {step}")
        raise AnalysisError(f"run {run_id} has more than one final {what} row named {name!r}")


def final_losses(table: pd.DataFrame, x: str = OWN) -> pd.DataFrame:
    """One row per run with the run's metadata and `loss`, its final loss on validation set `x`.

    x = "own" takes, for each run, the validation set named like its training dataset. Runs without
    that validation set are left out. Numeric columns come back as float64; missing tokens, multiplier
    or flops are derived from the others (D = M N, C = 6 N D).
    """
    final = _final(table, "val_loss")
    if final.empty:
        raise AnalysisError("no final val_loss rows (kind='val_loss', final=True)")
    runs = _named_losses(final, x, "final val_loss")
    runs["tokens"] = runs["tokens"].fillna(runs["multiplier"] * runs["params"])
    runs["multiplier"] = runs["multiplier"].fillna(runs["tokens"] / runs["params"])
    runs["flops"] = runs["flops"].fillna(6 * runs["params"] * runs["tokens"])
    return runs


def entropy_floors(table: pd.DataFrame, x: str = OWN) -> dict[str, float]:
    """Per training dataset, the entropy of the validation text its loss is measured on (`x`, as in
    final_losses) where the rows carry it (entropy_floor: text from a known generator), else nothing: the
    lowest over its rows, so a floor the laws' irreducible loss may not go below."""
    if "entropy_floor" not in table.columns:
        return {}
    rows = table[(table["kind"] == "val_loss").fillna(False) & table["entropy_floor"].notna()]
    rows = rows[(rows["name"] == (rows["dataset"] if x == OWN else x)).fillna(False)]
    return {str(d): float(v) for d, v in rows.groupby("dataset")["entropy_floor"].min().items()}


def count_params(runs: pd.DataFrame, table: pd.DataFrame, count: str = TOTAL) -> pd.DataFrame:
    """`runs` (final_losses rows) with N counted as `count` (PARAM_COUNTS). `total` leaves them as they are.
    `nonembed` takes each run's `params_nonembed` from `table` as `params`, with `flops` = 6 N D and
    TOKENS_PER_PARAM = D / N following it; `multiplier` stays the design's label (M = 20 names the runs the
    protocols select), and the laws read their M from TOKENS_PER_PARAM."""
    if count not in PARAM_COUNTS:
        raise AnalysisError(f"params={count!r}: choose one of {', '.join(PARAM_COUNTS)}")
    if count == TOTAL:
        return runs
    column = table.get("params_nonembed")
    counted = column.groupby(table["run_id"]).first() if column is not None else pd.Series(dtype=float)
    nonembed = runs["run_id"].map(counted).to_numpy(dtype=float, na_value=np.nan)
    if missing := list(runs.loc[~(nonembed > 0), "run_id"]):
        raise AnalysisError(f"params=nonembed: no params_nonembed for run(s) {', '.join(missing[:3])}"
                            f"{' ...' if len(missing) > 3 else ''}")  # fmt: skip
    out = runs.copy()
    out["params"] = nonembed
    out["flops"] = 6 * nonembed * out["tokens"]
    out[TOKENS_PER_PARAM] = out["tokens"] / nonembed
    return out


def _named_losses(
    rows: pd.DataFrame, x: str, what: str, keys: Sequence[str] = ("run_id",), extra: Sequence[str] = ()
) -> pd.DataFrame:
    """val_loss `rows` on validation set `x` (see final_losses), one per `keys`: RUN_COLUMNS, `extra` and `loss`."""
    wanted = rows["dataset"] if x == OWN else x
    picked = rows[(rows["name"] == wanted).fillna(False)]
    if picked.empty:
        which = "named like their training dataset (x='own')" if x == OWN else f"named {x!r}"
        names = ", ".join(sorted(rows["name"].dropna().unique()))
        raise AnalysisError(f"no {what} rows {which}; validation sets: {names}")
    _one_per_run(picked, "val_loss", keys)
    out = picked[[*RUN_COLUMNS, *extra]].copy()
    for column in [*NUMERIC, "value"]:
        out[column] = picked[column].to_numpy(dtype=float, na_value=np.nan)
    return out.rename(columns={"value": "loss"}).reset_index(drop=True)


def downstream_errors(
    table: pd.DataFrame, task: str | Sequence[str] | None = None, metric: str = "acc"
) -> pd.Series | None:
    """Top-1 error (1 - metric) per run_id, named by what it measures.

    task None: the mean over every task that all evaluated runs of the run's training dataset have (None
    when there are no task rows); a name or a list of names: that task or the mean over those of them
    that the run's dataset is evaluated on (corpora may have tasks of their own: a synthetic world's,
    a real text's cloze items), NaN for a run missing one its dataset has.
    """
    rows = _task_rows(_final(table, "task"), task, metric, "final task")
    return None if rows.empty else _mean_error(rows, task is None, metric)


def chance_errors(table: pd.DataFrame, task: str | Sequence[str] | None = None, metric: str = "acc") -> pd.Series:
    """The chance error per run_id over the tasks downstream_errors averages: 1 - their mean chance accuracy
    (the `chance` column), the error of a model that guesses; NaN where a task's chance is not recorded."""
    rows = _task_rows(_final(table, "task"), task, metric, "final task")
    chance = (rows["chance"] if "chance" in rows else pd.Series(np.nan, index=rows.index)).astype(float)
    # a scored task without a recorded chance: infinite, so that it spoils its runs' mean instead of being
    # taken for a task the run lacks (which the mean over every run's tasks would silently leave out)
    chance = chance.where(chance.notna() | rows["value"].isna(), np.inf)
    errors = _mean_error(rows.assign(value=chance), task is None, metric)
    return errors.where(np.isfinite(errors)).rename("chance_error")


def _task_rows(rows: pd.DataFrame, task: str | Sequence[str] | None, metric: str, what: str) -> pd.DataFrame:
    """The task `rows` of `metric` and of `task` (a name or a list; None: every task); a named task without
    such rows is an error."""
    rows = rows[(rows["metric"] == metric).fillna(False)]
    if task is None:
        return rows
    tasks = [task] if isinstance(task, str) else list(task)
    missing = sorted(set(tasks) - set(rows["name"]))
    if missing:
        known = ", ".join(sorted(rows["name"].dropna().unique())) or "none"
        raise AnalysisError(f"no {what} rows with metric {metric!r} for {', '.join(missing)}; tasks: {known}")
    return rows[rows["name"].isin(tasks)]


def _mean_error(rows: pd.DataFrame, every: bool, metric: str, keys: Sequence[str] = ("run_id",)) -> pd.Series:
    """1 - the mean score of task `rows` per `keys` (a run; a checkpoint with POINT), named by what it measures:
    every=True over the tasks every key of the run's dataset has, else over all those of its dataset (NaN for
    a key missing one)."""
    scores, evaluated = _task_scores(rows, keys)
    complete = ~(scores.isna() & evaluated) & evaluated  # every run of the dataset has it
    used = complete if every else evaluated
    if every and not complete.any(axis=None):
        raise AnalysisError(f"no task with metric {metric!r} is evaluated on every run of a dataset; name the task(s)")
    counts = used.sum(axis=1)
    label = f"mean of {counts.iloc[0]} tasks" if counts.nunique() == 1 else "mean of each dataset's tasks"
    if used.any(axis=0).sum() == 1:
        label = str(scores.columns[used.any(axis=0)][0])
    errors = 1 - scores.where(used).mean(axis=1)
    errors[(used & scores.isna()).any(axis=1) | (counts == 0)] = np.nan  # a run missing one of its dataset's tasks
    errors.name = f"{label} (1 - {metric})"
    return errors


POINT = ["run_id", "step"]  # a checkpoint: the rows of one run at one optimizer step
POINT_COLUMNS = [*RUN_COLUMNS, "step", "final", "loss", "error"]


def checkpoint_points(
    table: pd.DataFrame, task: str | Sequence[str] | None = None, metric: str = "acc", x: str = OWN
) -> pd.DataFrame:
    """One (loss, error) point per checkpoint with both a val_loss row on validation set `x` and task rows
    of `metric` at the same (run_id, step): the final checkpoints and, where the sweep scored them
    (eval_steps: all), the intermediate ones. Columns POINT_COLUMNS: tokens and flops at that step, loss,
    error.

    error: 1 - the mean over `task` (a name or a list; per run, those its dataset is evaluated on, as
    downstream_errors) or, with None, over the tasks every scored checkpoint of the run's dataset has,
    controls excluded (CONTROL_TASKS, tasks meant to show another class). Rows without a step cannot be
    paired and are left out, as is a checkpoint missing one of its dataset's tasks.
    """
    stepped = table[table["step"].notna()]
    rows, losses = (stepped[(stepped["kind"] == kind).fillna(False)] for kind in ("task", "val_loss"))
    rows = _task_rows(rows, task, metric, "task") if not rows.empty else rows
    if task is None:
        rows = rows[~rows["name"].isin(_controls(rows))]
    if rows.empty or losses.empty:
        return pd.DataFrame(columns=POINT_COLUMNS)
    errors = _mean_error(rows, task is None, metric, POINT).rename("error")
    points = _named_losses(losses, x, "val_loss", POINT, ("step", "final")).join(errors, on=POINT, how="inner")
    return points.dropna(subset=["error"]).reset_index(drop=True)[POINT_COLUMNS]


def _task_scores(rows: pd.DataFrame, keys: Sequence[str] = ("run_id",)) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(score per run, or per `keys`, and task, whether the task is one of the run's dataset's: evaluated on
    any run of the dataset) from final task rows of one metric (task rows of every checkpoint with POINT)."""
    _one_per_run(rows, "task", keys)
    scores = rows.pivot(index=list(keys), columns="name", values="value").astype(float)
    dataset = rows.groupby(list(keys))["dataset"].first().reindex(scores.index).fillna("").to_numpy()
    return scores, scores.notna().groupby(dataset).transform("any")


# Tasks built as controls (testbed's synthetic suite, configs/eval/synthetic.yaml): random_label has
# random gold answers, inverse gets worse as models improve. They never enter the default mean, nor does
# a task whose rows say it is meant to show any class but these (the suite's `intended`: noisy, ...).
CONTROL_TASKS = frozenset({"random_label", "inverse"})
MEAN_CLASSES = frozenset({"predictable", "breakthrough"})
Z_CHANCE = 2.0  # standard errors by which a task's best fit run must beat chance
FIXED_MARGIN = 0.02  # margin (absolute error) when a task row has no standard error


@dataclass(frozen=True)
class TaskChoice:
    """Which tasks the default downstream mean averages, and why the others were left out."""

    kept: tuple[str, ...]
    dropped: dict[str, str]  # task -> reason

    def summary(self) -> str:
        left = "; ".join(f"{task} ({why})" for task, why in self.dropped.items()) or "none"
        if not self.kept:  # extrapolate then averages every task evaluated on all runs
            return f"no task leaves chance within the fit runs, so all are averaged ({left})"
        return f"averaged {len(self.kept)} tasks: {', '.join(self.kept)}; left out: {left}"

    def to_dict(self) -> dict:
        return {"kept": list(self.kept), "dropped": dict(self.dropped)}


def recorded_chance(table: pd.DataFrame) -> dict[str, float] | None:
    """Each task's chance accuracy as its rows record it (testbed's evaluation writes a `chance` column for
    multiple-choice tasks), or None when no row does."""
    if "chance" not in table:
        return None
    rows = table[(table["kind"] == "task").fillna(False) & table["chance"].notna()]
    return {str(k): float(v) for k, v in rows.groupby("name")["chance"].mean().items()} or None


def informative_tasks(
    table: pd.DataFrame, fit_runs: Sequence[str], metric: str = "acc", chance: Mapping[str, float] | None = None
) -> TaskChoice | None:
    """The tasks evaluated on every run whose error leaves chance within the fit runs, controls excluded.

    A task counts when its best (lowest) error among `fit_runs` is below chance error by more than
    Z_CHANCE standard errors of that run's score (its `stderr` column, else FIXED_MARGIN in all).
    Chance accuracy comes from `chance`, else from the rows' own `chance` column; for a task with neither,
    the worst fit run stands for it (the task must move off its worst fit run), a weaker test. None without
    task rows.
    """
    chance = chance if chance is not None else recorded_chance(table)
    rows = _final(table, "task")
    rows = rows[(rows["metric"] == metric).fillna(False)]
    if rows.empty:
        return None
    scores, evaluated = _task_scores(rows)
    stderr = rows.pivot(index="run_id", columns="name", values="stderr").astype(float)
    controls = _controls(rows)
    kept, dropped = [], {}
    for task in scores.columns:
        if (scores[task].isna() & evaluated[task]).any():
            dropped[task] = "not evaluated on every run of its dataset"
        elif task in controls:
            dropped[task] = "control"
        else:
            reason = _at_chance(scores[task], stderr[task], fit_runs, chance.get(task) if chance else None)
            if reason:
                dropped[task] = reason
            else:
                kept.append(task)
    return TaskChoice(tuple(kept), dropped)


def _controls(rows: pd.DataFrame) -> set[str]:
    """The control tasks among task `rows`: CONTROL_TASKS and those whose rows say they are meant to show a
    class the mean leaves out (`intended`)."""
    intended = rows.dropna(subset=["intended"]).groupby("name")["intended"].last()
    names = rows["name"].dropna().unique()
    return {str(t) for t in names if t in CONTROL_TASKS or intended.get(t, "predictable") not in MEAN_CLASSES}


def _at_chance(score: pd.Series, stderr: pd.Series, fit_runs: Sequence[str], chance: float | None) -> str:
    """Why this task is at chance within the fit runs, or "" when it leaves chance."""
    fit = score[score.index.isin(fit_runs)].dropna()  # a task of another dataset is NaN on these runs
    if fit.empty:
        return "no fit runs"
    best = fit.idxmax()
    se = stderr.get(best, np.nan)
    margin = Z_CHANCE * se if np.isfinite(se) else FIXED_MARGIN
    floor = chance if chance is not None else float(fit.min())
    what = f"chance {1 - chance:.3g}" if chance is not None else f"its worst fit run {1 - floor:.3g}"
    if fit[best] - floor > margin:
        return ""
    return f"best fit-run error {1 - fit[best]:.3g} not below {what} by {margin:.3g}"
