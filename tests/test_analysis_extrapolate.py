"""From a results table to fits and held-out predictions: selection, split, chaining, failures."""

import json

import numpy as np
import pandas as pd
import pytest

from analysis.errors import AnalysisError
from analysis.extrapolate import Split, extrapolate
from analysis.select import downstream_errors, final_losses
from analysis.synthetic import GADRE_SIZES, law_table

LOSS = {
    "synth_a": {"alpha": 150.0, "beta": 300.0, "e": -0.25, "E": 1.7},
    "synth_b": {"alpha": 120.0, "beta": 350.0, "e": -0.27, "E": 1.9},
}
ERROR = {"epsilon": 0.75, "k": 3.0, "gamma": 0.6}


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return law_table(LOSS, ERROR)


def test_final_losses_one_row_per_run_from_final_rows(table):
    runs = final_losses(table)
    assert len(runs) == 2 * 5 * 8 and runs["run_id"].is_unique
    first = runs[runs["run_id"] == "synth_a-0.011B-m5"].iloc[0]
    assert first["loss"] < 8  # the non-final row of the same run is worth one more
    assert runs["params"].dtype == float and runs["flops"].iloc[0] == 6 * first["params"] * first["tokens"]


def test_final_losses_fills_derived_columns(table):
    runs = final_losses(table.assign(tokens=pd.NA, flops=pd.NA).astype({"tokens": "Int64", "flops": "Float64"}))
    assert np.allclose(runs["tokens"], runs["multiplier"] * runs["params"])
    assert np.allclose(runs["flops"], 6 * runs["params"] * runs["tokens"])


def test_unknown_x_names_the_validation_sets(table):
    with pytest.raises(AnalysisError, match="no final val_loss rows named 'c4'; validation sets: synth_a, synth_b"):
        final_losses(table, "c4")


def test_named_x_uses_that_validation_set_for_every_run(table):
    runs = final_losses(table, "synth_a")
    assert set(runs["dataset"]) == {"synth_a"}  # only synth_a runs were evaluated on synth_a here


def test_downstream_error_is_one_minus_mean_accuracy(table):
    errors = downstream_errors(table)
    assert errors.name == "mean of 2 tasks (1 - acc)"
    loss = final_losses(table).set_index("run_id")["loss"]
    expected = ERROR["epsilon"] - ERROR["k"] * np.exp(-ERROR["gamma"] * loss)
    assert np.allclose(errors[loss.index], expected)
    single = downstream_errors(table, "task_a")
    assert single.name == "task_a (1 - acc)" and np.allclose(single, errors - 0.02)
    with pytest.raises(AnalysisError, match="for hellaswag; tasks: task_a, task_b"):
        downstream_errors(table, ["task_a", "hellaswag"])


def test_predictions_from_the_law_itself_are_exact(table):
    result = extrapolate(table)
    heldout = result.heldout()
    assert set(heldout["size"]) == {"1.4B"} and len(heldout) == 16
    assert set(result.runs.loc[result.runs["size"] != "1.4B", "role"]) == {"fit"}
    assert heldout["rel_error"].max() < 1e-8
    assert heldout["error_rel_error"].max() < 1e-8
    for dataset, truth in LOSS.items():
        assert result.fits[dataset].loss.params == pytest.approx(truth, rel=1e-6)
        assert result.fits[dataset].error.params == pytest.approx(ERROR, rel=1e-6)
    assert result.target == "mean of 2 tasks (1 - acc)"


def test_noisy_table_predicts_within_a_percent():
    result = extrapolate(law_table(LOSS, ERROR, noise=0.002, seed=4))
    assert result.heldout()["rel_error"].max() < 0.01


def test_explicit_split(table):
    fit_ids = ("synth_a-0.011B-m20", "synth_a-0.079B-m20", "synth_a-0.154B-m20", "synth_a-0.411B-m20")
    fit_ids += ("synth_a-0.011B-m320",)
    split = Split(heldout=("synth_a-1.4B-m640",), fit=fit_ids, error_fit=(*fit_ids, "synth_a-1.4B-m20"))
    result = extrapolate(table, split=split)
    roles = result.runs.set_index("run_id")["role"]
    assert (roles == "fit").sum() == 5 and (roles == "heldout").sum() == 1
    assert result.fits["synth_a"].loss.n_points == 5 and result.fits["synth_a"].error.n_points == 6
    assert result.heldout()["rel_error"].iloc[0] < 1e-6  # 5 noiseless points pin the 4 parameters
    assert result.fits["synth_b"].loss.status == "too_few_points"  # no synth_b run was chosen to fit
    assert result.runs.loc[result.runs["dataset"] == "synth_b", "predicted"].isna().all()


def test_max_fit_params_holds_out_everything_larger(table):
    result = extrapolate(table, split=Split(max_fit_params=GADRE_SIZES["0.154B"]))
    assert set(result.heldout()["size"]) == {"0.411B", "1.4B"}
    assert result.heldout()["rel_error"].max() < 1e-8


@pytest.mark.parametrize(
    ("split", "message"),
    [
        (Split(heldout=("nope",)), "run id\\(s\\) nope not among"),
        (Split(heldout=("synth_a-1.4B-m5",), fit=("synth_a-1.4B-m5",)), "both fitted and held out"),
    ],
)
def test_bad_split_is_an_error(table, split, message):
    with pytest.raises(AnalysisError, match=message):
        extrapolate(table, split=split)


def test_bootstrap_bands_bracket_the_predictions():
    result = extrapolate(law_table(LOSS, noise=0.002, seed=4), n_bootstrap=50)
    runs = result.runs
    assert (runs["ci_low"] <= runs["predicted"]).all() and (runs["predicted"] <= runs["ci_high"]).all()
    assert result.fits["synth_a"].bootstrap.n_ok == 50


def test_without_task_rows_there_is_no_error_part():
    result = extrapolate(law_table(LOSS))
    assert result.target is None and "predicted_error" not in result.runs
    assert all(fits.error is None for fits in result.fits.values())


def test_to_dict_is_strict_json(table):
    result = extrapolate(table, split=Split(heldout=("synth_a-1.4B-m5",), fit=("synth_a-0.011B-m5",)))
    decoded = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert decoded["datasets"]["synth_a"]["loss"]["status"] == "too_few_points"
    assert len(decoded["runs"]) == 80 and decoded["runs"][0]["predicted"] is None


def test_a_law_with_a_parameter_fixed_predicts_as_the_whole_law_and_fits_the_rest():
    from analysis.extrapolate import ERROR_LAW

    at_chance = ERROR_LAW.fixed(epsilon=0.75)
    assert at_chance.params == ("k", "gamma") and at_chance.name == "loss_to_error[epsilon=0.75]"
    assert "epsilon = 0.75 fixed" in at_chance.formula and at_chance.in_range == ()
    losses = np.linspace(2.5, 5.0, 9)
    assert np.allclose(at_chance(losses, {"k": 3.0, "gamma": 0.6}), ERROR_LAW(losses, ERROR))
    with pytest.raises(AnalysisError, match="no parameter delta"):
        ERROR_LAW.fixed(delta=1.0)


def test_the_error_asymptote_held_at_chance_recovers_the_other_parameters(table):
    # every task's chance accuracy 0.25: a chance error of 0.75, the synthetic law's epsilon
    with_chance = table.assign(chance=np.where(table["kind"] == "task", 0.25, np.nan))
    result = extrapolate(with_chance, error_asymptote="chance")
    for fits in result.fits.values():
        assert fits.error.ok and fits.error.law.params == ("k", "gamma")
        assert fits.error.params == pytest.approx({"k": 3.0, "gamma": 0.6}, rel=1e-4)
    heldout = result.heldout()
    assert np.allclose(heldout["error_at_observed"], heldout["observed_error"], atol=1e-6)
    with pytest.raises(AnalysisError, match="needs one chance accuracy"):
        extrapolate(table, error_asymptote="chance")  # no chance column
    with pytest.raises(AnalysisError, match="error_asymptote 'zero'"):
        extrapolate(with_chance, error_asymptote="zero")


def test_a_task_without_a_recorded_chance_spoils_the_chance_error_instead_of_leaving_the_mean():
    from analysis.select import chance_errors

    table = law_table(LOSS, ERROR)
    table["chance"] = np.where(table["name"] == "task_a", 0.25, np.where(table["name"] == "task_b", 0.5, np.nan))
    assert np.allclose(chance_errors(table).dropna(), 1 - 0.375) and chance_errors(table).notna().all()
    table.loc[table["name"] == "task_b", "chance"] = np.nan
    assert chance_errors(table).isna().all()  # not 0.75, task_a's alone
    assert chance_errors(table, "task_a").eq(0.75).all()


def test_an_irreducible_loss_below_the_text_s_entropy_is_unphysical(table):
    """E is recovered exactly (1.7 and 1.9); a generator's entropy of 1.8 on synth_a's validation rows
    puts synth_a's E below what any model can score, and leaves synth_b (no entropy known) alone."""
    with_floor = table.copy()
    own = (with_floor["kind"] == "val_loss") & (with_floor["name"] == "synth_a")
    with_floor.loc[own, "entropy_floor"] = 1.8
    with_floor.loc[own & ~with_floor["final"], "entropy_floor"] = 1.75  # the lowest over the rows counts
    result = extrapolate(with_floor)
    fit = result.fits["synth_a"].loss
    assert fit.status == "unphysical" and "E = 1.7 is below the text's entropy 1.75" in fit.reason
    assert fit.params["E"] == pytest.approx(1.7) and result.heldout()["rel_error"].max() < 1e-8  # predictions stay
    assert any("synth_a: the overtrain fit breaks" in w and "entropy" in w for w in result.warnings)
    assert result.fits["synth_b"].loss.status == "ok"
    with_floor.loc[own, "entropy_floor"] = 1.6  # below E: consistent
    assert extrapolate(with_floor).fits["synth_a"].loss.status == "ok"


def test_an_error_law_that_reaches_zero_above_the_text_s_entropy_is_unphysical(table):
    """Err(L) = 0.75 - 3 exp(-0.6 L) is 0 at L = ln(4) / 0.6 = 2.31: with synth_a's text's entropy at 1.6, a
    model could reach losses where the law's error is negative. The fit is flagged with where it leaves [0, 1];
    its predictions stay. At an entropy above 2.31 (or none known) the law is physical."""
    from analysis.laws import get_law

    with_floor = table.copy()
    own = (with_floor["kind"] == "val_loss") & (with_floor["name"] == "synth_a")
    with_floor.loc[own, "entropy_floor"] = 1.6
    result = extrapolate(with_floor)
    error = result.fits["synth_a"].error
    assert error.status == "unphysical" and error.params["gamma"] == pytest.approx(0.6)
    at_entropy = 0.75 - 3.0 * np.exp(-0.6 * 1.6)
    assert f"entropy 1.6 (the lowest loss a model can reach) is {at_entropy:.4g}, outside [0, 1]" in error.reason
    assert f"it reaches 0 at loss {np.log(4) / 0.6:.4g}, above the entropy" in error.reason
    assert result.heldout()["error_rel_error"].abs().max() < 1e-6  # predictions stay
    assert any("synth_a: the loss_to_error fit breaks" in w for w in result.warnings)
    assert result.fits["synth_b"].error.status == "ok"
    law = get_law("loss_to_error")
    assert law.violations(ERROR, (), 2.4) == [] and law.violations(ERROR, (), None) == []
    held = law.fixed(epsilon=0.75)  # the asymptote held at chance: the same check on the free parameters
    assert "it reaches 0 at loss 2.31" in held.violations({"k": 3.0, "gamma": 0.6}, (), 1.6)[0]


def test_the_loss_law_s_floor_can_be_held_at_the_text_s_entropy(table):
    """loss_floor entropy: synth_a's E held at its text's entropy (here the true E, 1.7) recovers the other
    parameters and predicts exactly; synth_b, whose text has no known entropy, is fitted free, with a warning."""
    with_floor = table.copy()
    own = (with_floor["kind"] == "val_loss") & (with_floor["name"] == "synth_a")
    with_floor.loc[own, "entropy_floor"] = 1.7
    result = extrapolate(with_floor, loss_floor="entropy")
    held, free = result.fits["synth_a"].loss, result.fits["synth_b"].loss
    assert held.law.name == "overtrain[E=1.7]" and "E" not in held.params and held.status == "ok"
    assert held.params == pytest.approx({k: v for k, v in LOSS["synth_a"].items() if k != "E"}, rel=1e-6)
    assert free.params["E"] == pytest.approx(1.9) and result.heldout()["rel_error"].abs().max() < 1e-6
    assert (
        "synth_b: no entropy is known for its text (no generator gives it), so the loss law's E is fitted, "
        "not held at it" in result.warnings
    )
    with_floor.loc[own, "entropy_floor"] = 1.6  # held below the truth: the fit bends, the predictions miss
    assert extrapolate(with_floor, loss_floor="entropy").heldout().query("dataset == 'synth_a'")[
        "rel_error"].abs().max() > 1e-3  # fmt: skip
    with pytest.raises(AnalysisError, match="loss_floor 'E': expected one of free, entropy"):
        extrapolate(table, loss_floor="E")
    with pytest.raises(AnalysisError, match="loss_floor entropy: the law log_law has no floor parameter to hold"):
        extrapolate(table, law="log_law", loss_floor="entropy")
