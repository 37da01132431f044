"""Forecasts before the runs finish, and their scores after (analysis.forecast, `analyze forecast` / `score`)."""

import json
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from analysis.cli import main
from analysis.errors import AnalysisError
from analysis.forecast import fit_hash, forecast, read_plan, score
from analysis.schema import to_frame, write_table
from analysis.synthetic import law_table

LAW = {"alpha": 300.0, "beta": 500.0, "e": -0.25, "E": 1.8}
ERR = {"epsilon": 0.9, "k": 40.0, "gamma": 1.3}
SIZES = {"s1": 10_000_000, "s2": 30_000_000, "s3": 80_000_000, "s4": 200_000_000, "s5": 600_000_000}


@pytest.fixture(scope="module")
def full() -> pd.DataFrame:
    """Five sizes at four multipliers, two predictable tasks and one that stays at chance (trendless)."""
    table = law_table({"d": LAW}, ERR, sizes=SIZES, multipliers=(10, 20, 40, 80), noise=0.004, seed=2)
    final = table[table["final"] & (table["kind"] == "val_loss")]
    rng = np.random.default_rng(0)
    flat = final.assign(kind="task", name="flat", metric="acc", value=0.25 + 0.01 * rng.standard_normal(len(final)))
    return pd.concat([table, to_frame(flat.to_dict("records"))], ignore_index=True)


def _plan(full: pd.DataFrame) -> pd.DataFrame:
    runs = full[full["final"] & (full["kind"] == "val_loss")]
    return runs[["run_id", "size", "params", "dataset", "multiplier", "tokens", "flops"]].reset_index(drop=True)


def _done(full: pd.DataFrame) -> pd.DataFrame:
    return full[full["size"] != "s5"]


def test_forecast_then_score_round_trip(full):
    done = _done(full)
    record = forecast(done, _plan(full), n_bootstrap=100, classify_bootstrap=50, now=datetime(2025, 1, 1, tzinfo=UTC))
    assert record["created"] == "2025-01-01T00:00:00+00:00"
    assert sorted(record["fit"]["d"]["runs"]) == sorted(done.loc[done["final"], "run_id"].unique())
    assert record["fit"]["d"]["hash"] == fit_hash(done, record["fit"]["d"]["runs"])
    pending = {f["run_id"] for f in record["forecasts"]}
    assert pending == {f"d-s5-m{m}" for m in (10, 20, 40, 80)}
    by = {(f["run_id"], f["quantity"]): f for f in record["forecasts"]}
    loss = by["d-s5-m20", "loss"]
    assert loss["ci_low"] < loss["predicted"] < loss["ci_high"]
    assert by["d-s5-m20", "task_a"]["predictable"] and by["d-s5-m20", "task_a"]["ci_low"] is not None

    result = score(json.loads(json.dumps(record)), full)
    assert result["pending"] == 0 and len(result["scored"]) == len(record["forecasts"])
    judged = [s["covered"] for s in result["scored"] if s["covered"] is not None]
    assert result["coverage"] == pytest.approx(sum(judged) / len(judged))
    assert result["n_intervals"] == len(judged) == 4 * 3  # loss, task_a, task_b per run; flat has none
    observed = full[(full["run_id"] == "d-s5-m20") & full["final"] & (full["kind"] == "val_loss")]["value"].iloc[0]
    scored = next(s for s in result["scored"] if s["run_id"] == "d-s5-m20" and s["quantity"] == "loss")
    assert scored["observed"] == pytest.approx(observed)
    assert scored["error"] == pytest.approx(loss["predicted"] - observed)


def test_a_task_not_predictable_is_marked_and_has_no_interval(full):
    record = forecast(_done(full), _plan(full), n_bootstrap=50, classify_bootstrap=50)
    flat = [f for f in record["forecasts"] if f["quantity"] == "flat"]
    assert len(flat) == 4
    assert all(not f["predictable"] and f["class"] != "predictable" for f in flat)
    assert all(f["predicted"] is None and f["ci_low"] is None and f["ci_high"] is None for f in flat)


def test_score_counts_coverage_over_the_intervals_only(full):
    """Constructed: two intervals cover, one misses, one forecast has no interval, one run is not done yet."""
    loss = full[full["final"] & (full["kind"] == "val_loss")].set_index("run_id")["value"]
    a, b, c = (float(loss[f"d-s1-m{m}"]) for m in (10, 20, 40))
    items = [
        {"run_id": "d-s1-m10", "quantity": "loss", "predicted": a, "ci_low": a - 0.1, "ci_high": a + 0.1},
        {"run_id": "d-s1-m20", "quantity": "loss", "predicted": b, "ci_low": b - 0.1, "ci_high": b + 0.1},
        {"run_id": "d-s1-m40", "quantity": "loss", "predicted": c + 1, "ci_low": c + 0.5, "ci_high": c + 1.5},
        {"run_id": "d-s1-m80", "quantity": "flat", "predicted": None, "ci_low": None, "ci_high": None},
        {"run_id": "d-s9-m20", "quantity": "loss", "predicted": 3.0, "ci_low": 2.0, "ci_high": 4.0},
    ]
    record = {"created": "t", "x": "own", "metric": "acc", "level": 0.95, "forecasts": items}
    result = score(record, full)
    assert result["pending"] == 1
    assert result["n_intervals"] == 3 and result["coverage"] == pytest.approx(2 / 3)
    third = next(s for s in result["scored"] if s["run_id"] == "d-s1-m40")
    assert third["covered"] is False and third["rel_error"] == pytest.approx(1 / c)
    assert next(s for s in result["scored"] if s["quantity"] == "flat")["covered"] is None


def test_the_commands_write_and_score(full, tmp_path, capsys):
    write_table(_done(full), tmp_path / "done.parquet")
    write_table(full, tmp_path / "all.parquet")
    (tmp_path / "plan.json").write_text(_plan(full).to_json(orient="records"))
    out = tmp_path / "forecast.json"
    argv = ["forecast", str(tmp_path / "done.parquet"), "--runs", str(tmp_path / "plan.json"), "--out", str(out)]
    assert main([*argv, "--bootstrap", "50"]) == 0
    assert main(["score", str(out), str(tmp_path / "all.parquet"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert result["pending"] == 0 and result["coverage"] is not None


def test_bad_inputs_are_one_line_errors(tmp_path, capsys):
    sweep = tmp_path / "s.yaml"
    sweep.write_text("name: s\n")
    with pytest.raises(AnalysisError, match="testbed sweep plan .* --json"):
        read_plan(sweep)
    (tmp_path / "plan.json").write_text('[{"run_id": "a", "dataset": "d", "params": 1}]')
    with pytest.raises(AnalysisError, match=r"run \[0\] lacks key\(s\) multiplier"):
        read_plan(tmp_path / "plan.json")
    (tmp_path / "f.json").write_text("{}")
    assert main(["score", str(tmp_path / "f.json"), str(tmp_path / "none.parquet")]) == 2
    assert "f.json: not a forecast" in capsys.readouterr().err
