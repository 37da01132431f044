"""A run's stages, chained in one process: train, then eval (finetune joins later).

Evaluation starts as soon as training ends, in the same process (a local worker or a Slurm job). Each
stage is idempotent and can be run alone: train skips a DONE run and resumes a partial one; eval writes
`stages/eval.json` when it is done and measures only what is missing.

    python -m testbed.sweep.stages RUN_DIR [--stages train,eval] [--eval-suite NAME] [--quiet]
    python -m testbed.sweep.stages --worker     # many runs, one JSON request per line on stdin

The run dir must hold its resolved config.yaml (`testbed.train.prepare_run_dir` writes it).
Exit codes: 0 every stage done, 1 a stage failed (the reason is in the run dir), 75 preempted (SIGTERM:
the training state was checkpointed; run it again to resume).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path

from testbed.rundir import mark_failed, run_state, write_json

STAGES = ("train", "eval")
OK, FAILED, PREEMPTED = 0, 1, 75


def stages_for(eval_suite: str | None) -> list[str]:
    return ["train", "eval"] if eval_suite else ["train"]


def _record(run_dir: Path, stage: str) -> dict | None:
    path = Path(run_dir) / "stages" / f"{stage}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _write_record(run_dir: Path, stage: str, **fields) -> None:
    (run_dir / "stages").mkdir(exist_ok=True)
    write_json(run_dir / "stages" / f"{stage}.json", dict(fields, time=time.strftime("%Y-%m-%dT%H:%M:%S")))


def stage_state(run_dir: Path, stage: str, eval_suite: str | None = None) -> tuple[str, str]:
    """(TODO | RUNNING | PARTIAL | DONE | FAILED, detail) of one stage, from the run dir alone."""
    if stage == "train":
        return run_state(Path(run_dir))
    record = _record(run_dir, stage)
    if record is None or record.get("suite") != eval_suite:
        return "TODO", ""
    return record["state"], record.get("reason", "")


def run_outcome(run_dir: Path, eval_suite: str | None = None) -> tuple[str, str]:
    """The run's state over all its stages: DONE only when every stage is."""
    state, detail = stage_state(run_dir, "train")
    if state != "DONE":
        return state, detail
    for stage in stages_for(eval_suite)[1:]:
        state, detail = stage_state(run_dir, stage, eval_suite)
        if state == "FAILED":
            return "FAILED", f"{stage}: {detail}"
        if state != "DONE":
            return "PARTIAL", f"trained; {stage} pending"
    return "DONE", ""


def pending_stages(run_dir: Path, eval_suite: str | None = None) -> list[str]:
    return [s for s in stages_for(eval_suite) if stage_state(run_dir, s, eval_suite)[0] != "DONE"]


def _eval(run_dir: Path, config, suite: str) -> None:
    from testbed import tracking
    from testbed.evaluate.suite import eval_run
    from testbed.results import read_rows

    try:
        written = eval_run(run_dir, suite)
    except Exception as err:
        _write_record(run_dir, "eval", state="FAILED", suite=suite, reason=f"{type(err).__name__}: {err}".splitlines()[0])
        raise
    _write_record(run_dir, "eval", state="DONE", suite=suite, rows=written)
    if written:
        tracking.start(config, run_dir, stage="eval")
        tracking.log_rows([r for r in read_rows(run_dir) if r["kind"] == "task"])
        tracking.finish(ok=True)


def run_stages(run_dir: Path, stages: list[str], eval_suite: str | None, progress: bool = False) -> int:
    """Run the stages not yet done, in order; stop at the first that fails. Returns an exit code."""
    from testbed.config import load_run_config
    from testbed.train import Preempted, train

    run_dir = Path(run_dir)
    try:
        config = load_run_config(run_dir / "config.yaml")
    except Exception as err:
        mark_failed(run_dir, f"{type(err).__name__}: {err}".splitlines()[0], None)
        traceback.print_exc()
        return FAILED
    for stage in stages:
        if stage_state(run_dir, stage, eval_suite)[0] == "DONE":
            continue
        print(f"testbed: {run_dir.name}: {stage}", file=sys.stderr, flush=True)
        try:
            if stage == "train":
                train(config, progress=progress)
            elif stage == "eval":
                _eval(run_dir, config, eval_suite)
            else:
                raise ValueError(f"unknown stage {stage!r} (known: {', '.join(STAGES)})")
        except Preempted as err:
            print(f"testbed: {run_dir.name}: {err}", file=sys.stderr, flush=True)
            return PREEMPTED
        except Exception:
            traceback.print_exc()
            return FAILED
    return OK


def _worker() -> int:
    """Serve run requests from stdin, one JSON object a line; answer {"code": N} a line on the real stdout.

    Training prints go to stderr (or to the request's log file), so stdout carries only the answers.
    Importing torch once per worker, not once per run, is the point.
    """
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    for line in sys.stdin:
        request = json.loads(line)
        saved = None
        if request.get("log"):
            sys.stdout.flush(), sys.stderr.flush()
            saved = os.dup(1), os.dup(2)
            fd = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(fd, 1), os.dup2(fd, 2), os.close(fd)
        try:
            code = run_stages(Path(request["run_dir"]), request["stages"], request.get("eval_suite"),
                              progress=request.get("progress", False))
        finally:
            if saved:
                sys.stdout.flush(), sys.stderr.flush()
                os.dup2(saved[0], 1), os.dup2(saved[1], 2), os.close(saved[0]), os.close(saved[1])
        answers.write(json.dumps({"code": code}) + "\n")
    return OK


def main(argv: list[str] | None = None) -> int:
    # Slurm sends its warning signal (USR2) to every process of the job: the job's own process
    # checkpoints through SIGTERM, so here USR2 must not kill the run.
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    parser = argparse.ArgumentParser(prog="python -m testbed.sweep.stages", description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", nargs="?")
    parser.add_argument("--stages", help=f"comma-separated, in order (default: {','.join(STAGES)} as configured)")
    parser.add_argument("--eval-suite")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--worker", action="store_true", help="serve JSON requests on stdin")
    args = parser.parse_args(argv)
    if args.worker:
        return _worker()
    if not args.run_dir:
        parser.error("RUN_DIR is required without --worker")
    stages = args.stages.split(",") if args.stages else stages_for(args.eval_suite)
    return run_stages(Path(args.run_dir), stages, args.eval_suite, progress=not args.quiet)


if __name__ == "__main__":
    sys.exit(main())
