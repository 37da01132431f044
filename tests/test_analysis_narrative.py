"""What a replication shows in words (analysis.narrative): each sentence carries the numbers it is about and
names the cause of a miss that the fits reveal."""

import dataclasses
import re

import numpy as np
import pandas as pd
import pytest

from analysis.cli import main
from analysis.narrative import chained_task_errors, replication_story, task_story
from analysis.replicate import replicate
from analysis.synthetic import law_table
from analysis.verdicts import Classification, Verdict

SIZES = {"c1": 2_000_000, "c2": 5_000_000, "c3": 12_000_000, "c4": 30_000_000, "c5": 80_000_000, "c6": 200_000_000}
LOSS = {"syn_en": {"alpha": 150.0, "beta": 300.0, "e": -0.25, "E": 1.7}}
ERROR = {"epsilon": 0.75, "k": 3.0, "gamma": 0.6}


def grid(table: pd.DataFrame) -> pd.DataFrame:
    keep = table["size"].isin(["c1", "c2", "c3", "c4"]) | (table["size"] == "c6") & (table["multiplier"] == 20)
    keep |= (table["size"] == "c5") & table["multiplier"].isin([20, 80])
    return table[keep.fillna(False)].reset_index(drop=True)


@pytest.fixture(scope="module")
def lawful() -> pd.DataFrame:
    return grid(law_table(LOSS, ERROR, SIZES, (20, 40, 80, 320), noise=0.003, seed=1, seeds=3))


def _sentence(lines: list[str], *words: str) -> str:
    found = [line for line in lines if all(w in line for w in words)]
    assert len(found) == 1, (words, lines)
    return found[0]


def test_a_lawful_ladder_is_told_as_predicted_within_its_numbers(lawful):
    rep = replicate(lawful, n_bootstrap=100)
    lines = replication_story(rep)
    runs = rep.result.runs.set_index("run_id")
    for target, run_id in rep.roles["syn_en"].targets.items():
        line = _sentence(lines, "over-training law predicts", f"{target} (")
        row = runs.loc[run_id]
        assert f"at {row['predicted']:.4g} against {row['observed']:.4g} observed" in line
        assert f"{100 * row['rel_error']:.1f} %" in line and "covers it" in line
    assert not any("irreducible loss" in line or "do not yet scale" in line for line in lines)


def test_a_ladder_whose_targets_fall_below_the_fitted_E_is_told_why_it_misses(lawful):
    bent = lawful.copy()
    target = bent["size"].isin(["c5", "c6"]) & (bent["kind"] == "val_loss")
    bent.loc[target, "value"] = 1.5  # the larger runs reach below the fit runs' irreducible loss (1.7)
    lines = replication_story(replicate(bent, n_bootstrap=0))
    line = _sentence(lines, "irreducible loss E =")
    assert "c5-M20, c5-M80, c6-M20 reached" in line and "predicts them too high" in line
    missed = _sentence(lines, "predicts c6-M20")
    assert re.search(r"\d+\.\d % high", missed) and float(re.search(r"([\d.]+) % high", missed)[1]) > 10


def test_a_chained_miss_is_traced_to_the_loss_prediction(lawful):
    shifted = lawful.copy()
    # the larger runs' loss is lower than the law says, and their error is what Err(L) gives at that loss
    big = shifted["size"].isin(["c5", "c6"]) & (shifted["multiplier"] != 20) | (shifted["size"] == "c6")
    loss_rows = big & (shifted["kind"] == "val_loss")
    shifted.loc[loss_rows, "value"] *= 0.93
    task_rows = big & (shifted["kind"] == "task")
    shifted.loc[task_rows, "value"] += 0.04
    lines = replication_story(replicate(shifted, n_bootstrap=0))
    line = _sentence(lines, "downstream", "c6-M20")
    assert "the error law alone, at the observed loss" in line
    assert "comes mostly from the loss prediction fed into it;" in line or "the error law itself" in line
    assert re.search(r"one seed's error moves by SD [\d.]+ \([\d.]+ % of the observed\), so the observed 3-seed "
                     r"mean within [\d.]+ %\.$", line)  # fmt: skip


def test_a_chained_hit_made_of_two_misses_that_cancel_is_told_so(lawful):
    """The targets' loss 4 % below the law, their error as the law gives it at the law's loss: the chained
    prediction lands on the observed error while the error law at the observed loss misses it."""
    shifted = lawful.copy()
    big = (shifted["size"].isin(["c5", "c6"]) & (shifted["multiplier"] != 20) | (shifted["size"] == "c6")) & (
        shifted["kind"] == "val_loss"
    )
    shifted.loc[big, "value"] *= 0.96
    rep = replicate(shifted, n_bootstrap=0)
    row = rep.result.runs.set_index("run_id").loc[rep.roles["syn_en"].targets["c6-M20"]]
    assert abs(row["error_rel_error"]) < abs(row["error_at_observed_rel_error"]) / 2
    line = _sentence(replication_story(rep), "downstream", "c6-M20")
    assert "the two cancel, so the chained figure does not show that the error law holds" in line


def test_task_story_counts_designed_hits_and_names_the_misses():
    verdicts = Classification("own", (
        Verdict("smooth", "predictable", 0.93, {"intended": "predictable"}),
        Verdict("tense", "noisy", 0.71, {"intended": "predictable", "noise": {"kind": "seed", "sd": 0.12}}),
        Verdict("extra", "trendless", 0.99, {}),
    ))  # fmt: skip
    chains = pd.DataFrame([{"task": "smooth", "dataset": "syn_en", "target": "c5-M40", "observed": 0.2,
                            "predicted": 0.23, "rel_error": 0.15, "at_observed_rel_error": 0.02}])  # fmt: skip
    lines = task_story(verdicts, chains)
    assert lines[0] == "Designed tasks: 1 of 2 land in their intended class with confidence at least 0.8 (smooth)."
    assert lines[1].startswith("tense is meant to be predictable but is judged noisy at confidence 0.71")
    assert "gives 0.23 against 0.2 observed (15.0 % off; at the observed loss 2.0 %)" in lines[2]


def test_chained_task_errors_fit_each_task_alone(lawful):
    chains = chained_task_errors(lawful, ["task_a"])
    assert set(chains["target"]) == {"c5-M80", "c6-M20"} and set(chains["task"]) == {"task_a"}
    assert (chains["rel_error"] < 0.05).all()  # a lawful table: each task's own chain predicts it


def test_report_with_the_replicate_protocol_says_what_it_shows(tmp_path, lawful):
    path, out = tmp_path / "runs.parquet", tmp_path / "report"
    lawful.to_parquet(path)
    args = ["report", str(path), "--out", str(out), "--protocol", "replicate", "--classify-bootstrap", "10"]
    assert main(args) == 0
    html = (out / "index.html").read_text()
    assert "<h2>What this shows</h2>" in html and "The over-training protocol on these runs" in html
    assert "over-training law predicts c6-M20" in html and "<th>compute_ratio</th>" in html


def test_report_with_the_replicate_protocol_holds_the_error_asymptote_at_chance(tmp_path, lawful, capsys):
    path, out = tmp_path / "runs.parquet", tmp_path / "report"
    lawful.assign(chance=np.where(lawful["kind"] == "task", 0.25, np.nan)).to_parquet(path)
    args = ["report", str(path), "--out", str(out), "--protocol", "replicate", "--classify-bootstrap", "10",
            "--error-asymptote", "chance"]  # fmt: skip
    assert main(args) == 0
    html = (out / "index.html").read_text()
    assert "epsilon = 0.75 fixed" in html and "over-training law predicts c6-M20" in html
    assert "equivalently <code>L(C,M) = E + (a M^eta + b M^-eta) C^-eta</code>" in html  # the loss law is free
    assert main(["report", str(path), "--out", str(out), "--error-asymptote", "chance"]) == 2  # not replicate's
    assert capsys.readouterr().err.strip().endswith("--error-asymptote: only with --protocol replicate")


def test_the_replicate_protocol_holds_E_at_the_text_s_entropy(tmp_path, lawful, capsys):
    """--loss-floor entropy in analyze replicate and in the report: E held at the rows' entropy_floor (here
    the true 1.7), the targets predicted as with E free; refused outside the replicate protocol."""
    path, out = tmp_path / "runs.parquet", tmp_path / "report"
    own = (lawful["kind"] == "val_loss").to_numpy()
    lawful.assign(entropy_floor=np.where(own, 1.7, np.nan)).to_parquet(path)
    assert main(["replicate", str(path), "--bootstrap", "20", "--loss-floor", "entropy"]) == 0
    text = capsys.readouterr().out
    assert "syn_en: overtrain[E=1.7] fit on 5 runs" in text and "(E = 1.7 fixed)" in text
    assert re.search(r"predicts c6-M20 \(\S+ the largest fit run's compute\) at [\d.]+ against [\d.]+ observed: "
                     r"0\.\d %", text)  # fmt: skip
    args = ["report", str(path), "--out", str(out), "--protocol", "replicate", "--classify-bootstrap", "10"]
    assert main([*args, "--bootstrap", "20", "--loss-floor", "entropy"]) == 0
    html = (out / "index.html").read_text()
    assert "E = 1.7 fixed" in html and "equivalently" not in html  # the compute form is the free law's
    assert main(["report", str(path), "--out", str(out), "--loss-floor", "entropy"]) == 2
    assert capsys.readouterr().err.strip().endswith("--loss-floor: only with --protocol replicate")


def test_the_replicate_protocol_refuses_split_options(tmp_path, lawful, capsys):
    path = tmp_path / "runs.parquet"
    lawful.to_parquet(path)
    args = ["report", str(path), "--out", str(tmp_path / "r"), "--protocol", "replicate", "--heldout", "x"]
    assert main(args) != 0
    assert "--protocol replicate assigns the runs' roles itself" in capsys.readouterr().err


def test_a_fit_that_breaks_its_constraints_is_told_so_not_interpreted(lawful):
    rep = replicate(lawful, n_bootstrap=0)
    fit = rep.result.fits["syn_en"].loss
    broken = dataclasses.replace(fit, params={**fit.params, "e": 0.13, "E": 12.1})
    fits = {**rep.result.fits, "syn_en": dataclasses.replace(rep.result.fits["syn_en"], loss=broken)}
    rep = dataclasses.replace(rep, result=dataclasses.replace(rep.result, fits=fits))
    line = _sentence(replication_story(rep), "physical constraints")
    assert "should be" in line and not any("irreducible loss E =" in x for x in replication_story(rep))


def test_with_the_text_s_entropy_known_a_miss_is_also_told_against_the_loss_left_to_learn(lawful):
    """A relative error of the loss hides how close the loss is to its floor: with the text's entropy on the
    rows (1.6, below the law's E of 1.7), each target's miss is also a share of its distance to it."""
    floored = lawful.copy()
    floored.loc[floored["kind"] == "val_loss", "entropy_floor"] = 1.6
    rep = replicate(floored, n_bootstrap=0)
    runs = rep.result.runs.set_index("run_id")
    for target, run_id in rep.roles["syn_en"].targets.items():
        row = runs.loc[run_id]
        left = row["observed"] - 1.6
        share = abs(row["predicted"] - row["observed"]) / left
        line = _sentence(replication_story(rep), "over-training law predicts", f"{target} (")
        assert f"({100 * share:.1f} % of the {left:.3g} the loss lies above the text's entropy 1.6)" in line
    assert rep.result.fits["syn_en"].loss.status == "ok"  # E recovered at 1.7, above the entropy
