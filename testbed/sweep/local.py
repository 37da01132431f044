"""The local backend: runs one after another in this process; a failing run is recorded, not fatal."""

from __future__ import annotations

import sys
from collections.abc import Callable

from testbed.config import RunConfig
from testbed.train import Preempted, run_dir_of, train


def run_local(runs: list[RunConfig], after_train: Callable | None = None, progress: bool = True) -> dict[str, str]:
    """Train each run (skipping DONE, resuming PARTIAL), then `after_train(run_dir)`. Returns id -> outcome."""
    outcomes = {}
    for i, config in enumerate(runs, 1):
        run_dir = run_dir_of(config)
        print(f"[{i}/{len(runs)}] {run_dir.name}", file=sys.stderr, flush=True)
        try:
            train(config, progress=progress)
            if after_train is not None:
                after_train(run_dir)
            outcomes[run_dir.name] = "DONE"
        except Preempted:
            raise
        except Exception as err:  # recorded in the run dir by train(); the sweep goes on
            outcomes[run_dir.name] = f"FAILED: {type(err).__name__}: {err}".splitlines()[0]
            print(f"  {outcomes[run_dir.name]}", file=sys.stderr, flush=True)
    return outcomes
