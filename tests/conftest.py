"""Offline, on the CPU, with a token cache shared by every test (writes to it are atomic)."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ[key] = "1"
os.environ["WANDB_MODE"] = "offline"
os.environ.setdefault("TESTBED_CACHE", str(REPO / ".cache" / "testbed-tests"))


@pytest.fixture
def runs_dir(tmp_path) -> Path:
    return tmp_path / "runs"
