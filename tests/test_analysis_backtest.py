"""analyze backtest: each rung predicted from the sizes below it."""

import numpy as np
import pytest

from analysis.backtest import backtest, plot, rungs
from analysis.cli import main
from analysis.errors import AnalysisError
from analysis.schema import write_table
from analysis.select import final_losses
from analysis.synthetic import law_table

LOSS = {"web": {"alpha": 500.0, "beta": 1500.0, "e": -0.3, "E": 1.8}}
ERROR = {"epsilon": 0.9, "k": 30.0, "gamma": 1.5}
SIZES = {"s1": 10_000_000, "s2": 30_000_000, "s3": 100_000_000, "s4": 300_000_000, "s5": 1_000_000_000}


@pytest.fixture(scope="module")
def table():
    return law_table(LOSS, ERROR, sizes=SIZES, multipliers=(10, 20, 40))


def test_rungs_are_the_sizes_above_the_smallest_few(table):
    assert rungs(final_losses(table, "web"), 3) == [3e8, 1e9]
    with pytest.raises(AnalysisError, match="5 model sizes with final losses: a backtest needs more than 5"):
        rungs(final_losses(table, "web"), 5)


def test_exact_laws_give_zero_error_and_the_compute_ratio(table):
    result = backtest(table, "web")
    loss = result.rows[result.rows["quantity"] == "loss"].set_index("run_id")
    assert set(loss["rung"]) == {"s4", "s5"} and len(loss) == 6
    assert loss["rel_error"].max() < 1e-6
    # s5 at M = 40 predicted from s1..s4: compute 6 N D over the largest fit run's (s4, M = 40)
    assert loss.at["web-s5-m40", "compute_ratio"] == pytest.approx((1e9 / 3e8) ** 2)
    assert loss.at["web-s5-m40", "fit_sizes"] == 4 and loss.at["web-s4-m10", "fit_sizes"] == 3
    tasks = result.rows[result.rows["quantity"] != "loss"]
    assert set(tasks["quantity"]) == {"task_a", "task_b"} and np.isfinite(tasks["abs_error"]).all()
    assert list(result.by_distance()["rung"]) == ["s4", "s4", "s5", "s5"]


def test_cli_table_json_and_plot(table, tmp_path, capsys):
    path = write_table(table, tmp_path / "runs.parquet")
    assert main(["backtest", str(path), "--x", "web", "--plot", str(tmp_path / "b.png")]) == 0
    assert "s5" in capsys.readouterr().out and (tmp_path / "b.png").stat().st_size > 0
    assert main(["backtest", str(path), "--x", "web", "--json", "--min-fit-sizes", "4"]) == 0
    assert '"rung": "s5"' in capsys.readouterr().out
    assert plot(backtest(table, "web"), tmp_path / "c.png").is_file()
