"""The slurm backend: one job per run through submitit, as job arrays of runs that need the same resources.

Resources follow from a run's planned FLOPs (`resources`): its hours on one GPU of `slurm.device` at the
MFU measured for its size there, or else the assumed one (testbed/sweep/plan.py), GPUs doubled until the
estimate fits `slurm.target_hours`, CPUs and memory per GPU, and a time limit of estimate x `time_factor`
+ 15 min, rounded up to a bucket so that runs share arrays, and capped at `max_hours`. A job that reaches
its limit or is preempted gets Slurm's warning signal; submitit then calls `RunJob.checkpoint`, which stops
the run's process with SIGTERM (train saves its state at the next step) and requeues the same job: the
requeued job resumes from the newest checkpoint. Multi-GPU runs train through `accelerate launch` inside
the allocation.

Files, in `<out_dir>/<sweep>/`: `slurm_logs/<job id>/` (submitit's pickles and the job's stdout/stderr)
and `slurm_jobs.jsonl` (one line per submitted run: run_id, job_id, log paths), which `testbed sweep
status` reads with `squeue`. Without Slurm accounting (`sacct`) submitit cannot tell job states: run
files and `squeue` are the truth here.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Imported with this module, not on first submit: importing submitit runs logging.config.dictConfig, which
# closes every logging handler already made, and absl's (rouge-score's) closes the stream it was given with
# them; when that stream was a borrowed stderr (pytest's capture in a later test), later writes failed.
import submitit

from testbed.config import RunConfig, SlurmConfig, SweepConfig
from testbed.devices import BY_KEY
from testbed.errors import TestbedError
from testbed.ladder import plan_run, run_id
from testbed.rundir import RunChanged, RunDir
from testbed.sweep.packing import runs_per_device
from testbed.sweep.plan import expected_mfu
from testbed.sweep.stages import PREEMPTED, StageSpec, pending_stages, run_outcome

TIME_BUCKETS_MIN = (10, 30, 60, 120, 240, 480, 720, 1440, 2880, 4320)
OVERHEAD_MIN = 15  # start-up, data, evaluation
SIGNAL_DELAY_S = 120  # Slurm warns this long before the time limit; the run checkpoints within it
JOBS_FILE = "slurm_jobs.jsonl"
QUEUED_STATES = {
    "PENDING",
    "CONFIGURING",
    "REQUEUED",
    "REQUEUE_FED",
    "REQUEUE_HOLD",
    "RESV_DEL_HOLD",
    "SUSPENDED",
    "PREEMPTED",
}
RUNNING_STATES = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING", "RESIZING"}


@dataclass(frozen=True)
class Resources:
    gpus: int  # 0: a CPU-only job
    cpus: int
    mem_gb: float
    minutes: int  # the job's time limit
    requeues: int  # timeouts allowed before submitit gives up (a run longer than the cap needs several)
    pack: int = 1  # runs sharing the job's one GPU
    hours: float = field(default=0.0, compare=False)  # the run's estimate on them (not part of the class)


def resources(flops: float, slurm: SlurmConfig, mfu: float | None = None, pack: int = 1) -> Resources:
    """What a run of `flops` asks Slurm for; `mfu` (default: the device's assumed one) sets its hours. `pack`
    runs share one GPU, `mfu` then being theirs together: each run takes `pack` times its device-hours. A run
    that needs several GPUs is never packed."""
    if slurm.device not in BY_KEY:
        raise TestbedError(f"slurm.device={slurm.device!r}: unknown device (known: {', '.join(BY_KEY)})")
    peak, assumed = BY_KEY[slurm.device].peak_flops, BY_KEY[slurm.device].assumed_mfu
    hours = flops / (peak * (mfu or assumed)) / 3600
    gpus = 0
    if slurm.max_gpus > 0:
        gpus = 1
        while gpus * 2 <= slurm.max_gpus and hours / gpus > slurm.target_hours:
            gpus *= 2
        hours /= gpus
    pack = pack if gpus == 1 else 1
    hours *= pack
    share = max(gpus, 1)
    wanted = hours * 60 * slurm.time_factor + OVERHEAD_MIN
    cap = max(int(slurm.max_hours * 60), TIME_BUCKETS_MIN[0])
    minutes = min(next((b for b in TIME_BUCKETS_MIN if b >= wanted), cap), cap)
    return Resources(
        gpus=gpus,
        cpus=slurm.cpus_per_gpu * share,
        mem_gb=slurm.mem_gb_per_gpu * share,
        minutes=minutes,
        requeues=math.ceil(wanted / minutes) + 2,
        pack=pack,
        hours=hours,
    )


def accelerate_command(run_dir: Path, gpus: int, port: int) -> list[str]:
    """Train a run on `gpus` GPUs of this node: one process per GPU through `accelerate launch`."""
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_machines",
        "1",
        "--num_processes",
        str(gpus),
        "--mixed_precision",
        "bf16",
        "--main_process_port",
        str(port),
        "-m",
        "testbed.sweep.stages",
        str(run_dir),
        "--stages",
        "train",
        "--quiet",
    ]


class RunJob:
    """What a Slurm job runs: a run's stages in a child process; checkpointable (submitit's protocol)."""

    def __init__(self, run_dir: str, spec: StageSpec, gpus: int):
        self.run_dir, self.spec, self.gpus = str(run_dir), spec, gpus
        self._proc: subprocess.Popen | None = None

    def commands(self) -> list[list[str]]:
        """Every stage in one process on one GPU or the CPU; with several GPUs, training through accelerate
        launch, then the stages after it (eval, finetune) in one process."""
        stage = [sys.executable, "-m", "testbed.sweep.stages", self.run_dir, "--quiet", "--spec", self.spec.to_json()]
        if self.gpus <= 1:
            return [stage]
        port = 20000 + int(os.environ.get("SLURM_JOB_ID", "0") or 0) % 20000
        train = accelerate_command(Path(self.run_dir), self.gpus, port)
        after = self.spec.stages[1:]
        return [train] + ([stage + ["--stages", ",".join(after)]] if after else [])

    def __call__(self) -> str:
        code = 0
        for command in self.commands():
            self._proc = subprocess.Popen(command, preexec_fn=_ignore_warning_signal)
            code = self._proc.wait()
            self._proc = None
            if code:
                break
        state, detail = run_outcome(Path(self.run_dir), self.spec)
        outcome = f"{state}{': ' + detail if detail else ''}"
        if code == PREEMPTED:
            return f"PREEMPTED: {outcome}"
        if state != "DONE":  # a failed job in Slurm's eyes too
            raise RuntimeError(f"{Path(self.run_dir).name}: exit code {code}: {outcome}")
        return outcome

    def checkpoint(self, *args, **kwargs):
        """Called by submitit on Slurm's warning signal: stop the run cleanly, then requeue this job."""
        _stop([self._proc])
        return submitit.helpers.DelayedSubmission(RunJob(self.run_dir, self.spec, self.gpus))

    def __getstate__(self) -> dict:
        return {"run_dir": self.run_dir, "spec": self.spec, "gpus": self.gpus}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _proc=None)


class PackedJob:
    """What a Slurm job of runs packed onto its one GPU runs: each run's stages in its own process, side by
    side (a RunJob each, in a thread); a run that fails fails only itself, and the job once all have ended."""

    def __init__(self, run_dirs: list[str], spec: StageSpec):
        self.runs = [RunJob(str(d), spec, 1) for d in run_dirs]

    def commands(self) -> list[list[str]]:
        """One command per run, started together."""
        return [run.commands()[0] for run in self.runs]

    def __call__(self) -> str:
        outcomes: dict[str, str] = {}

        def one(run: RunJob) -> None:
            try:
                outcomes[run.run_dir] = f"{Path(run.run_dir).name}: {run()}"
            except RuntimeError as err:
                outcomes[run.run_dir] = f"FAILED {err}"

        threads = [threading.Thread(target=one, args=(run,)) for run in self.runs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        lines = [outcomes.get(run.run_dir, f"FAILED {Path(run.run_dir).name}: no outcome") for run in self.runs]
        if any(line.startswith("FAILED ") for line in lines):
            raise RuntimeError("; ".join(lines))
        return "; ".join(lines)

    def checkpoint(self, *args, **kwargs):
        """Slurm's warning signal: stop every run cleanly at once, then requeue the same runs."""
        _stop([run._proc for run in self.runs])
        return submitit.helpers.DelayedSubmission(PackedJob([run.run_dir for run in self.runs], self.runs[0].spec))

    def __getstate__(self) -> dict:
        return {"run_dirs": [run.run_dir for run in self.runs], "spec": self.runs[0].spec}

    def __setstate__(self, state: dict) -> None:
        self.runs = [RunJob(d, state["spec"], 1) for d in state["run_dirs"]]


def _stop(procs: list[subprocess.Popen | None]) -> None:
    """SIGTERM to every process still running (train checkpoints at its next step and exits), then wait for
    them within Slurm's warning time, and kill what is left."""
    running = [proc for proc in procs if proc is not None and not _exited(proc.pid)]
    for proc in running:
        proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + SIGNAL_DELAY_S - 30
    while any(not _exited(proc.pid) for proc in running) and time.monotonic() < deadline:
        time.sleep(0.2)
    for proc in running:
        if not _exited(proc.pid):
            proc.kill()


def job_calls(run_dirs: list[Path], spec: StageSpec, res: Resources) -> list[tuple[list[Path], Any]]:
    """The jobs of runs that ask for the same resources: `res.pack` runs a job, as (run dirs, what it runs)."""
    chunks = [run_dirs[i : i + res.pack] for i in range(0, len(run_dirs), res.pack)]
    return [
        (chunk, PackedJob([str(d) for d in chunk], spec) if len(chunk) > 1 else RunJob(str(chunk[0]), spec, res.gpus))
        for chunk in chunks
    ]


def _ignore_warning_signal() -> None:
    """In a child, before exec: Slurm's USR2 reaches every process of the job, and only this job's own
    process may act on it (an `accelerate launch` parent would die of it); ignored signals stay ignored
    across exec."""
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)


def _exited(pid: int) -> bool:
    """Whether a child has exited, without reaping it: this runs in a signal handler that may have
    interrupted `Popen.wait`, which holds the lock that `Popen.poll` and `Popen.wait` need."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def squeue_states() -> dict[str, tuple[str, str]] | None:
    """job id (array tasks as 123_4) -> (Slurm state, reason or node) for this user; None without Slurm."""
    if shutil.which("squeue") is None:
        return None
    user = os.environ.get("USER") or os.environ.get("LOGNAME") or str(os.getuid())
    try:
        out = subprocess.run(
            ["squeue", "-h", "-r", "-u", user, "-o", "%i|%T|%R"], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode:
        return None
    states = {}
    for line in out.stdout.splitlines():
        job, state, where = (line.split("|") + ["", ""])[:3]
        states[job.strip()] = (state.strip(), where.strip())
    return states


def job_records(sweep_dir: Path) -> dict[str, dict]:
    """run_id -> its newest submission record."""
    path = Path(sweep_dir) / JOBS_FILE
    if not path.is_file():
        return {}
    records = {}
    for line in path.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            records[record["run_id"]] = record
    return records


def _append_records(sweep_dir: Path, records: list[dict]) -> None:
    import fcntl

    with open(Path(sweep_dir) / JOBS_FILE, "a", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.write("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
        handle.flush()
        fcntl.flock(handle, fcntl.LOCK_UN)


def active_jobs(sweep_dir: Path) -> dict[str, tuple[str, str, str]]:
    """run_id -> (job id, Slurm state, reason/node) for the runs of this sweep still in the queue."""
    states = squeue_states() or {}
    return {
        rid: (rec["job_id"], *states[rec["job_id"]])
        for rid, rec in job_records(sweep_dir).items()
        if rec["job_id"] in states
    }


def submit(sweep: SweepConfig, runs: list[RunConfig]) -> dict[str, str]:
    """Submit every run with work left that is not already queued; returns run_id -> what happened."""

    if shutil.which("sbatch") is None or shutil.which("srun") is None:
        raise TestbedError(
            "--backend slurm: no Slurm here (sbatch/srun not found); "
            "scripts/slurm_local.sh start makes a one-node cluster"
        )
    sweep_dir = Path(sweep.out_dir) / sweep.name
    sweep_dir.mkdir(parents=True, exist_ok=True)
    active = active_jobs(sweep_dir)
    sweep_spec = StageSpec.of(sweep)
    outcomes: dict[str, str] = {}
    groups: dict[tuple[Resources, StageSpec], list[Path]] = defaultdict(list)
    for config in runs:
        try:
            run_dir = RunDir.of(config).prepare(config).path
        except RunChanged as err:  # as `sweep status` shows it; the other runs are submitted
            outcomes[RunDir.of(config).name] = f"CHANGED: {err.reason}"
            continue
        spec = sweep_spec.for_run(config)
        if not pending_stages(run_dir, spec):
            outcomes[run_dir.name] = "DONE"
        elif run_dir.name in active:
            job, state, _ = active[run_dir.name]
            outcomes[run_dir.name] = f"{state} already (job {job})"
        else:
            device, flops = sweep.slurm.device, plan_run(config).flops
            pack = runs_per_device(config, sweep.gpu, device) if sweep.slurm.max_gpus else 1
            res = resources(flops, sweep.slurm, expected_mfu(device, config, pack), pack)
            if res.pack != pack:  # it needs several GPUs: alone, at the MFU of a run alone
                res = resources(flops, sweep.slurm, expected_mfu(device, config))
            groups[res, spec].append(run_dir)
    for (res, spec), run_dirs in groups.items():
        outcomes.update(_submit_group(sweep, sweep_dir, spec, res, run_dirs))
    return outcomes


def _submit_group(
    sweep: SweepConfig, sweep_dir: Path, spec: StageSpec, res: Resources, run_dirs: list[Path]
) -> dict[str, str]:
    """Submit runs that ask for the same resources as one job array (`res.pack` runs a job); returns
    run_id -> QUEUED (job ...)."""
    executor = submitit.SlurmExecutor(folder=sweep_dir / "slurm_logs" / "%j", max_num_timeout=res.requeues)
    slurm = sweep.slurm
    params = dict(
        job_name=f"tb-{sweep.name}",
        time=res.minutes,
        cpus_per_task=res.cpus,
        mem=f"{max(1, round(res.mem_gb * 1024))}M",
        array_parallelism=slurm.array_parallelism,
        signal_delay_s=SIGNAL_DELAY_S,
        setup=list(slurm.setup),
        additional_parameters=dict(slurm.additional),
    )
    params.update(
        {
            k: v
            for k, v in (
                ("gpus_per_node", res.gpus),
                ("partition", slurm.partition),
                ("account", slurm.account),
                ("qos", slurm.qos),
            )
            if v
        }
    )
    executor.update_parameters(**params)
    calls = job_calls(run_dirs, spec, res)
    try:
        with executor.batch():
            jobs = [executor.submit(call) for _, call in calls]
    except submitit.core.utils.FailedJobError as err:
        raise TestbedError(
            f"slurm: sbatch refused {len(run_dirs)} run(s) ({run_dirs[0].name}, ...): "
            f"{str(err).strip().splitlines()[-1]}"
        ) from None
    now = time.strftime("%Y-%m-%dT%H:%M:%S")
    records: list[dict[str, Any]]  # JSON records
    records = [
        {
            "run_id": d.name,
            "job_id": str(job.job_id),
            "submitted": now,
            "stdout": str(job.paths.stdout),
            "stderr": str(job.paths.stderr),
            "resources": asdict(res),
        }
        for (chunk, _), job in zip(calls, jobs, strict=True)
        for d in chunk
    ]
    _append_records(sweep_dir, records)
    return {
        record["run_id"]: (
            f"QUEUED (job {record['job_id']}, {res.gpus} GPU{f' shared by {res.pack} runs' if res.pack > 1 else ''}, "
            f"{res.cpus} CPU, {res.mem_gb:g} GB, {res.minutes} min)"
        )
        for record in records
    }


def wait(
    sweep: SweepConfig,
    runs: list[RunConfig],
    poll_s: float = 3.0,
    timeout_s: float | None = None,
) -> dict[str, str]:
    """Block until no run of the sweep is queued or running; returns run_id -> outcome read from files."""
    sweep_dir = Path(sweep.out_dir) / sweep.name
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while active_jobs(sweep_dir):
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"{sweep_dir}: jobs still queued or running after {timeout_s:g} s")
        time.sleep(poll_s)
    records = job_records(sweep_dir)
    spec = StageSpec.of(sweep)
    outcomes = {}
    for config in runs:
        run_dir = sweep_dir / run_id(config)
        changed = RunDir(run_dir).change(config)
        state, detail = ("CHANGED", changed) if changed else run_outcome(run_dir, spec.for_run(config))
        outcome = "DONE" if state == "DONE" else f"{state}: {detail}".rstrip(": ")
        if state != "DONE" and run_dir.name in records:
            outcome += f" (log {records[run_dir.name]['stderr']})"
        outcomes[run_dir.name] = outcome
    return outcomes
