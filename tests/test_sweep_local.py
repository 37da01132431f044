"""Local backend: a failed run and a killed run never stop the others; a re-run does only what is missing."""

import json
import os
import signal
import threading
import time

from testbed.checkpoint import list_steps
from testbed.cli import main
from testbed.config import load_sweep_config
from testbed.results import read_rows
from testbed.rundir import owner
from testbed.sweep.expand import expand
from testbed.sweep.local import run_local

SWEEP = """
name: faults
defaults:
  model: {arch: decoder, ladder: micro}
  data: {validation: [syn_en], val_tokens: 1024}
  train: {log_spaced_checkpoints: 2}
grid:
  - {sizes: [s1], datasets: [syn_en], multipliers: [1, 2]}
  - {sizes: [s2], datasets: [syn_en], multipliers: [1, 6]}
"""
FAILING, KILLED = "dec-s1-syn_en-m1-seed0", "dec-s2-syn_en-m6-seed0"


def _kill_after_first_checkpoint(run_dir, killed: dict) -> None:
    """SIGKILL the process training `run_dir` once it has a checkpoint short of the end."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (run_dir / "DONE").exists():
        steps, holder = list_steps(run_dir / "ckpt"), owner(run_dir)
        if steps and holder:
            pid = int(holder.split()[1])
            os.kill(pid, signal.SIGKILL)
            killed.update(pid=pid, step=steps[-1])
            return
        time.sleep(0.02)


def _status(capsys, sweep, out) -> dict:
    capsys.readouterr()
    assert main(["sweep", "status", str(sweep), f"out_dir={out}", "--json"]) == 0
    return {r["run_id"]: r for r in json.loads(capsys.readouterr().out)}


def test_failed_and_killed_runs_leave_the_others_done(tmp_path, runs_dir, capsys, monkeypatch):
    sweep = tmp_path / "faults.yaml"
    sweep.write_text(SWEEP)
    out = f"out_dir={runs_dir}"
    monkeypatch.setenv("TESTBED_INJECT_NAN", f"{FAILING}@3")
    killed: dict = {}
    killer = threading.Thread(target=_kill_after_first_checkpoint, args=(runs_dir / "faults" / KILLED, killed))
    killer.start()
    assert main(["sweep", "run", str(sweep), out, "--quiet"]) == 1
    killer.join()
    printed = capsys.readouterr().out
    assert "2/4 runs DONE" in printed and "KILLED (SIGKILL)" in printed and "non-finite loss" in printed

    status = _status(capsys, sweep, runs_dir)
    assert status[FAILING]["state"] == "FAILED" and "non-finite loss nan at step 3" in status[FAILING]["detail"]
    assert status[KILLED]["state"] == "PARTIAL" and f"step {killed['step']}" in status[KILLED]["detail"]
    others = [rid for rid in status if rid not in (FAILING, KILLED)]
    assert [status[rid]["state"] for rid in others] == ["DONE", "DONE"]
    done_marks = {rid: (runs_dir / "faults" / rid / "DONE").stat().st_mtime_ns for rid in others}

    # The re-run goes through two workers in parallel, as on a node with two GPUs (here both see none).
    monkeypatch.delenv("TESTBED_INJECT_NAN")
    runs = expand(load_sweep_config(sweep, [out]))
    assert run_local(runs, progress=False, gpus=["", ""]) == {rid: "DONE" for rid in status}
    for rid in (FAILING, KILLED):  # only the missing runs ran, each with its own log
        assert f"{rid}: train" in (runs_dir / "faults" / "logs" / f"{rid}.log").read_text()
    assert sorted(p.stem for p in (runs_dir / "faults" / "logs").iterdir()) == sorted([FAILING, KILLED])
    assert all(r["state"] == "DONE" for r in _status(capsys, sweep, runs_dir).values())
    assert done_marks == {rid: (runs_dir / "faults" / rid / "DONE").stat().st_mtime_ns for rid in others}
    rows = [r for r in read_rows(runs_dir / "faults" / KILLED) if r["kind"] == "val_loss"]
    steps = [r["step"] for r in rows]
    assert len(steps) == len(set(steps)) and min(steps) <= killed["step"]  # resumed, each checkpoint once
