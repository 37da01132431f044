"""Diagnostics of a held-out miss: compute ratio, the error law at the observed loss, warnings, task choice."""

import numpy as np
import pandas as pd
import pytest

from analysis.extrapolate import ERROR_LAW, Split, extrapolate
from analysis.select import informative_tasks
from analysis.synthetic import GADRE_SIZES, law_table

LOSS = {"synth": {"alpha": 150.0, "beta": 300.0, "e": -0.25, "E": 1.7}}
ERROR = {"epsilon": 0.75, "k": 3.0, "gamma": 0.6}


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return law_table(LOSS, ERROR, noise=0.002, seed=4)


@pytest.fixture(scope="module")
def result(table):
    return extrapolate(table)


def test_compute_ratio_is_the_flops_ratio_to_the_largest_fit_run(result):
    heldout = result.heldout().set_index("multiplier")
    largest_fit = 6.0 * GADRE_SIZES["0.411B"] ** 2 * 640  # C = 6 N D = 6 M N^2
    for m in (5, 80, 640):
        expected = 6.0 * GADRE_SIZES["1.4B"] ** 2 * m / largest_fit
        assert heldout.at[m, "compute_ratio"] == pytest.approx(expected, rel=1e-6)
    assert result.runs.loc[result.runs["role"] == "fit", "compute_ratio"].max() == pytest.approx(1.0)
    assert "12.2x" in result.summary() and "compute_ratio" in result.to_dict()["runs"][0]


def test_error_law_at_the_observed_loss(result):
    heldout = result.heldout()
    fit = result.fits["synth"].error
    expected = ERROR_LAW(heldout["observed"].to_numpy(), fit.params)
    np.testing.assert_allclose(heldout["error_at_observed"], expected, rtol=1e-12)
    rel = (heldout["error_at_observed"] - heldout["observed_error"]).abs() / heldout["observed_error"]
    np.testing.assert_allclose(heldout["error_at_observed_rel_error"], rel, rtol=1e-12)
    assert "error_at_observed" in result.summary()


def _chinchilla_table(alpha: float, beta: float) -> pd.DataFrame:
    """law_table's runs with losses E + A / N^alpha + B / D^beta instead (distinct exponents)."""
    table = law_table(LOSS)
    n, d = table["params"].astype(float), table["tokens"].astype(float)
    loss = 1.7 + 400.0 / n**alpha + 400.0 / d**beta
    table["value"] = (loss + (~table["final"].astype(bool)).astype(float)).astype("Float64")
    return table


def test_exponent_flag_quiet_on_the_overtrain_law(result):
    assert not any("exponent" in w for w in result.warnings), result.warnings


def test_exponent_flag_fires_on_distinct_exponents():
    result = extrapolate(_chinchilla_table(0.15, 0.6))
    flagged = [w for w in result.warnings if "exponents fitted separately differ" in w]
    assert len(flagged) == 1 and flagged[0].startswith("synth: ")
    assert "warnings:" in result.summary() and flagged[0] in result.to_dict()["warnings"]


def test_exponent_check_says_when_it_cannot_be_made():
    table = law_table(LOSS, sizes={k: GADRE_SIZES[k] for k in ("0.011B", "0.079B", "1.4B")}, multipliers=(20, 40))
    result = extrapolate(table)
    assert any("could not be checked" in w for w in result.warnings), result.warnings


def test_below_e_flag(table):
    heldout_id = "synth-1.4B-m640"
    lowered = table.copy()
    rows = (lowered["run_id"] == heldout_id) & (lowered["kind"] == "val_loss") & lowered["final"]
    lowered.loc[rows, "value"] = 1.5  # E = 1.7
    result = extrapolate(lowered)
    flagged = [w for w in result.warnings if "below the fitted irreducible loss" in w]
    assert len(flagged) == 1 and heldout_id in flagged[0]
    assert not any("below the fitted" in w for w in extrapolate(table).warnings)


def _task_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The table with three more tasks: one at chance, the controls random_label and inverse."""
    tasks = table[table["kind"] == "task"]
    base = tasks[tasks["name"] == "task_a"]
    extra = [
        base.assign(name=name, value=value, stderr=0.01)
        for name, value in (("flat", 0.25), ("random_label", 0.25), ("inverse", 0.9 - base["value"]))
    ]
    return pd.concat([table, *extra], ignore_index=True)


def test_task_filter_keeps_moving_tasks_and_drops_chance_and_controls(table):
    full = _task_rows(table)
    fit_runs = [r for r in full["run_id"].unique() if "-1.4B-" not in r]
    choice = informative_tasks(full, fit_runs, chance={"task_a": 0.25, "task_b": 0.25, "flat": 0.25})
    assert choice.kept == ("task_a", "task_b")
    assert choice.dropped["random_label"] == "control" and choice.dropped["inverse"] == "control"
    assert "not below chance" in choice.dropped["flat"]
    result = extrapolate(full)
    assert result.target == "mean of 2 tasks (1 - acc)"
    assert result.summary().splitlines()[1].startswith("tasks: averaged 2 tasks: task_a, task_b; left out: ")
    assert extrapolate(full, informative=False).target == "mean of 5 tasks (1 - acc)"
    assert result.to_dict()["tasks"]["kept"] == ["task_a", "task_b"]


def test_task_filter_without_fit_runs_to_judge_averages_every_task(table):
    result = extrapolate(table, split=Split(heldout=("synth-1.4B-m5",), fit=("synth-0.011B-m5",)))
    assert result.target == "mean of 2 tasks (1 - acc)" and not result.tasks.kept


def test_task_filter_reads_the_chance_level_the_rows_record(table):
    """A task far above chance on every fit run but flat among them: against its worst fit run (no chance
    known) it looks stuck; against the chance level its rows record (testbed's evaluation writes it), it
    has left chance."""
    tasks = table[table["kind"] == "task"]
    flat_high = tasks[tasks["name"] == "task_a"].assign(name="flat_high", value=0.61, stderr=0.01)
    full = pd.concat([table, flat_high], ignore_index=True)
    fit_runs = [r for r in full["run_id"].unique() if "-1.4B-" not in r]
    assert "flat_high" in informative_tasks(full, fit_runs).dropped
    full["chance"] = np.where(full["name"] == "flat_high", 0.25, np.nan)
    assert "flat_high" in informative_tasks(full, fit_runs).kept


def test_each_dataset_is_averaged_over_its_own_tasks(table):
    """Two corpora with tasks of their own (a synthetic suite, a real text's cloze items): a run's error is
    the mean of its dataset's tasks, and the task filter judges each task on the runs of its dataset."""
    from analysis.select import downstream_errors

    second = table.assign(dataset="other", run_id=table["run_id"].str.replace("synth-", "other-", regex=False))
    tasks = second["kind"] == "task"
    second = second[~tasks | (second["name"] == "task_a")].copy()
    second.loc[second["kind"] == "task", "name"] = "cloze"
    both = pd.concat([table, second], ignore_index=True)
    errors = downstream_errors(both)
    assert errors.name == "mean of each dataset's tasks (1 - acc)"
    scores = both[(both["kind"] == "task") & both["final"]].pivot(index="run_id", columns="name", values="value")
    mine = scores.loc[[r for r in scores.index if r.startswith("synth-")]]
    theirs = scores.loc[[r for r in scores.index if r.startswith("other-")]]
    assert np.allclose(errors[mine.index], 1 - mine[["task_a", "task_b"]].mean(axis=1))
    assert np.allclose(errors[theirs.index], 1 - theirs["cloze"])
    fit_runs = [r for r in both["run_id"].unique() if "-1.4B-" not in r]
    choice = informative_tasks(both, fit_runs, chance={"task_a": 0.25, "task_b": 0.25, "cloze": 0.25})
    assert choice.kept == ("cloze", "task_a", "task_b")
    extra = both[both["name"] == "cloze"].assign(name="cloze_b")
    lacking = pd.concat([both, extra], ignore_index=True)
    lacking = lacking[~((lacking["run_id"] == theirs.index[0]) & (lacking["name"] == "cloze"))]
    assert informative_tasks(lacking, fit_runs).dropped["cloze"] == "not evaluated on every run of its dataset"
    assert np.isnan(downstream_errors(lacking, ["cloze", "cloze_b"])[theirs.index[0]])


def test_tasks_of_a_dataset_without_fit_runs_are_dropped_not_crashed_on(table):
    """Fit runs of one corpus only (`analyze fit --fit-runs` on a two-corpus sweep): the other corpus's tasks
    are NaN on every fit run; they are left out for want of fit runs, the fitted corpus's tasks are judged."""
    second = table.assign(dataset="other", run_id=table["run_id"].str.replace("synth-", "other-", regex=False))
    second = second[(second["kind"] != "task") | (second["name"] == "task_a")].copy()
    second.loc[second["kind"] == "task", "name"] = "cloze"
    both = pd.concat([table, second], ignore_index=True)
    fit_runs = [r for r in both["run_id"].unique() if r.startswith("synth-") and "-1.4B-" not in r]
    choice = informative_tasks(both, fit_runs, chance={"task_a": 0.25, "task_b": 0.25, "cloze": 0.25})
    assert choice.kept == ("task_a", "task_b") and choice.dropped == {"cloze": "no fit runs"}
