"""`testbed sweep run`: hand the runs to a backend and report what became of each."""

from __future__ import annotations

from pathlib import Path

from testbed.config import RunConfig, SweepConfig
from testbed.errors import TestbedError
from testbed.sweep.stages import StageSpec

BACKENDS = ("local", "slurm")


def run_sweep(sweep: SweepConfig, runs: list[RunConfig], backend: str = "local", progress: bool = True,
              wait: bool = False) -> int:
    """Run (local) or submit (slurm; with `wait`, until the jobs end) every run with work left.

    Prints one line per run that is not DONE and a summary; returns the command's exit code: 0 when every
    run is DONE (or, for slurm without `wait`, was submitted or is already queued), else 1.
    """
    where = Path(sweep.out_dir) / sweep.name
    StageSpec.of(sweep).check()
    if backend == "local":
        from testbed.rundir import owned
        from testbed.sweep.local import run_local

        where.mkdir(parents=True, exist_ok=True)
        with owned(where, what="sweep"):  # one driver per sweep: a second one is refused with one line
            outcomes = run_local(runs, StageSpec.of(sweep), progress=progress, cpu_workers=sweep.cpu_workers)
    elif backend == "slurm":
        from testbed.sweep import slurm

        outcomes = slurm.submit(sweep, runs)
        if not wait:
            for run, outcome in outcomes.items():
                if outcome != "DONE":
                    print(f"  {run}: {outcome}")
            queued = sum(o != "DONE" for o in outcomes.values())
            print(f"{queued} runs submitted or already queued, {len(outcomes) - queued} DONE; "
                  f"logs in {where / 'slurm_logs'}; `testbed sweep status` follows them")
            return 0
        outcomes = slurm.wait(sweep, runs)
    else:
        raise TestbedError(f"--backend {backend!r}: known backends: {', '.join(BACKENDS)}")
    failed = {k: v for k, v in outcomes.items() if v != "DONE"}
    print(f"{len(outcomes) - len(failed)}/{len(outcomes)} runs DONE under {where}")
    for run, outcome in failed.items():
        print(f"  {run}: {outcome}")
    return 1 if failed else 0
