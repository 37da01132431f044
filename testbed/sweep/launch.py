"""`testbed sweep run`: hand the runs to a backend and report what became of each.

A backend is a function `(sweep, runs, progress, wait) -> {run_id: outcome}`, or None when it only submitted
the runs and has reported that itself; adding one is one `BACKENDS.register("name", function)` call, after
which `testbed sweep run SWEEP --backend name` uses it.
"""

from __future__ import annotations

from pathlib import Path

from analysis.registry import Registry
from testbed.config import RunConfig, SweepConfig
from testbed.errors import TestbedError
from testbed.sweep.stages import StageSpec

BACKENDS: Registry = Registry("backend", error=TestbedError)


def run_sweep(
    sweep: SweepConfig, runs: list[RunConfig], backend: str = "local", progress: bool = True, wait: bool = False
) -> int:
    """Run (local) or submit (slurm; with `wait`, until the jobs end) every run with work left.

    Prints one line per run that is not DONE and a summary; returns the command's exit code: 0 when every
    run is DONE (or, for slurm without `wait`, was submitted or is already queued), else 1.
    """
    launch = BACKENDS.get(backend)
    StageSpec.of(sweep).check()
    outcomes = launch(sweep, runs, progress=progress, wait=wait)
    if outcomes is None:
        return 0
    failed = {k: v for k, v in outcomes.items() if v != "DONE"}
    print(f"{len(outcomes) - len(failed)}/{len(outcomes)} runs DONE under {_sweep_dir(sweep)}")
    for run, outcome in failed.items():
        print(f"  {run}: {outcome}")
    return 1 if failed else 0


def _sweep_dir(sweep: SweepConfig) -> Path:
    return Path(sweep.out_dir) / sweep.name


@BACKENDS.register("local")
def _local(sweep: SweepConfig, runs: list[RunConfig], progress: bool, wait: bool) -> dict[str, str]:
    """Every run here, on each visible GPU as many side by side as `gpu.runs_per_device` packs (or
    `cpu_workers` without GPUs); `wait` changes nothing."""
    from testbed.rundir import owned
    from testbed.sweep.local import run_local

    where = _sweep_dir(sweep)
    where.mkdir(parents=True, exist_ok=True)
    with owned(where, what="sweep"):  # one driver per sweep: a second one is refused with one line
        return run_local(runs, StageSpec.of(sweep), progress=progress, cpu_workers=sweep.cpu_workers, gpu=sweep.gpu)


@BACKENDS.register("slurm")
def _slurm(sweep: SweepConfig, runs: list[RunConfig], progress: bool, wait: bool) -> dict[str, str] | None:
    """One Slurm job per run with work left; with `wait`, the outcomes once no job is queued or running."""
    from testbed.sweep import slurm

    outcomes = slurm.submit(sweep, runs)
    if wait:
        return slurm.wait(sweep, runs)
    for run, outcome in outcomes.items():
        if outcome != "DONE":
            print(f"  {run}: {outcome}")
    queued = sum(o != "DONE" for o in outcomes.values())
    print(
        f"{queued} runs submitted or already queued, {len(outcomes) - queued} DONE; "
        f"logs in {_sweep_dir(sweep) / 'slurm_logs'}; `testbed sweep status` follows them"
    )
    return None
