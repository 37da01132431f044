"""Result rows: appended per run to rows.jsonl (safe with concurrent writers), collected into one table.

Every writer (append_rows, drop_rows_after's rewrite) holds rows.jsonl.lock, a file beside rows.jsonl that is
never replaced or deleted: a lock on rows.jsonl itself would not survive the rewrite's os.replace. A malformed
line raises a TestbedError naming file:line, or with skip_bad (default: $TESTBED_SKIP_BAD_ROWS == "1") is
skipped with a one-line warning; a rewrite keeps what it skipped in rows.jsonl.bad.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
from pathlib import Path

import pandas as pd

from analysis.schema import COLUMNS, to_frame
from testbed.errors import TestbedError
from testbed.io import atomic_write

ROWS_FILE = "rows.jsonl"
LOCK_FILE = ROWS_FILE + ".lock"
BAD_FILE = ROWS_FILE + ".bad"
SKIP_BAD_ROWS_ENV = "TESTBED_SKIP_BAD_ROWS"  # "1": skip bad lines; --skip-bad-rows sets it for every worker


@contextlib.contextmanager
def _rows_lock(run_dir: Path, shared: bool = False):
    """Hold the run's rows lock (exclusive to write, shared to read); released when the lock file closes."""
    try:
        handle = open(Path(run_dir) / LOCK_FILE, "a")
    except OSError:
        if not shared:
            raise
        handle = None  # a read-only copy of runs: nobody writes there, nothing to wait for
    with handle or contextlib.nullcontext():
        if handle is not None:
            fcntl.flock(handle, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield


def _skip(skip_bad: bool | None) -> bool:
    return os.environ.get(SKIP_BAD_ROWS_ENV) == "1" if skip_bad is None else skip_bad


def _parse(path: Path, skip_bad: bool) -> tuple[list[dict], list[tuple[int, bytes, str]]]:
    """A rows.jsonl's rows and skipped (number, raw line, problem); a bad line raises unless skip_bad."""
    rows, bad = [], []
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                problem = None if isinstance(row, dict) else f"a JSON {type(row).__name__}"
            except ValueError as exc:  # JSONDecodeError or UnicodeDecodeError
                problem = str(exc)
            if problem is None:
                rows.append(row)
            elif skip_bad:
                bad.append((number, line, problem))
            else:
                raise TestbedError(
                    f"{path}:{number}: not a JSON object ({problem}); fix or remove the line, "
                    f"or pass --skip-bad-rows ({SKIP_BAD_ROWS_ENV}=1)"
                )
    return rows, bad


def _warn(path: Path, bad: list, where: str = "") -> None:
    for number, _, problem in bad:
        print(f"testbed: warning: {path}:{number}: skipped, not a JSON object ({problem}){where}", file=sys.stderr)


def append_rows(run_dir: Path, rows: list[dict]) -> None:
    """Append rows as whole lines under the rows lock, so concurrent writers never interleave."""
    unknown = {key for row in rows for key in row} - set(COLUMNS)
    if unknown:
        raise ValueError(f"rows carry keys outside the schema: {sorted(unknown)}")
    payload = "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows).encode("utf-8")
    with _rows_lock(run_dir), open(Path(run_dir) / ROWS_FILE, "a+b") as handle:  # opened under the lock
        size = os.fstat(handle.fileno()).st_size
        if size and os.pread(handle.fileno(), 1, size - 1) != b"\n":
            payload = b"\n" + payload  # a writer killed mid-line: leave its torn line a line of its own
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())


def read_rows(run_dir: Path, skip_bad: bool | None = None) -> list[dict]:
    """The run's rows; a malformed line raises TestbedError (file:line) or, with skip_bad, is skipped."""
    path = Path(run_dir) / ROWS_FILE
    if not path.is_file():
        return []
    with _rows_lock(run_dir, shared=True):  # never half of an append in progress
        rows, bad = _parse(path, _skip(skip_bad))
    _warn(path, bad)
    return rows


def drop_rows_after(run_dir: Path, step: int, kinds: tuple[str, ...], skip_bad: bool | None = None) -> None:
    """Forget rows of `kinds` measured after `step`: a resumed run measures them again.

    The read-modify-replace holds the rows lock throughout. Skipped bad lines move to rows.jsonl.bad verbatim.
    """
    path = Path(run_dir) / ROWS_FILE
    with _rows_lock(run_dir):
        if not path.is_file():
            return
        rows, bad = _parse(path, _skip(skip_bad))
        keep = [r for r in rows if not (r.get("kind") in kinds and (r.get("step") or 0) > step)]
        if len(keep) == len(rows) and not bad:
            return
        if bad:
            with open(Path(run_dir) / BAD_FILE, "ab") as handle:  # before the replace: lose nothing
                handle.write(b"".join(line if line.endswith(b"\n") else line + b"\n" for _, line, _ in bad))
                handle.flush()
                os.fsync(handle.fileno())
        text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in keep)
        atomic_write(path, lambda handle: handle.write(text), fsync=True)
    _warn(path, bad, f"; moved to {BAD_FILE}")


def collect(workdir: Path, skip_bad: bool | None = None) -> pd.DataFrame:
    """Every run's rows under `workdir` (a sweep dir or a tree of them) as one table."""
    files = sorted(Path(workdir).rglob(ROWS_FILE))
    if not files:
        raise TestbedError(f"{workdir}: no {ROWS_FILE} found under this directory")
    return to_frame([row for path in files for row in read_rows(path.parent, skip_bad)])
