"""The advisor (analysis.advisor) on a synthetic ladder generated from a known law."""

import numpy as np
import pandas as pd
import pytest

from analysis.advisor import GAIN, PER_FLOP, Target, advise, interval_width
from analysis.errors import AnalysisError
from analysis.select import final_losses
from analysis.synthetic import law_table

LAW = {"alpha": 300.0, "beta": 500.0, "e": -0.25, "E": 1.8}
SIZES = {"s1": 10_000_000, "s2": 30_000_000, "s3": 80_000_000, "s4": 200_000_000, "s5": 600_000_000}
TARGET = [Target("big-M20", 5e9, 20)]


@pytest.fixture(scope="module")
def runs() -> pd.DataFrame:
    table = law_table({"d": LAW}, sizes=SIZES, multipliers=(10, 20, 40, 80), noise=0.01, seed=3)
    return final_losses(table)


def _done(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["size"].isin(["s1", "s2", "s3"])].reset_index(drop=True)


def _candidate(runs: pd.DataFrame, run_id: str, name: str, flops: float | None = None) -> pd.DataFrame:
    row = runs[runs["run_id"] == run_id].copy()
    row["run_id"] = name
    if flops is not None:
        row["flops"] = flops
    return row


def test_a_larger_model_beats_a_duplicate_of_the_same_cost(runs):
    done = _done(runs)
    useful = _candidate(runs, "d-s4-m20", "useful")
    duplicate = _candidate(runs, "d-s2-m20", "duplicate", flops=float(useful["flops"].iloc[0]))
    advice = advise(done, pd.concat([duplicate, useful]), TARGET, k=1, draws=48)
    assert [s.run_id for s in advice.steps] == ["useful"]
    assert advice.steps[0].widths["big-M20 loss"] < advice.widths["big-M20 loss"]
    assert "largest model yet" in advice.steps[0].reason


def test_a_run_of_a_known_configuration_at_a_much_higher_price_loses_to_a_new_size(runs):
    done = _done(runs)
    useful = _candidate(runs, "d-s5-m10", "useful")
    pricey = _candidate(runs, "d-s1-m20", "pricey", flops=10 * float(useful["flops"].iloc[0]))
    advice = advise(done, pd.concat([pricey, useful]), TARGET, k=2, draws=48)
    assert advice.steps[0].run_id == "useful"


def test_the_budget_and_k_bound_the_proposal(runs):
    done = _done(runs)
    candidates = runs[runs["size"].isin(["s4", "s5"])]
    budget = float(candidates["flops"].sort_values().iloc[:2].sum())
    advice = advise(done, candidates, TARGET, k=5, budget=budget, draws=32)
    assert 1 <= len(advice.steps) <= 2
    assert advice.steps[-1].total_flops <= budget * (1 + 1e-9)
    assert advice.rule in (PER_FLOP, GAIN) and advice.notes  # under a budget both plans are compared
    assert len(advise(done, candidates, TARGET, k=1, draws=32).steps) == 1


def test_errors_are_chained_when_the_points_have_them(runs):
    done = _done(runs).assign(error=lambda r: 0.9 - 30 * np.exp(-1.3 * r["loss"]))
    advice = advise(done, runs[runs["size"] == "s4"], TARGET, k=1, draws=32)
    assert advice.quantities == ("loss", "err")
    assert set(advice.widths) == {"big-M20 loss", "big-M20 err"}


def test_bad_input_is_one_line_naming_what(runs):
    done = _done(runs)
    with pytest.raises(AnalysisError, match="candidate runs lack column"):
        advise(done, runs[["run_id", "params"]], TARGET)
    with pytest.raises(AnalysisError, match="k=0"):
        advise(done, runs, TARGET, k=0)


def test_interval_width_is_the_normal_95_width_of_a_normal_sample():
    sample = np.random.default_rng(0).normal(0, 1, (20000, 1))
    assert interval_width(sample)[0] == pytest.approx(2 * 1.96, rel=0.03)
