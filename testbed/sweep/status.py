"""Where each run of a sweep stands, read from its run directory."""

from __future__ import annotations

from collections import Counter

from testbed.config import RunConfig
from testbed.rundir import run_state
from testbed.train import run_dir_of


def sweep_status(runs: list[RunConfig]) -> list[dict]:
    rows = []
    for config in runs:
        run_dir = run_dir_of(config)
        state, detail = run_state(run_dir)
        rows.append({"run_id": run_dir.name, "state": state, "detail": detail, "run_dir": str(run_dir)})
    return rows


def format_status(rows: list[dict]) -> str:
    lines = [f"{r['run_id']:<34} {r['state']:<8} {r['detail']}".rstrip() for r in rows]
    counts = Counter(r["state"] for r in rows)
    lines.append(", ".join(f"{n} {state}" for state, n in sorted(counts.items())))
    return "\n".join(lines)
