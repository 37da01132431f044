"""Result rows: appended per run to rows.jsonl (safe with concurrent writers), collected into one table."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

import pandas as pd

from analysis.schema import COLUMNS, to_frame
from testbed.errors import TestbedError

ROWS_FILE = "rows.jsonl"


def append_rows(run_dir: Path, rows: list[dict]) -> None:
    """Append rows as whole lines under an exclusive lock, so concurrent writers never interleave."""
    unknown = {key for row in rows for key in row} - set(COLUMNS)
    if unknown:
        raise ValueError(f"rows carry keys outside the schema: {sorted(unknown)}")
    payload = "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows)
    with open(run_dir / ROWS_FILE, "a", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())
        fcntl.flock(handle, fcntl.LOCK_UN)


def read_rows(run_dir: Path) -> list[dict]:
    path = run_dir / ROWS_FILE
    if not path.is_file():
        return []
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def drop_rows_after(run_dir: Path, step: int, kinds: tuple[str, ...]) -> None:
    """Forget rows of `kinds` measured after `step`: a resumed run measures them again."""
    rows = read_rows(run_dir)
    keep = [r for r in rows if not (r.get("kind") in kinds and (r.get("step") or 0) > step)]
    if len(keep) != len(rows):
        tmp = run_dir / (ROWS_FILE + ".tmp")
        tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in keep), encoding="utf-8")
        os.replace(tmp, run_dir / ROWS_FILE)


def collect(workdir: Path) -> pd.DataFrame:
    """Every run's rows under `workdir` (a sweep dir or a tree of them) as one table."""
    files = sorted(Path(workdir).rglob(ROWS_FILE))
    if not files:
        raise TestbedError(f"{workdir}: no {ROWS_FILE} found under this directory")
    return to_frame([row for path in files for row in read_rows(path.parent)])


def write_table(frame: pd.DataFrame, out: Path) -> None:
    """Write parquet (or CSV for a .csv name) atomically."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    if out.suffix == ".csv":
        frame.to_csv(tmp, index=False)
    elif out.suffix == ".parquet":
        frame.to_parquet(tmp, index=False)
    else:
        raise TestbedError(f"{out}: unknown table format {out.suffix!r} (use .parquet or .csv)")
    os.replace(tmp, out)
