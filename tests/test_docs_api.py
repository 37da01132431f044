"""docs/api.md's worked example runs as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_worked_example_runs(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "docs/api.md").read_text(), re.S)
    assert len(blocks) == 1
    script = tmp_path / "example.py"
    script.write_text(blocks[0])
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg"},
                          timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "report:" in done.stdout and "error: " in done.stdout
    # the example stays on the analysis side: no torch, no testbed
    assert "import torch" not in blocks[0] and "from testbed" not in blocks[0]
