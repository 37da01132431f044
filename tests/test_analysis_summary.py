"""Results that describe themselves: the text of Fit, Bootstrap, Extrapolation, Classification."""

import numpy as np
import pandas as pd
import pytest

from analysis.classify import classify
from analysis.extrapolate import Split, extrapolate
from analysis.fitting import fit_least_squares_grid
from analysis.laws import get_law
from analysis.synthetic import GADRE_SIZES, law_table

LOSS = {"synth": {"alpha": 150.0, "beta": 300.0, "e": -0.25, "E": 1.7}}
ERROR = {"epsilon": 0.75, "k": 3.0, "gamma": 0.6}


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return law_table(LOSS, ERROR)


def test_fit_summary_names_law_points_residual_and_values():
    law = get_law("power_law")
    x = np.array([1e3, 1e4, 1e5, 1e6, 1e7])
    fit = fit_least_squares_grid(law, x, law(x, {"E": 1.5, "A": 20.0, "alpha": 0.3}))
    head, formula = fit.summary("rpj").splitlines()
    assert head.startswith("rpj: power_law fit on 5 runs, residual ")
    assert head.endswith(", status ok") and float(head.split("residual ")[1].split(",")[0]) < 1e-8
    assert formula == "  L(D) = E + A / D^alpha with E=1.5, A=20, alpha=0.3"
    assert fit.summary().startswith("power_law fit on 5 runs")


def test_fit_summary_of_a_failure_gives_the_reason():
    law = get_law("power_law")
    fit = fit_least_squares_grid(law, [1.0, 2.0], [3.0, 2.0])
    assert fit.summary("c4") == (
        "c4: power_law fit failed (too_few_points): 2 points, at least 3 needed (the residual divides by n - 2)"
    )


def test_extrapolation_summary(table):
    result = extrapolate(table, n_bootstrap=20)
    lines = result.summary().splitlines()
    assert lines[0] == "law: overtrain   loss axis: own   downstream: mean of 2 tasks (1 - acc)"
    assert lines.pop(1) == "tasks: averaged 2 tasks: task_a, task_b; left out: none"
    assert lines[1] == "" and lines[2].startswith("synth: overtrain fit on 32 runs, residual ")
    assert lines[3] == "  L(N,M) = E + alpha N^e + beta 6^(e/2) (M N)^e with alpha=150, beta=300, e=-0.25, E=1.7"
    assert lines[4] == "  L(C,M) = E + (a M^eta + b M^-eta) C^-eta with E=1.7, a=187.7, b=300, eta=0.125"
    assert lines[5].startswith("  95% bootstrap CI (20/20 refits): alpha [") and "e [-0.25, -0.25]" in lines[5]
    assert lines[6].startswith("synth: loss_to_error fit on 32 runs, residual ")
    assert lines[7] == "  Err(L) = epsilon - k exp(-gamma L) with epsilon=0.75, k=3, gamma=0.6"
    assert lines[8] == "  held out:" and lines[9].split()[:4] == ["run_id", "size", "params", "multiplier"]
    heldout = [line.split() for line in lines[10:]]
    assert [row[0] for row in heldout] == [f"synth-1.4B-m{m}" for m in (5, 10, 20, 40, 80, 160, 320, 640)]
    assert all(row[1] == "1.4B" for row in heldout)


def test_extrapolation_summary_without_heldout_or_tasks():
    small = law_table(LOSS, sizes={k: v for k, v in GADRE_SIZES.items() if k != "1.4B"})
    text = extrapolate(small, split=Split(max_fit_params=1e10)).summary()
    assert text.splitlines()[0].endswith("downstream: no task rows")
    assert text.endswith("  no held-out runs") and "loss_to_error" not in text and "bootstrap" not in text


def test_classification_summary_counts_and_json(table):
    verdicts = classify(table, "synth", n_bootstrap=20)
    assert len(verdicts) == 2 and [v.task for v in verdicts] == ["task_a", "task_b"]
    assert verdicts.counts()["predictable"] == 2 and sum(verdicts.counts().values()) == 2
    lines = verdicts.summary().splitlines()
    assert lines[0] == "loss axis: synth" and lines[1].split() == [
        "task", "class", "confidence", "trend_z", "change", "excess", "r2", "delta_bic", "noise",
    ]  # fmt: skip
    assert lines[2].split()[:3] == ["task_a", "predictable", "1.000"]
    assert lines[2].split()[-1] == "none"  # one seed per configuration, no standard errors: no noise known
    assert lines[-2].startswith("2 tasks: predictable 2 (100%), inverse 0 (0%)")
    assert lines[-1].startswith("noise of one run's score: none 2")
    assert [d["task"] for d in verdicts.to_list()] == ["task_a", "task_b"]
