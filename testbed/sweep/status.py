"""Where each run of a sweep stands: TODO / QUEUED / RUNNING / PARTIAL / DONE / FAILED / CHANGED, why, and its log.

Run files are the truth (DONE, FAILED with its reason, checkpoints, stage records); for runs submitted
to Slurm, `squeue` adds QUEUED and RUNNING (a RUNNING lock written on another node cannot be checked
from here). Without squeue, the files alone answer. CHANGED: the run dir's saved config is not the one the
sweep now expands to (`RunDir.change`, the check `sweep run` refuses such a run with), whatever its files say.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from testbed import progress
from testbed.config import RunConfig
from testbed.rundir import RunDir
from testbed.sweep.slurm import JOBS_FILE, QUEUED_STATES, RUNNING_STATES, job_records, squeue_states
from testbed.sweep.stages import TRAIN_ONLY, StageSpec, pending_stages, run_outcome


def running_stage(run_dir: Path, spec: StageSpec = TRAIN_ONLY) -> str:
    """What a run in progress is doing, from its files: `train step 120/400 (30%), loss 3.2`, `data: ...`
    while its data is prepared, or the first stage still pending after training (`eval`, `finetune`)."""
    record = progress.read(run_dir)
    pending = pending_stages(run_dir, spec)
    if not pending:
        return ""
    if pending[0] == "train" or (record and record.get("stage") == pending[0]):
        return progress.describe(record) or pending[0]
    return pending[0]


def sweep_status(runs: list[RunConfig], spec: StageSpec = TRAIN_ONLY) -> list[dict]:
    rows = []
    sweep_dirs = {RunDir.of(c).path.parent for c in runs}
    records = {rid: rec for d in sweep_dirs for rid, rec in job_records(d).items()}
    has_jobs = any((d / JOBS_FILE).is_file() for d in sweep_dirs)
    queue = (squeue_states() or {}) if has_jobs else {}
    for config in runs:
        run_dir = RunDir.of(config).path
        changed = RunDir(run_dir).change(config)
        state, detail = ("CHANGED", changed) if changed else run_outcome(run_dir, spec.for_run(config))
        owner = None if changed or state in ("DONE", "RUNNING") else RunDir(run_dir).owner()
        if owner is not None:  # trained, and a later stage is running now
            state, detail = "RUNNING", owner
        stage = running_stage(run_dir, spec.for_run(config)) if state == "RUNNING" else ""
        if stage:
            detail = f"{stage}; {detail}" if detail else stage
        record = records.get(run_dir.name)
        log = ""
        if record is not None:
            log = record["stderr"]
            if record["job_id"] in queue and not changed:
                slurm_state, where = queue[record["job_id"]]
                if slurm_state in QUEUED_STATES:
                    state, detail = "QUEUED", f"job {record['job_id']} {slurm_state.lower()} ({where.strip('()')})"
                elif slurm_state in RUNNING_STATES:
                    stage = running_stage(run_dir, spec.for_run(config))
                    state, detail = "RUNNING", f"job {record['job_id']} on {where}" + (f"; {stage}" if stage else "")
        elif (run_dir.parent / "logs" / f"{run_dir.name}.log").is_file():
            log = str(run_dir.parent / "logs" / f"{run_dir.name}.log")
        rows.append(
            {
                "run_id": run_dir.name,
                "state": state,
                "detail": detail,
                "run_dir": str(run_dir),
                "job_id": record["job_id"] if record else None,
                "log": log,
            }
        )
    return rows


def format_status(rows: list[dict]) -> str:
    lines = []
    width = max([34, *(len(r["run_id"]) for r in rows)])
    for r in rows:
        log = f"  [log {r['log']}]" if r["log"] and r["state"] not in ("DONE", "TODO", "CHANGED") else ""
        lines.append(f"{r['run_id']:<{width}} {r['state']:<8} {r['detail']}{log}".rstrip())
    counts = Counter(r["state"] for r in rows)
    lines.append(", ".join(f"{n} {state}" for state, n in sorted(counts.items())))
    if rows:
        lines.append(f"run dirs under {Path(rows[0]['run_dir']).parent}")
    return "\n".join(lines)
