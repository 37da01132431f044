"""The backtest's arithmetic (analysis.advise_backtest) on a constructed study: a synthetic grid from a known law."""

import numpy as np
import pytest

from analysis.advise_backtest import STRATEGIES, Protocol, Setup, backtest, fill, seed_set
from analysis.select import final_losses
from analysis.synthetic import law_table

LAW = {"alpha": 300.0, "beta": 500.0, "e": -0.25, "E": 1.8}
SIZES = {"s1": 10_000_000, "s2": 30_000_000, "s3": 80_000_000, "s4": 200_000_000, "big": 2_000_000_000}


@pytest.fixture(scope="module")
def grid():
    table = law_table({"d": LAW}, sizes=SIZES, multipliers=(20, 40, 80), noise=0.0)
    runs = final_losses(table)
    small = runs[runs["size"] != "big"]
    paper = ("d-s1-m20", "d-s1-m80", "d-s2-m20", "d-s3-m20", "d-s4-m20")
    setup = Setup("d", paper, (), tuple(small["run_id"]), seed_set(small), {"big-M20": "d-big-m20"})
    return table, runs.set_index("run_id")["flops"].to_dict(), Protocol("own", "overtrain", {}, None, (setup,))


def test_fill_takes_runs_in_order_while_they_fit():
    flops = {"a": 1.0, "b": 5.0, "c": 3.0, "d": 1.0}
    assert fill(["b", "c", "d"], ["a"], flops, budget=5.0) == ("a", "c", "d")
    assert fill(["b"], ["a"], flops, budget=6.0) == ("a", "b")


def test_the_seed_set_is_the_smallest_size_and_the_second_at_m20(grid):
    _, _, protocol = grid
    assert protocol.setups[0].seed == ("d-s1-m20", "d-s1-m40", "d-s1-m80", "d-s2-m20")


def test_records_flops_budgets_and_the_random_median(grid):
    table, flops, protocol = grid
    result = backtest(table, protocol, budget_fraction=0.5, draws=3, n_bootstrap=20, advisor_draws=16)
    records = {r["strategy"]: r for r in result.records}
    assert set(records) == set(STRATEGIES)
    for record in result.records:
        assert {"strategy", "flops", "target", "quantity", "rel_error", "ci_width"} <= set(record)
        assert (record["target"], record["quantity"]) == ("big-M20", "loss")
    paper_flops = sum(flops[r] for r in protocol.setups[0].paper_fit)
    assert records["paper"]["flops"] == pytest.approx(paper_flops)
    assert result.budgets["d"] == pytest.approx(0.5 * paper_flops)
    for strategy in ("advisor", "random_median", "largest_first"):
        assert records[strategy]["flops"] <= 0.5 * paper_flops * (1 + 1e-9)
    largest = result.chosen["d"]["largest_first"]
    assert records["largest_first"]["flops"] == pytest.approx(sum(flops[r] for r in largest))
    left = [r for r in protocol.setups[0].pool if r not in largest]
    assert all(records["largest_first"]["flops"] + flops[r] > 0.5 * paper_flops for r in left)  # nothing else fits
    assert records["paper"]["rel_error"] < 1e-6  # exact data, the true law: the fit recovers it
    random = records["random_median"]
    assert random["draws"] == 3 and random["rel_error_p10"] <= random["rel_error"] <= random["rel_error_p90"]
    assert np.isfinite(records["advisor"]["ci_width"])


def test_any_registered_study_gets_its_roles_from_its_own_reproduction():
    """The generic path (a study without a backtest of its own, e.g. one added to STUDIES later), tried on gadre2024."""
    from analysis import gadre2024
    from analysis.advise_backtest import gadre_protocol, registry_protocol
    from analysis.studies import STUDIES

    table = gadre2024.load()
    generic, own = registry_protocol(STUDIES.get("gadre2024"), table), gadre_protocol(table)
    assert generic.errors == {} and generic.x == own.x == gadre2024.X
    for g, o in zip(generic.setups, own.setups, strict=True):
        assert g.dataset == o.dataset
        assert sorted(g.paper_fit) == sorted(o.paper_fit) and g.targets == o.targets
        assert sorted(g.pool) == sorted(o.pool) and g.seed == o.seed
