"""Where a run in progress is: `<run dir>/progress.json`, written by the process that owns the run (stage, step
of steps, last training loss, a detail such as the data being prepared) and read by `sweep status` and the
local sweep's progress line. Cheap: the training loop writes it every few seconds, not every step.

Only meaningful while the run is owned (rundir.owner): a run that stopped leaves its last record behind.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

FILE = "progress.json"
EVERY_SECONDS = 2.0  # the training loop's writes, at most this often


def write(run_dir: Path, stage: str, step: int | None = None, steps: int | None = None, detail: str = "",
          loss: float | None = None) -> None:  # fmt: skip
    """Replace the run's progress record (atomically: a reader sees the old record or the new one)."""
    record = {"stage": stage, "step": step, "steps": steps, "detail": detail, "loss": loss, "pid": os.getpid(),
              "time": time.time()}  # fmt: skip
    path = Path(run_dir) / FILE
    staging = path.with_name(f".{FILE}.{os.getpid()}")
    try:
        staging.write_text(json.dumps(record))
        staging.replace(path)
    except OSError:  # progress is a courtesy: never fail a run over it
        staging.unlink(missing_ok=True)


def read(run_dir: Path) -> dict | None:
    try:
        record = json.loads((Path(run_dir) / FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def describe(record: dict | None, now: float | None = None) -> str:
    """`train step 120/400 (30%), loss 3.21`, `data: training the tokenizer (for 12 s)`, or `eval`."""
    if not record:
        return ""
    stage, step, steps = record.get("stage", "?"), record.get("step"), record.get("steps")
    text = str(stage)
    if step is not None and steps:
        text += f" step {step}/{steps} ({step / steps:.0%})"
    if record.get("loss") is not None:
        text += f", loss {record['loss']:.3g}"
    if record.get("detail"):
        since = (now or time.time()) - record.get("time", 0)
        text += f": {record['detail']}" + (f" (for {since:.0f} s)" if since >= 1 else "")
    return text


def format_duration(seconds: float) -> str:
    """A duration people read: `45 s`, `3 min 20 s`, `2.4 h`, `36 h`, `1,250 h`."""
    if not math.isfinite(seconds):
        return "unknown"
    if seconds < 1:
        return "< 1 s" if seconds > 0 else "0 s"
    if round(seconds) < 60:
        return f"{round(seconds)} s"
    if seconds < 3600:
        minutes, rest = divmod(round(seconds), 60)
        if minutes == 60:
            return "1.0 h"
        return f"{minutes} min" + (f" {rest} s" if rest else "")
    hours = seconds / 3600
    return f"{hours:.1f} h" if hours < 10 else f"{hours:,.0f} h"
