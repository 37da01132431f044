"""scripts/gpu_check.sh --dry-run: the lent-GPU check's plumbing end to end on the CPU (micro ladder, half-second
windows): every part runs and the report has its tables, the packed row and MEASURED_MFU lines."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_gpu_check_dry_run_writes_every_part(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(REPO / "scripts/gpu_check.sh"), "--dry-run"], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (report,) = (tmp_path / "benchmarks" / "gpu").glob("cpu_*.md")
    text = report.read_text()
    assert "DRY RUN" in text and "Command: `bash scripts/gpu_check.sh --dry-run`" in text
    for title in ("## 1. Each rung alone", "## 2. Small rungs packed", "## 3. s2 per attention backend", "## 4."):
        assert title in text
    assert "| s1 | default | 32 |" in text and "| s2 | default | 64 |" in text  # two micro-batches a rung
    assert "| s1 | 2 | " in text  # two processes side by side, their rates summed
    assert "| s2 | math | 4 | 8 |" in text  # the other head_dim
    assert "not run" not in text and "error" not in text.lower()
    assert '("cpu", "decoder", "micro", "s1", False, 2):' in text  # ready for testbed/devices.py
    assert "tests/test_gpu.py`: 5 skipped" in text
