"""Translation finetuning of every trained run of a sweep (`testbed finetune SWEEP.yaml`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from testbed.config import load_sweep_config
from testbed.errors import TestbedError
from testbed.rundir import RunDir
from testbed.sweep.expand import expand
from testbed.translation.data import resolve_task
from testbed.translation.protocol import load_protocol
from testbed.translation.run import FinetuneReport, finetune_run


def finetune_sweep(
    sweep_path: str | Path,
    overrides: Sequence[str] = (),
    tasks: list[str] | None = None,
    sizes: list[int | str] | None = None,
    steps: str | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, FinetuneReport]:
    """Finetune every trained (DONE) run of a sweep as its `finetune:` section says; run dir -> report.

    Runs not trained yet are reported as skipped (train them with `testbed sweep run` first); a run whose
    finetuning fails is recorded and the others still run.
    """
    sweep = load_sweep_config(sweep_path, list(overrides))
    spec = sweep.finetune
    tasks = list(tasks or spec.tasks)
    sizes = list(sizes or spec.sizes)
    if not tasks or not sizes:
        raise TestbedError(f"{sweep_path}: finetune.tasks and finetune.sizes are needed (or --task and --size)")
    for task in tasks:
        resolve_task(task)
    protocol = load_protocol(spec.protocol)
    reports: dict[str, FinetuneReport] = {}
    for config in expand(sweep, str(sweep_path)):
        run_dir = RunDir.of(config).path
        if not RunDir(run_dir).done():
            if log:
                log(f"{run_dir.name}: not trained yet; skipped")
            continue
        report = reports.setdefault(str(run_dir), FinetuneReport())
        for task in tasks:
            try:
                one = finetune_run(run_dir, task, sizes, steps or spec.steps, protocol, log)
            except TestbedError as err:
                report.failed.append({"task": task, "reason": str(err)})
                continue
            report.written += one.written
            report.done += one.done
            report.failed += one.failed
    return reports
