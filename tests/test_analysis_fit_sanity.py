"""Fits that cannot be silently wrong: each law's physical constraints give a fit that breaks one the status
`unphysical`; a fit whose points leave its parameters undetermined is `unidentified`; intervals of bounded
quantities are clipped and flagged; runs left out are named; a failed requested fit makes `analyze fit` exit
non-zero."""

import json

import numpy as np
import pandas as pd
import pytest

from analysis.cli import main
from analysis.diagnostics import error_warnings, identified, physical
from analysis.extrapolate import ERROR_LAW, extrapolate
from analysis.fitting import OK, UNIDENTIFIED, UNPHYSICAL, Fit, fit_law
from analysis.laws import get_law
from analysis.resample import clip_interval
from analysis.synthetic import law_table

LOSS = {"synth": {"alpha": 150.0, "beta": 300.0, "e": -0.25, "E": 1.7}}
ERROR = {"epsilon": 0.75, "k": 3.0, "gamma": 0.6}
OVERTRAIN = get_law("overtrain")


@pytest.mark.parametrize(
    ("params", "broken"),
    [
        ({"alpha": 150.0, "beta": 300.0, "e": 0.1, "E": 1.7}, "e = 0.1 should be negative"),
        ({"alpha": -540.0, "beta": 1569.0, "e": -0.36, "E": 1.0}, "alpha = -540 should be positive"),
        ({"alpha": 150.0, "beta": 300.0, "e": -0.25, "E": 5.7}, "E = 5.7 is not below every observed value"),
    ],
)
def test_an_unphysical_overtraining_fit_is_not_ok(params, broken):
    fit = Fit(OVERTRAIN, params, n_points=8, residual=0.01)
    checked = physical(fit, np.array([3.0, 3.5, 4.4]))
    assert checked.status == UNPHYSICAL and not checked.ok and checked.fitted and broken in checked.reason
    assert f"status {UNPHYSICAL}: " in checked.summary("c4") and broken in checked.summary("c4")
    decoded = checked.to_dict()
    assert decoded["status"] == UNPHYSICAL and decoded["params"] == params  # the numbers stay visible
    assert checked.predict(np.array([[1e8], [20.0]])).shape == (1,)


def test_a_physical_fit_stays_ok():
    fit = Fit(OVERTRAIN, LOSS["synth"], n_points=8, residual=0.01)
    assert physical(fit, np.array([3.0, 3.5])).status == OK


def test_an_error_law_with_negative_k_is_unphysical():
    # error that falls as the loss rises: the least-squares fit needs k < 0
    losses = np.linspace(2.5, 5.0, 12)
    errors = 0.5 + 2.0 * np.exp(-1.0 * losses)
    fit = fit_law(ERROR_LAW, losses, errors, "least_squares_grid")
    assert fit.ok and fit.params["k"] < 0  # the fitter alone calls it ok
    checked = physical(fit, errors)
    assert checked.status == UNPHYSICAL and "k = " in checked.reason and "should be positive" in checked.reason


def test_an_error_law_whose_asymptote_lies_above_one_is_unphysical():
    # error nearly linear in the loss over the fit range: the unbounded fit puts the high-loss asymptote
    # epsilon above 1 (an error beyond 100 %), as on the replication's docs_en points (epsilon 1.128)
    losses = np.linspace(3.0, 4.5, 12)
    errors = 1.128 - 1.081 * np.exp(-0.228 * losses)
    fit = fit_law(ERROR_LAW, losses, errors, "least_squares_grid")
    assert fit.ok and fit.params["epsilon"] == pytest.approx(1.128, abs=1e-3)
    checked = physical(fit, errors)
    assert checked.status == UNPHYSICAL
    assert checked.reason == "epsilon = 1.128 is outside [0, 1], the range of the law's values"
    assert physical(fit_law(ERROR_LAW, losses, 0.75 - 3.0 * np.exp(-0.6 * losses)), errors).status == OK


def test_bounded_intervals_are_clipped_and_flagged():
    low, high, clipped, uninformative = clip_interval(
        np.array([-5038.0, -3.0, 0.2, np.nan]), np.array([0.67, 2.0, 0.4, np.nan]), (0.0, 1.0)
    )
    assert low.tolist()[:3] == [0.0, 0.0, 0.2] and high.tolist()[:3] == [0.67, 1.0, 0.4]
    assert clipped.tolist() == [True, True, False, False]
    assert uninformative.tolist() == [False, True, False, False]
    runs = pd.DataFrame({"run_id": ["a", "b", "c"], "error_ci_clipped": clipped[:3],
                         "error_ci_uninformative": uninformative[:3]})  # fmt: skip
    warnings = error_warnings(None, runs)
    assert len(warnings) == 2 and "a reached outside [0, 1]; clipped" in warnings[0]
    assert "uninformative: it spans all of [0, 1]" in warnings[1]


def test_chained_intervals_lie_within_zero_and_one():
    table = law_table(LOSS, ERROR, noise=0.02, seed=1)
    result = extrapolate(table, n_bootstrap=50)
    runs = result.runs.dropna(subset=["error_ci_low"])
    assert len(runs) and runs["error_ci_low"].between(0, 1).all() and runs["error_ci_high"].between(0, 1).all()
    assert {"error_ci_clipped", "error_ci_uninformative"} <= set(runs)


def test_runs_left_out_by_x_own_are_named_with_the_reason():
    table = law_table(LOSS, ERROR)
    mixture = table[table["run_id"] == table["run_id"].iloc[0]].assign(run_id="mix-run", dataset="mix")
    result = extrapolate(pd.concat([table, mixture], ignore_index=True))
    assert "mix-run" not in set(result.runs["run_id"])
    (sentence,) = [w for w in result.warnings if "mix-run" in w]
    assert "no final validation loss named like its training dataset 'mix'" in sentence


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    path = tmp_path_factory.mktemp("fits") / "results.parquet"
    law_table(LOSS, ERROR, noise=0.001).to_parquet(path)
    return path


def test_a_failed_requested_fit_exits_non_zero(results, capsys):
    runs = pd.read_parquet(results)["run_id"].unique()[:2]
    assert main(["fit", str(results), "--fit-runs", *runs]) == 1
    out, err = capsys.readouterr()
    assert "fit failed (too_few_points)" in out and "error: synth: overtrain fit failed (too_few_points)" in err
    assert main(["fit", str(results), "--fit-runs", *runs, "--json"]) == 1
    decoded = json.loads(capsys.readouterr().out)
    assert decoded["datasets"]["synth"]["loss"]["status"] == "too_few_points"


def test_a_good_fit_exits_zero_with_status_ok(results, capsys):
    assert main(["fit", str(results), "--json"]) == 0
    decoded = json.loads(capsys.readouterr().out)
    assert decoded["datasets"]["synth"]["loss"]["status"] == OK


def test_an_over_training_fit_on_one_model_size_is_unidentified():
    """On one N, alpha N^e and E are one constant: the fit matches the points exactly, but alpha and E are
    undetermined (which pair the fitter returns is up to rounding). Two sizes determine them."""
    params = LOSS["synth"]
    multipliers = np.array([5.0, 10.0, 20.0, 40.0, 80.0, 160.0])
    for sizes, status in (([1e7], UNIDENTIFIED), ([1e7, 4e7], OK)):
        x = np.array([[n, m] for n in sizes for m in multipliers]).T
        fit = identified(fit_law(OVERTRAIN, x, OVERTRAIN(x, params)), x)
        assert fit.status == status and fit.fitted
        if status == UNIDENTIFIED:
            assert "do not determine alpha and E" in fit.reason and not fit.ok
            assert f"status {UNIDENTIFIED}: " in fit.summary("synth")


def test_the_released_over_training_fits_on_the_smallest_models_are_flagged(tmp_path, capsys):
    """Below 2e7 parameters each released corpus has one model size: the loss law's alpha and E are not
    determined (the fitter's pick among equally good fits was physical on one machine and not on another)."""
    from analysis import gadre2024

    path = tmp_path / "gadre.parquet"
    gadre2024.load().to_parquet(path)
    assert main(["fit", str(path), "--x", "c4_val", "--max-fit-params", "2e7", "--json"]) == 0
    statuses = {name: fits["loss"]["status"] for name, fits in json.loads(capsys.readouterr().out)["datasets"].items()}
    assert statuses == {"c4_original": UNIDENTIFIED, "rpj": UNIDENTIFIED, "rw_original": UNIDENTIFIED}
