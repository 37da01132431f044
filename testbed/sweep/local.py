"""The local backend: runs go through worker processes, one at a time, or several per visible GPU in parallel.

Each worker is a long-lived `python -m testbed.sweep.stages --worker` (torch is imported once, not once
per run) that runs a run's stages (train, then eval and finetune) and answers with an exit code. A run that fails is
recorded in its run dir; a worker that is killed takes only its current run with it (the run stays
resumable from its newest checkpoint) and is replaced. With several GPUs each worker sees one
(CUDA_VISIBLE_DEVICES) and writes its output to `<sweep dir>/logs/<run_id>.log`. Small runs are packed
onto one GPU (`gpu.runs_per_device`, testbed/sweep/packing.py): a GPU gets as many workers as the most
packed run allows, and a run packed k to a device holds a k-th of it while it trains, so a GPU runs four r1
runs side by side, but an r6 run alone; runs take their share first come, first served. A packed run is
still its own process and run dir: it trains exactly as it would alone.
Unless quiet, the driver prints one sweep-level line (runs done, ETA, what each worker is doing: stage and step,
from the runs' progress records) after each run and, with several workers, every PROGRESS_EVERY seconds.
SIGTERM to the sweep is passed on to the workers, which checkpoint and stop; a worker whose driver dies
(even by SIGKILL) does the same. A run owned by another live process (a second driver's worker, a
`testbed train`) is skipped and left alone.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from fractions import Fraction
from pathlib import Path

from testbed import progress as run_progress
from testbed.config import GpuConfig, RunConfig
from testbed.errors import TestbedError
from testbed.ladder import run_id
from testbed.rundir import RunChanged, RunDir
from testbed.sweep import packing
from testbed.sweep.plan import CPU, plan_rows
from testbed.sweep.stages import (
    BUSY,
    FAILED,
    OK,
    PREEMPTED,
    TRAIN_ONLY,
    StageSpec,
    pending_stages,
    run_outcome,
)

PROGRESS_EVERY = float(os.environ.get("TESTBED_PROGRESS_EVERY", "30"))  # seconds between sweep lines (parallel)


class SweepProgress:
    """The sweep's progress: runs done of all, what each worker runs now (stage and step from the run's
    progress record), and an ETA from the runs finished so far (runs already done before are not timed).

    With `planned` ({run_id: planned seconds}, from `sweep plan`'s rates) the ETA weighs each run left by its
    plan, calibrated by how long the finished runs took against theirs: a sweep whose small runs come first
    does not promise its last, large run in seconds. Without it every run counts as the mean finished one."""

    def __init__(self, total: int, workers: int, planned: dict[str, float] | None = None):
        self.total, self.workers = total, workers
        self.planned = planned or {}
        self.done = 0
        self.durations: list[float] = []
        self.finished_plans: list[float] = []  # the planned seconds of the timed runs, beside their durations
        self.begun: set[str] = set()
        self.current: dict[str, tuple[Path, list[str], float]] = {}
        self.lock = threading.Lock()

    def start(self, worker: str, run_dir: Path, stages: list[str]) -> None:
        with self.lock:
            self.current[worker] = (run_dir, stages, time.time())
            self.begun.add(run_dir.name)

    def finish(self, worker: str | None = None, run: str | None = None) -> None:
        """A run ended: timed if `worker` ran it, else (found done, changed, failed to prepare) `run` names it."""
        with self.lock:
            self.done += 1
            if run is not None:
                self.begun.add(run)
            if worker in self.current:
                run_dir, _, began = self.current.pop(worker)
                self.durations.append(time.time() - began)
                self.finished_plans.append(self.planned.get(run_dir.name, 0.0))

    def _eta(self) -> float:
        """Wall seconds left: each run's expected seconds (planned x the finished runs' actual/planned, or the
        mean finished run), less what the running ones have spent, over the workers."""
        now = time.time()
        mean = sum(self.durations) / len(self.durations)
        planned_done = sum(self.finished_plans)
        ratio = sum(self.durations) / planned_done if self.planned and planned_done > 0 else None

        def expected(name: str) -> float:
            return self.planned[name] * ratio if ratio is not None and name in self.planned else mean

        running = sum(max(expected(d.name) - (now - began), 0.0) for d, _, began in self.current.values())
        started = self.done + len(self.current)
        waiting = [name for name in self.planned if name not in self.begun] if ratio is not None else []
        unnamed = max(self.total - started - len(waiting), 0)  # runs left that the plan does not name
        return (running + sum(map(expected, waiting)) + unnamed * mean) / self.workers

    def line(self) -> str:
        with self.lock:
            running = []
            for worker, (run_dir, stages, began) in sorted(self.current.items()):
                record = run_progress.read(run_dir)
                fresh = record is not None and record.get("time", 0) >= began
                doing = run_progress.describe(record) if fresh else f"{stages[0]} (starting)"
                running.append(f"{worker + ': ' if worker else ''}{run_dir.name} {doing}")
            if not self.total - self.done:
                eta = "finished"
            elif self.durations:
                eta = f"ETA {run_progress.format_duration(self._eta())}"
            else:
                eta = "ETA after the first run"
            now = f" | {'; '.join(running)}" if running else ""
            return f"sweep: {self.done}/{self.total} runs done, {eta}{now}"


def visible_gpus() -> list[str]:
    """The CUDA devices this process may use, as CUDA_VISIBLE_DEVICES entries."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [d.strip() for d in listed.split(",") if d.strip() and d.strip() != "-1"]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:
        return []


class DeviceShare:
    """The share of one device its runs hold: a run packed k to a device takes a k-th of it, and waits, first
    come first served, until that much is free (a large run is not starved by a stream of small ones)."""

    def __init__(self) -> None:
        self.used = Fraction(0)
        self.tickets = self.serving = 0
        self.cond = threading.Condition()

    @contextmanager
    def hold(self, k: int, stop: threading.Event) -> Iterator[bool]:
        """Yields True once a k-th of the device is this run's, False if the sweep stopped first."""
        need = Fraction(1, k)
        with self.cond:
            ticket, self.tickets = self.tickets, self.tickets + 1
            while not stop.is_set() and not (ticket == self.serving and self.used + need <= 1):
                self.cond.wait(0.5)
            self.serving += 1
            self.cond.notify_all()
            if stop.is_set():
                yield False
                return
            self.used += need
        try:
            yield True
        finally:
            with self.cond:
                self.used -= need
                self.cond.notify_all()


class Worker:
    """One `stages --worker` process, started on first use and again after it dies; with `share`, one of
    several workers of one device."""

    def __init__(self, env: dict[str, str], name: str = "", share: DeviceShare | None = None):
        self.env, self.name, self.share = env, name, share
        self.proc: subprocess.Popen | None = None

    def run(self, run_dir: Path, stages: list[str], spec: StageSpec, progress: bool, log: Path | None) -> int:
        """The stages' exit code, or minus the signal number if the worker died on the way."""
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "testbed.sweep.stages", "--worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env={**os.environ, **self.env},
            )
        request = {
            "run_dir": str(run_dir),
            "stages": stages,
            "spec": spec.to_json(),
            "progress": progress,
            "log": str(log) if log else None,
        }
        stdin, stdout = self.proc.stdin, self.proc.stdout
        assert stdin is not None and stdout is not None  # the worker is started with pipes
        try:
            stdin.write(json.dumps(request) + "\n")
            stdin.flush()
            answer = stdout.readline()
        except (BrokenPipeError, OSError):
            answer = ""
        if answer:
            return json.loads(answer)["code"]
        code = self.proc.wait()
        self.proc = None
        return code or FAILED

    def signal(self, signum: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signum)

    def close(self) -> None:
        if self.proc is not None:
            assert self.proc.stdin is not None  # the worker is started with pipes
            self.proc.stdin.close()
            self.proc.wait()
            self.proc = None


def describe(run_dir: Path, code: int, spec: StageSpec) -> str:
    """One line for a run after its worker returned `code`, read from the run dir."""
    state, detail = run_outcome(run_dir, spec)
    if code == OK and state == "DONE":
        return "DONE"
    if code == BUSY:
        return f"SKIPPED: in use by another process ({detail or 'since ended'}); left alone"
    if code == PREEMPTED:
        return f"PREEMPTED: {detail or state}; run the sweep again to resume"
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
        return f"KILLED ({name}): {state}{', ' + detail if detail else ''}"
    return f"{state}: {detail}" if state == "FAILED" else f"FAILED: exit code {code} ({state}: {detail})"


def run_local(
    runs: list[RunConfig],
    spec: StageSpec = TRAIN_ONLY,
    progress: bool = True,
    gpus: list[str] | None = None,
    cpu_workers: int = 1,
    gpu: GpuConfig | None = None,
) -> dict[str, str]:
    """Run every stage still missing for each run; returns run_id -> outcome (DONE, FAILED: ..., ...).

    `gpus`: CUDA_VISIBLE_DEVICES entries, one per device (default: the visible ones); `gpu`: how runs are
    packed onto each (default: one run a device). Without GPUs, `cpu_workers` > 1 runs that many workers with
    one torch thread each: on a small CPU, tiny models train faster side by side than with threads that spin
    against each other.
    """
    gpus = visible_gpus() if gpus is None else gpus
    gpu = gpu or GpuConfig(runs_per_device="1")
    device, memory = packing.local_device() if gpus else (None, None)
    packed = {run_id(c): packing.runs_per_device(c, gpu, device, memory) for c in runs} if gpus else {}
    per_device = max(packed.values(), default=1)
    mps = (
        packing.mps_daemon(gpu.mps and per_device > 1, Path(runs[0].out_dir) / runs[0].sweep / "mps") if runs else None
    )
    with mps or nullcontext({}) as mps_env:
        return _run_workers(runs, spec, progress, _workers(gpus, per_device, cpu_workers, mps_env), packed)


def _workers(gpus: list[str], per_device: int, cpu_workers: int, env: dict[str, str]) -> list[Worker]:
    """`per_device` workers for each GPU, sharing it; else `cpu_workers` CPU workers, or one."""
    shares = {g: DeviceShare() for g in gpus}
    return (
        [
            Worker({"CUDA_VISIBLE_DEVICES": g, **env}, f"GPU {g}" + (f" #{j}" if per_device > 1 else ""), shares[g])
            for g in gpus
            for j in range(per_device)
        ]
        or [Worker({"OMP_NUM_THREADS": "1"}, f"CPU worker {k}") for k in range(cpu_workers) if cpu_workers > 1]
        or [Worker({})]
    )


def planned_seconds(runs: list[RunConfig], spec: StageSpec) -> dict[str, float]:
    """{run_id: the CPU seconds `sweep plan` expects of its stages}: the ETA's weights (only their ratios
    matter, so they serve on a GPU too); empty where a run cannot be planned."""
    try:
        rows = plan_rows(runs, spec)
    except Exception:  # an estimate for a progress line must never stop a sweep
        return {}
    return {
        run_id(config): 3600 * (row[f"hours_{CPU}"] + row["eval_hours"] + row["finetune_hours"])
        for config, row in zip(runs, rows, strict=True)
    }


def _run_workers(
    runs: list[RunConfig], spec: StageSpec, progress: bool, workers: list[Worker], packed: dict[str, int]
) -> dict[str, str]:
    parallel = len(workers) > 1
    todo: queue.Queue = queue.Queue()
    for i, config in enumerate(runs, 1):
        todo.put((i, config))
    outcomes: dict[str, str] = {}
    stop = threading.Event()
    sweep = SweepProgress(len(runs), len(workers), planned_seconds(runs, spec))

    def serve(worker: Worker) -> None:
        while not stop.is_set():
            try:
                i, config = todo.get_nowait()
            except queue.Empty:
                return
            k = packed.get(run_id(config), 1)
            with worker.share.hold(k, stop) if worker.share else nullcontext(True) as held:
                if held:
                    outcomes.update(
                        _one(worker, i, len(runs), config, spec, progress and not parallel, parallel, sweep)
                    )
            if progress and sweep.durations:
                _say(sweep.line())

    def report() -> None:  # the sweep line every PROGRESS_EVERY seconds while workers run side by side
        while not stop.wait(PROGRESS_EVERY):
            _say(sweep.line())

    def on_sigterm(*_) -> None:
        stop.set()
        for worker in workers:
            worker.signal(signal.SIGTERM)

    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, on_sigterm) if main_thread else None
    try:
        if parallel:
            threads = [threading.Thread(target=serve, args=(w,), daemon=True) for w in workers]
            reporter = threading.Thread(target=report, daemon=True) if progress else None
            for thread in threads:
                thread.start()
            if reporter is not None:
                reporter.start()
            for thread in threads:
                thread.join()
        else:
            serve(workers[0])
    finally:
        stop.set()  # ends the reporter
        for worker in workers:
            worker.close()
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    for config in runs:  # runs never started because the sweep was stopped
        outcomes.setdefault(run_id(config), "NOT STARTED: the sweep was stopped")
    return outcomes


def _one(
    worker: Worker,
    i: int,
    n: int,
    config: RunConfig,
    spec: StageSpec,
    progress: bool,
    parallel: bool,
    sweep: SweepProgress | None = None,
) -> dict[str, str]:
    sweep = sweep or SweepProgress(n, 1)
    try:
        run_dir = RunDir.of(config).prepare(config).path
    except RunChanged as err:  # as `sweep status` shows it; the other runs go on
        _say(f"[{i}/{n}] {run_id(config)}: CHANGED: {err.reason}")
        sweep.finish(run=run_id(config))
        return {run_id(config): f"CHANGED: {err.reason}"}
    except TestbedError as err:
        sweep.finish(run=run_id(config))
        return {run_id(config): f"FAILED: {err}"}
    spec = spec.for_run(config)
    stages = pending_stages(run_dir, spec)
    if not stages:
        sweep.finish(run=run_dir.name)
        return {run_dir.name: "DONE"}
    log = None
    if parallel:
        log = run_dir.parent / "logs" / f"{run_dir.name}.log"
        log.parent.mkdir(exist_ok=True)
    where = f" on {worker.name}, log {log}" if parallel else ""
    _say(f"[{i}/{n}] {run_dir.name}: {', '.join(stages)}{where}")
    sweep.start(worker.name, run_dir, stages)
    try:
        code = worker.run(run_dir, stages, spec, progress, log)
    finally:
        sweep.finish(worker.name)
    outcome = describe(run_dir, code, spec)
    if outcome != "DONE":
        _say(f"  {run_dir.name}: {outcome}")
    return {run_dir.name: outcome}


def _say(line: str) -> None:
    """One line to stderr in one write: print() writes the text and its newline apart, and the lines of
    workers' threads would interleave."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
