"""Tracking: a run mirrors its config and numbers into an offline wandb run inside its run dir."""

import wandb

from testbed.resolve import load_run_config
from testbed.train import train

TINY = ["model.size=s1", "train.multiplier=1", "data.validation=[syn_en]", "data.val_tokens=1024", "sweep=tracked"]


def test_offline_wandb_run_appears_in_the_run_dir(runs_dir, monkeypatch):
    monkeypatch.setenv("TESTBED_TRACK", "wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    run_dir = train(load_run_config(None, [*TINY, f"out_dir={runs_dir}"]), progress=False)
    wandb.teardown()  # the wandb service writes the run's log asynchronously; this flushes it
    (offline,) = (run_dir / "wandb").glob("offline-run-*")
    (log,) = offline.glob("run-*.wandb")
    data = log.read_bytes()
    assert b"val/syn_en" in data and b"train/loss" in data and b"tracked" in data  # metrics, sweep group

    monkeypatch.setenv("TESTBED_TRACK", "none")
    quiet = train(load_run_config(None, [*TINY, "train.multiplier=2", f"out_dir={runs_dir}"]), progress=False)
    assert (quiet / "DONE").is_file() and not (quiet / "wandb").exists()
