"""Progress: the run's progress record, `sweep status` showing the stage and step of running work, the local
sweep's progress line, train_loss rows every ~1 % of a run (never final, ignored by the fits)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from analysis.schema import KINDS, to_frame
from analysis.select import final_losses
from testbed import progress
from testbed.config import load_sweep_config
from testbed.ladder import plan_run
from testbed.resolve import load_run_config
from testbed.results import read_rows
from testbed.rundir import RunDir
from testbed.sweep.expand import expand
from testbed.sweep.local import SweepProgress
from testbed.sweep.status import format_status, sweep_status
from testbed.train import train
from testbed.training_run import TRAIN_LOSS_ROWS

REPO = Path(__file__).resolve().parents[1]


def test_progress_record_round_trip(tmp_path):
    assert progress.read(tmp_path) is None and progress.describe(None) == ""
    progress.write(tmp_path, "train", 120, 400, loss=3.2101)
    record = progress.read(tmp_path)
    assert record["stage"] == "train" and record["step"] == 120
    assert progress.describe(record) == "train step 120/400 (30%), loss 3.21"
    progress.write(tmp_path, "data", detail="training the syn_en tokenizer")
    assert progress.describe(progress.read(tmp_path), now=time.time() + 12).startswith(
        "data: training the syn_en tokenizer (for 1"
    )
    assert [p.name for p in tmp_path.iterdir()] == [progress.FILE]  # no staging file left


def test_sweep_line_says_runs_done_eta_and_each_workers_stage(tmp_path):
    line = SweepProgress(4, 2)
    first, second = tmp_path / "dec-s1-a", tmp_path / "dec-s2-b"
    first.mkdir(), second.mkdir()
    line.start("CPU worker 0", first, ["train", "eval"])
    assert line.line() == "sweep: 0/4 runs done, ETA after the first run | CPU worker 0: dec-s1-a train (starting)"
    line.current["CPU worker 0"] = (first, ["train", "eval"], time.time() - 60)  # it started a minute ago
    line.finish("CPU worker 0")
    line.finish()  # a run found done: counted, not timed
    line.start("CPU worker 1", second, ["train"])
    progress.write(second, "train", 5, 10, loss=2.0)
    text = line.line()
    # a minute a run, 2 runs left on 2 workers, one just begun: about a minute
    assert text.split(" | ")[0] in (
        "sweep: 2/4 runs done, ETA 1 min",
        "sweep: 2/4 runs done, ETA 59 s",
        "sweep: 2/4 runs done, ETA 58 s",
    )
    assert "CPU worker 1: dec-s2-b train step 5/10 (50%)" in text


def test_the_eta_weighs_the_runs_left_by_their_plan(tmp_path):
    """Two small runs done (each took 2x its plan), one large run left: its plan x 2, not the small runs' mean."""
    planned = {"small-a": 30.0, "small-b": 30.0, "found-done": 30.0, "large": 600.0}
    line = SweepProgress(4, 1, planned)
    for name in ("small-a", "small-b"):
        (tmp_path / name).mkdir()
        line.start("CPU worker 0", tmp_path / name, ["train"])
        line.current["CPU worker 0"] = (tmp_path / name, ["train"], time.time() - 60)  # took a minute: 2x plan
        line.finish("CPU worker 0")
    line.finish(run="found-done")  # found done: counted, neither timed nor waiting
    assert line.line() == "sweep: 3/4 runs done, ETA 20 min"
    (tmp_path / "large").mkdir()
    line.start("CPU worker 0", tmp_path / "large", ["train"])
    line.current["CPU worker 0"] = (tmp_path / "large", ["train"], time.time() - 300)  # 5 of its 20 minutes
    assert line.line().split(" | ")[0] == "sweep: 3/4 runs done, ETA 15 min"
    assert SweepProgress(4, 1).planned == {}  # without a plan: the mean finished run (the test above)


@pytest.fixture
def tiny(tmp_path):
    path = str(REPO / "configs/sweeps/tiny.yaml")
    return expand(load_sweep_config(path, [f"out_dir={tmp_path}"]), path)


def test_status_shows_the_stage_and_step_of_a_running_run(tiny):
    config = tiny[0]
    run_dir = RunDir.of(config).prepare(config).path
    progress.write(run_dir, "train", 37, 120, loss=4.5)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from testbed.rundir import owned\n"
         f"with owned({str(run_dir)!r}):\n    print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        rows = {r["run_id"]: r for r in sweep_status(tiny)}
        mine = rows[run_dir.name]
        assert mine["state"] == "RUNNING"
        assert mine["detail"].startswith("train step 37/120 (31%), loss 4.5; pid")
        assert "train step 37/120" in format_status(list(rows.values()))
    finally:
        holder.kill()
        holder.wait()
    assert sweep_status(tiny)[0]["state"] == "TODO"  # no live owner: the leftover record is not shown


def test_a_run_writes_train_loss_rows_and_its_progress(tmp_path):
    args = ["model.size=s1", "train.multiplier=1", "data.validation=[syn_en]", "data.val_tokens=1024"]
    config = load_run_config(None, [*args, f"out_dir={tmp_path}"])
    plan = plan_run(config)
    run_dir = train(config, progress=False)
    rows = [r for r in read_rows(run_dir) if r["kind"] == "train_loss"]
    every = max(1, -(-plan.steps // TRAIN_LOSS_ROWS))
    expected = sorted({*range(every, plan.steps + 1, every), plan.steps})
    assert [r["step"] for r in rows] == expected
    assert not any(r["final"] for r in rows) and all(r["name"] == "train" and r["metric"] == "loss" for r in rows)
    assert rows[-1]["value"] < rows[0]["value"]  # it learned
    record = json.loads((run_dir / progress.FILE).read_text())
    assert record["stage"] == "train" and record["step"] == record["steps"] == plan.steps

    # the analysis side accepts the kind and the fits ignore it
    assert "train_loss" in KINDS
    table = to_frame(read_rows(run_dir))
    assert set(final_losses(table)["loss"]) == {
        r["value"] for r in read_rows(run_dir) if r["kind"] == "val_loss" and r["final"]
    }
    assert isinstance(table, pd.DataFrame)
