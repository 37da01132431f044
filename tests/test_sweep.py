"""A tiny sweep from config to results table to fitted law; failures are recorded and re-runs do only what is
missing."""

import json

import pandas as pd

from testbed.cli import main

SWEEP = "configs/sweeps/tiny.yaml"


def _status(capsys, out) -> dict:
    capsys.readouterr()
    assert main(["sweep", "status", SWEEP, f"out_dir={out}", "--json"]) == 0
    return {r["run_id"]: r for r in json.loads(capsys.readouterr().out)}


def test_sweep_plan_run_fail_resume_collect_fit(runs_dir, capsys, monkeypatch):
    out = f"out_dir={runs_dir}"
    assert main(["sweep", "plan", SWEEP, out, "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert len(plan) == 6 and {"run_id", "size", "params", "dataset", "multiplier", "tokens", "flops"} <= set(plan[0])
    assert all(p["tokens"] == round(p["multiplier"] * p["params"]) for p in plan)

    failing = "dec-s2-syn_en-m2-seed0"
    monkeypatch.setenv("TESTBED_INJECT_NAN", f"{failing}@20")
    assert main(["sweep", "run", SWEEP, out, "--quiet"]) == 1  # one failure, the others finish
    status = _status(capsys, runs_dir)
    assert status[failing]["state"] == "FAILED" and "non-finite loss" in status[failing]["detail"]
    assert sum(r["state"] == "DONE" for r in status.values()) == 5
    done_marks = {rid: (runs_dir / "tiny" / rid / "DONE").stat().st_mtime for rid in status if rid != failing}

    monkeypatch.delenv("TESTBED_INJECT_NAN")
    assert main(["sweep", "run", SWEEP, out, "--quiet"]) == 0
    assert all(r["state"] == "DONE" for r in _status(capsys, runs_dir).values())
    assert done_marks == {rid: (runs_dir / "tiny" / rid / "DONE").stat().st_mtime for rid in done_marks}

    table_path = runs_dir / "results.parquet"
    assert main(["results", "collect", str(runs_dir / "tiny"), "--out", str(table_path)]) == 0
    table = pd.read_parquet(table_path)
    final = table[(table.kind == "val_loss") & table.final]
    assert final.run_id.nunique() == 6 and set(final.name) == {"syn_en"}
    resumed = table[(table.run_id == failing) & (table.kind == "val_loss")]
    assert resumed.step.is_unique  # the resumed run measured each checkpoint once

    capsys.readouterr()
    assert main(["analyze", "fit", str(table_path), "--law", "overtrain", "--json"]) == 0
    fit = json.loads(capsys.readouterr().out)
    text = json.dumps(fit)
    assert "dec-s3-syn_en-m1-seed0" in text and "rel_error" in text
