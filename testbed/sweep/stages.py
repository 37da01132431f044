"""A run's stages, chained in one process: train, then eval, then translation finetuning.

Evaluation starts as soon as training ends, in the same process (a local worker or a Slurm job), and
finetuning as soon as evaluation ends. Each stage is idempotent and can be run alone: train skips a DONE
run and resumes a partial one; eval and finetune measure only what is missing and write
`stages/<stage>.json` (DONE, or FAILED with the first reason while any task or finetuning failed; a later
call retries only those). What a sweep asks of its runs after training is a `StageSpec`.

    python -m testbed.sweep.stages RUN_DIR [--stages train,eval] [--eval-suite NAME] [--spec JSON] [--quiet]
    python -m testbed.sweep.stages --worker     # many runs, one JSON request per line on stdin

The run dir must hold its resolved config.yaml (`RunDir.prepare` writes it).
Exit codes: 0 every stage done, 1 a stage failed (the reason is in the run dir), 73 the run is owned by
another live process (nothing was done), 75 preempted (SIGTERM: the training state was checkpointed; run it
again to resume). The process owns the run dir (`RunDir.owned`) while its stages run.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from analysis.registry import Registry
from testbed import preempt
from testbed.errors import TestbedError, one_line
from testbed.preempt import Preempted
from testbed.rundir import RunBusy, RunDir, main_process

# A stage is a function (run_dir, config, spec, progress) -> None registered under its name; it raises to fail.
STAGES: Registry = Registry("stage", error=TestbedError)
OK, FAILED, BUSY, PREEMPTED = 0, 1, 73, 75


@dataclasses.dataclass(frozen=True)
class StageSpec:
    """The stages a sweep runs after training, and their settings (from its eval_suite(s), eval_steps and
    finetune:)."""

    eval_suite: str | None = None
    eval_suites: tuple[tuple[str, str], ...] = ()  # (dataset, suite): a dataset's own suite (for_run resolves it)
    finetune_tasks: tuple[str, ...] = ()
    finetune_sizes: tuple[int, ...] = ()
    finetune_steps: str = "all"
    finetune_protocol: str = "finetune"
    eval_steps: str = "final"  # which exported checkpoints eval scores: final | all (every one saved)

    @classmethod
    def of(cls, sweep) -> StageSpec:
        """From a SweepConfig: finetuning is a stage when its finetune: section names tasks and sizes."""
        spec = sweep.finetune
        evaluation = cls(sweep.eval_suite, tuple(sorted(sweep.eval_suites.items())), eval_steps=sweep.eval_steps)
        if not (spec.tasks and spec.sizes):
            return evaluation
        return dataclasses.replace(
            evaluation,
            finetune_tasks=tuple(spec.tasks),
            finetune_sizes=tuple(spec.sizes),
            finetune_steps=spec.steps,
            finetune_protocol=spec.protocol,
        )

    def for_run(self, config) -> StageSpec:
        """The spec of one run (a RunConfig): its dataset's eval suite where the sweep names one."""
        if not self.eval_suites:
            return self
        suite = dict(self.eval_suites).get(config.data.name, self.eval_suite)
        return dataclasses.replace(self, eval_suite=suite, eval_suites=())

    @classmethod
    def from_json(cls, text: str | None) -> StageSpec:
        fields = json.loads(text) if text else {}
        kwargs: dict[str, Any] = {k: _tuples(v) for k, v in fields.items()}
        return cls(**kwargs)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @property
    def stages(self) -> list[str]:
        return ["train"] + ["eval"] * bool(self.eval_suite) + ["finetune"] * bool(self.finetune_tasks)

    def check(self) -> None:
        """Refuse (TestbedError, one line) an unknown suite, translation task or protocol before any run starts."""
        suites = {name for name in (self.eval_suite, *dict(self.eval_suites).values()) if name}
        if suites:
            from testbed.evaluate.suite import load_suite

            for suite in sorted(suites):
                load_suite(suite)
        if self.finetune_tasks:
            from testbed.translation.data import resolve_task
            from testbed.translation.protocol import load_protocol, parse_sizes

            for task in self.finetune_tasks:
                resolve_task(task)
            parse_sizes(self.finetune_sizes)
            load_protocol(self.finetune_protocol)

    def settings(self, stage: str) -> dict:
        """What a stage's record must match to count as done for this spec."""
        if stage == "eval":  # a run scored at every checkpoint is done for `final` too; the converse is not
            tasks = {"tasks": suite_tasks(self.eval_suite)} if self.eval_suite else {}
            return {"suite": self.eval_suite} | tasks | ({"steps": "all"} if self.eval_steps == "all" else {})
        from testbed.translation.metrics import row_metrics  # a metric added reopens the stage (it re-scores)

        return {
            "finetune": {
                "tasks": list(self.finetune_tasks),
                "sizes": list(self.finetune_sizes),
                "steps": self.finetune_steps,
                "protocol": self.finetune_protocol,
                "metrics": row_metrics(),
            }
        }


@functools.lru_cache(maxsize=32)
def _suite_tasks(suite: str) -> tuple[str, ...]:
    from testbed.evaluate.suite import load_suite

    return tuple(sorted(task.name for task in load_suite(suite).tasks))


def suite_tasks(suite: str) -> list[str]:
    """The suite's task names, sorted: a suite that gains a task reopens the eval stage of the runs scored
    before (eval then scores only the missing task), so `sweep status` and `sweep run` agree about it."""
    return list(_suite_tasks(suite))


def _tuples(value):
    """JSON's lists back to the spec's (nested) tuples."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


TRAIN_ONLY = StageSpec()


def stage_state(run_dir: Path, stage: str, spec: StageSpec = TRAIN_ONLY) -> tuple[str, str]:
    """(TODO | RUNNING | PARTIAL | DONE | FAILED, detail) of one stage, from the run dir alone."""
    if stage == "train":
        return RunDir(run_dir).state()
    record = RunDir(run_dir).stage_record(stage)
    if record is None or any(record.get(k) != v for k, v in spec.settings(stage).items()):
        return "TODO", ""
    return record["state"], record.get("reason", "")


def run_outcome(run_dir: Path, spec: StageSpec = TRAIN_ONLY) -> tuple[str, str]:
    """The run's state over all its stages: DONE only when every stage is."""
    state, detail = stage_state(run_dir, "train")
    if state != "DONE":
        return state, detail
    for stage in spec.stages[1:]:
        state, detail = stage_state(run_dir, stage, spec)
        if state == "FAILED":
            return "FAILED", f"{stage}: {detail}"
        if state != "DONE":
            return "PARTIAL", f"trained; {stage} pending"
    return "DONE", ""


def pending_stages(run_dir: Path, spec: StageSpec = TRAIN_ONLY) -> list[str]:
    return [s for s in spec.stages if stage_state(run_dir, s, spec)[0] != "DONE"]


def _failed_reason(failed: list[dict], where: str) -> str:
    first = failed[0]
    what = first.get("task", "?") + (f" size {first['finetune_size']}" if "finetune_size" in first else "")
    return f"{len(failed)} failed (first: {what} at step {first.get('step', '?')}: {first['reason']}); see {where}"


def _measure(run_dir: Path, config, spec: StageSpec, stage: str, measure, kind: str) -> None:
    """Run eval or finetune: `measure()` returns (rows written, failures). Record the stage (DONE, or FAILED with
    the first failure; all of them are in the stage's failures file), log its `kind` rows, and raise if any
    failed."""
    from testbed import tracking

    run = RunDir(run_dir)
    try:
        written, failed = measure()
    except Exception as err:
        run.record_stage(stage, state="FAILED", reason=one_line(err), **spec.settings(stage))
        raise
    reason = _failed_reason(failed, run.failures_file(stage).name) if failed else None
    run.record_stage(
        stage,
        rows=written,
        **spec.settings(stage),
        **({"state": "FAILED", "reason": reason} if failed else {"state": "DONE"}),
    )
    if written:
        tracking.start(config, run_dir, stage=stage)
        tracking.log_rows([r for r in run.read_rows() if r["kind"] == kind])
        tracking.finish(ok=not failed)
    if failed:
        raise RuntimeError(f"{stage}: {reason}")


# The train stage is a lazy reference: sweep/ never imports the training loop itself.
STAGES.register("train", "testbed.train:train_stage")


@STAGES.register("eval")
def _eval(run_dir: Path, config, spec: StageSpec, progress: bool = False) -> None:
    from testbed.evaluate.suite import evaluate_run

    def measure():
        assert spec.eval_suite is not None  # "eval" is one of the stages only with a suite
        report = evaluate_run(run_dir, spec.eval_suite, steps=spec.eval_steps)
        return report.written, report.failed

    _measure(run_dir, config, spec, "eval", measure, "task")


@STAGES.register("finetune")
def _finetune(run_dir: Path, config, spec: StageSpec, progress: bool = False) -> None:
    from testbed.translation.protocol import load_protocol
    from testbed.translation.run import finetune_run

    def log(line: str) -> None:
        print(f"testbed: {line}", file=sys.stderr, flush=True)

    def measure():
        protocol = load_protocol(spec.finetune_protocol)
        reports = [
            finetune_run(run_dir, task, spec.finetune_sizes, spec.finetune_steps, protocol, log)
            for task in spec.finetune_tasks
        ]
        return sum(r.written for r in reports), [f for r in reports for f in r.failed]

    _measure(run_dir, config, spec, "finetune", measure, "translation")


def run_stages(run_dir: Path, stages: list[str], spec: StageSpec, progress: bool = False) -> int:
    """Run the stages not yet done, in order; stop at the first that fails. Returns an exit code."""
    run_dir = Path(run_dir)
    try:
        with RunDir(run_dir).owned() if main_process() else contextlib.nullcontext():
            return _run_owned_stages(run_dir, stages, spec, progress)
    except RunBusy as err:
        print(f"testbed: {err}", file=sys.stderr, flush=True)
        return BUSY


def _run_owned_stages(run_dir: Path, stages: list[str], spec: StageSpec, progress: bool) -> int:
    try:
        config = RunDir(run_dir).config()
    except Exception as err:
        RunDir(run_dir).mark_failed(one_line(err), None)
        traceback.print_exc()
        return FAILED
    for stage in stages:
        if stage_state(run_dir, stage, spec)[0] == "DONE":
            continue
        print(f"testbed: {run_dir.name}: {stage}", file=sys.stderr, flush=True)
        try:
            STAGES.get(stage)(run_dir, config, spec, progress=progress)
        except Preempted as err:
            print(f"testbed: {run_dir.name}: {err}", file=sys.stderr, flush=True)
            return PREEMPTED
        except Exception:
            traceback.print_exc()
            return FAILED
    return OK


def _stop_when_orphaned(interval: float = 1.0) -> None:
    """SIGTERM this process once its parent (the sweep driver) has died, so the run checkpoints and stops
    instead of training on unseen, and racing the next driver for the same runs."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()


def _worker() -> int:
    """Serve run requests from stdin, one JSON object a line; answer {"code": N} a line on the real stdout.

    Training prints go to stderr (or to the request's log file), so stdout carries only the answers.
    Importing torch once per worker, not once per run, is the point.
    """
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    _stop_when_orphaned()
    for line in sys.stdin:
        request = json.loads(line)
        saved = None
        if request.get("log"):
            sys.stdout.flush()
            sys.stderr.flush()
            saved = os.dup(1), os.dup(2)
            fd = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.close(fd)
        try:
            code = run_stages(
                Path(request["run_dir"]),
                request["stages"],
                StageSpec.from_json(request.get("spec")),
                progress=request.get("progress", False),
            )
        finally:
            if saved:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
                os.close(saved[0])
                os.close(saved[1])
        try:
            answers.write(json.dumps({"code": code}) + "\n")
        except BrokenPipeError:  # the driver is gone
            return OK
    return OK


def main(argv: list[str] | None = None) -> int:
    # Slurm sends its warning signal (USR2) to every process of the job: the job's own process
    # checkpoints through SIGTERM, so here USR2 must not kill the run.
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    preempt.install()  # before torch is imported: a SIGTERM from here on ends in a resumable stop
    parser = argparse.ArgumentParser(prog="python -m testbed.sweep.stages", description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", nargs="?")
    parser.add_argument("--stages", help=f"comma-separated, in order (default: {','.join(STAGES)} as configured)")
    parser.add_argument("--eval-suite", help="shorthand for a spec with this eval suite alone")
    parser.add_argument("--spec", help="a StageSpec as JSON (what a sweep asks of its runs after training)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--worker", action="store_true", help="serve JSON requests on stdin")
    args = parser.parse_args(argv)
    if args.worker:
        return _worker()
    if not args.run_dir:
        parser.error("RUN_DIR is required without --worker")
    spec = StageSpec.from_json(args.spec)
    if args.eval_suite:
        spec = dataclasses.replace(spec, eval_suite=args.eval_suite)
    stages = args.stages.split(",") if args.stages else spec.stages
    for stage in stages:
        try:
            STAGES.get(stage)
        except TestbedError as err:  # one line, with a did-you-mean
            parser.error(f"--stages: {err}")
        if stage not in spec.stages:  # an unknown stage, or eval without a suite, finetune without tasks
            parser.error(f"--stages {stage}: not one of this spec's stages ({', '.join(spec.stages)})")
    return run_stages(Path(args.run_dir), stages, spec, progress=not args.quiet)


if __name__ == "__main__":
    sys.exit(main())
