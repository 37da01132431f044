"""A run directory's files and markers (DESIGN.md 3.3), and the run's state read from them."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from testbed.checkpoint import list_steps

DONE, FAILED, LOCK = "DONE", "FAILED", "RUNNING"


def write_json(path: Path, payload: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def mark_done(run_dir: Path) -> None:
    (run_dir / FAILED).unlink(missing_ok=True)
    write_json(run_dir / DONE, {"finished": time.strftime("%Y-%m-%dT%H:%M:%S")})


def mark_failed(run_dir: Path, reason: str, step: int | None) -> None:
    write_json(run_dir / FAILED, {"reason": reason, "step": step, "time": time.strftime("%Y-%m-%dT%H:%M:%S")})


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_state(run_dir: Path) -> tuple[str, str]:
    """(TODO | RUNNING | PARTIAL | DONE | FAILED, detail). PARTIAL: stopped with a checkpoint to resume."""
    if (run_dir / DONE).is_file():
        return "DONE", ""
    lock = run_dir / LOCK
    if lock.is_file():
        try:
            pid = int(lock.read_text().split()[0])
        except (ValueError, IndexError):
            pid = -1
        if pid > 0 and _pid_alive(pid):
            return "RUNNING", f"pid {pid}"
    if (run_dir / FAILED).is_file():
        info = json.loads((run_dir / FAILED).read_text())
        return "FAILED", f"{info['reason']} (step {info['step']})"
    steps = list_steps(run_dir / "ckpt")
    if steps:
        return "PARTIAL", f"resumable from step {steps[-1]}"
    return "TODO", ""


def exported_steps(run_dir: Path, steps: str) -> tuple[list[int], list[int]]:
    """(every exported checkpoint step, the ones `steps` selects: the final one, or all) of a run dir.

    The check every stage that reads a run's Hugging Face exports starts with.
    """
    from testbed.errors import TestbedError

    if not (run_dir / "config.yaml").is_file():
        raise TestbedError(f"{run_dir}: not a run directory (no config.yaml)")
    available = list_steps(run_dir / "hf")
    if not available:
        raise TestbedError(f"{run_dir}: no checkpoints under hf/ (train the run first)")
    if steps not in ("final", "all"):
        raise TestbedError(f"--steps {steps!r}: known: final, all")
    return available, available if steps == "all" else [available[-1]]
