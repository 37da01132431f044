"""A run directory's files and markers (DESIGN.md 3.3), and the run's state read from them."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from pathlib import Path

from testbed.checkpoint import list_steps
from testbed.errors import TestbedError

DONE, FAILED = "DONE", "FAILED"
# An flock on this file marks the one process that owns the run (trains it, or runs its stages). The kernel
# drops it when that process dies, so a crashed owner never blocks a resume. The file is never removed:
# unlinking a lock file lets two processes each lock "their" copy of it.
LOCK = "LOCK"


class RunBusy(TestbedError):
    """Another live process owns the run (or the sweep)."""


_held: dict[Path, list] = {}  # lock files this process holds: path -> [open handle, depth]


def main_process() -> bool:
    """Rank 0 of a run's processes (RANK is set by `accelerate launch` and torchrun), or the only process.
    It alone owns the run dir and writes to it."""
    return int(os.environ.get("RANK", "0") or 0) == 0


@contextlib.contextmanager
def owned(directory: Path, what: str = "run"):
    """Own `directory` (a run dir, or a sweep dir) for the duration: re-entrant within this process, refused
    with one line (RunBusy) while another live process owns it. The lock file names the owner."""
    path = (Path(directory) / LOCK).resolve()
    if path in _held:
        _held[path][1] += 1
        try:
            yield
        finally:
            _held[path][1] -= 1
        return
    if not path.parent.is_dir():
        raise TestbedError(f"{directory}: no such directory")
    handle = open(path, "a+", encoding="utf-8")
    if not _try_lock(handle, fcntl.LOCK_EX, attempts=20):  # `owner` holds a shared lock for a moment
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise RunBusy(f"{directory}: this {what} is in use by another process ({holder}); "
                      "wait for it, or stop that process")
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%dT%H:%M:%S')}\n")
    handle.flush()
    _held[path] = [handle, 1]
    try:
        yield
    finally:
        del _held[path]
        handle.close()  # releases the lock


def owner(directory: Path) -> str | None:
    """Who owns `directory` now ("pid N on HOST since T"), or None: no live process, or this one."""
    path = (Path(directory) / LOCK).resolve()
    if path in _held or not path.is_file():
        return None
    with open(path, encoding="utf-8") as handle:
        if _try_lock(handle, fcntl.LOCK_SH, attempts=1):
            return None
        return handle.read().strip() or "unknown"


def _try_lock(handle, kind: int, attempts: int) -> bool:
    for attempt in range(attempts):
        try:
            fcntl.flock(handle, kind | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if attempt + 1 < attempts:
                time.sleep(0.05)
    return False


def write_json(path: Path, payload: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def mark_done(run_dir: Path) -> None:
    (run_dir / FAILED).unlink(missing_ok=True)
    write_json(run_dir / DONE, {"finished": time.strftime("%Y-%m-%dT%H:%M:%S")})


def mark_failed(run_dir: Path, reason: str, step: int | None) -> None:
    write_json(run_dir / FAILED, {"reason": reason, "step": step, "time": time.strftime("%Y-%m-%dT%H:%M:%S")})


def run_state(run_dir: Path) -> tuple[str, str]:
    """(TODO | RUNNING | PARTIAL | DONE | FAILED, detail). PARTIAL: stopped with a checkpoint to resume."""
    if (run_dir / DONE).is_file():
        return "DONE", ""
    holder = owner(run_dir)
    if holder is not None:
        return "RUNNING", holder
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
    if not (run_dir / "config.yaml").is_file():
        raise TestbedError(f"{run_dir}: not a run directory (no config.yaml)")
    available = list_steps(run_dir / "hf")
    if not available:
        raise TestbedError(f"{run_dir}: no checkpoints under hf/ (train the run first)")
    if steps not in ("final", "all"):
        raise TestbedError(f"--steps {steps!r}: known: final, all")
    return available, available if steps == "all" else [available[-1]]
