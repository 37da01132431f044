"""Offline, on the CPU, one thread per test process, with a token cache shared by every test. Imports no
torch, so the fast tier (`make test-fast`: config, analysis, structure) starts in a second.

`make test` runs two pytest workers on two cores: a second torch thread per worker oversubscribes
the cores and slows tiny models 10x or more. Cache writes are atomic, so workers can share it.
"""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ[key] = "1"
os.environ["WANDB_MODE"] = "offline"
os.environ.setdefault("TESTBED_TRACK", "none")  # wandb costs ~1.5 s a run; test_sweep_tracking turns it on
os.environ["OMP_NUM_THREADS"] = "1"  # torch reads it when first imported; also for the subprocesses tests start
os.environ.setdefault("TESTBED_CACHE", str(REPO / ".cache" / "testbed-tests"))


@pytest.fixture
def runs_dir(tmp_path) -> Path:
    return tmp_path / "runs"
