"""`testbed sweep advise`: candidates from the planner, the proposal a sweep file `testbed sweep run` accepts."""

import json

import numpy as np
import pytest

from analysis.laws import get_law
from analysis.schema import to_frame, write_table
from testbed.cli import main
from testbed.config import load_sweep_config
from testbed.ladder import run_id
from testbed.sweep.expand import expand
from testbed.sweep.plan import plan_rows

SWEEP = "configs/sweeps/overtrain_cpu.yaml"
LAW = {"alpha": 30.0, "beta": 60.0, "e": -0.3, "E": 1.5}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Seed-0 syn_en runs of c1-c4 at the sweep's multipliers (c1 only up to M = 80), losses from a known law."""
    rows, rng = [], np.random.default_rng(0)
    for r in plan_rows(expand(load_sweep_config(SWEEP))):
        if r["dataset"] != "syn_en" or r["size"] in ("c5", "c6") or r["seed"] or r["multiplier"] > 80:
            continue
        loss = get_law("overtrain")([[r["params"]], [r["multiplier"]]], LAW)[0] * (1 + 0.005 * rng.standard_normal())
        keys = ("run_id", "size", "params", "dataset", "multiplier", "seed", "tokens", "flops")
        rows.append(
            {k: r[k] for k in keys} | dict(kind="val_loss", name="syn_en", metric="loss", value=loss, final=True)
        )
    path = tmp_path_factory.mktemp("advise") / "results.parquet"
    write_table(to_frame(rows), path)
    return path


def test_the_proposal_loads_as_a_sweep_of_the_proposed_runs(results, tmp_path, capsys):
    out = tmp_path / "next.yaml"
    argv = ["sweep", "advise", SWEEP, "--results", str(results), "--target", "size=c6", "multiplier=20",
            "dataset=syn_en", "--k", "2", "--draws", "24", "--json", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    advice = json.loads(capsys.readouterr().out)
    proposed = [s["run_id"] for s in advice["steps"]]
    assert len(proposed) == 2 and advice["dataset"] == "syn_en"
    sweep = load_sweep_config(out)
    assert [run_id(c) for c in expand(sweep, str(out))] == proposed
    assert sweep.name == "overtrain_cpu" and sweep.out_dir == "runs"  # the runs land beside the sweep's others
    text = out.read_text()
    assert all(step["reason"] in text for step in advice["steps"])  # each choice explained in one line
    assert "expected 95 % widths after: c6-M20 loss" in text
    assert "dec-c1-syn_en-m20-seed0" not in proposed  # a done run is never proposed


def test_a_bad_target_is_one_line_and_exit_2(results, capsys):
    base = ["sweep", "advise", SWEEP, "--results", str(results), "--target"]
    assert main([*base, "size=c9", "multiplier=20", "dataset=syn_en"]) == 2
    assert capsys.readouterr().err.strip() == (
        "testbed: error: --target: size=c9: no such rung in ladder cpu (c1, c2, c3, c4, c5, c6)"
    )
    assert main([*base, "size=c6", "multiplier=20"]) == 2
    assert "name dataset=" in capsys.readouterr().err
    assert main([*base, "params=big", "tokens=1e9", "dataset=syn_en"]) == 2
    assert "params=big: not a number" in capsys.readouterr().err
