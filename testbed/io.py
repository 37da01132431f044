"""Writing files so that no reader ever sees half of one: every writer of testbed goes through here.

A file is written beside its target under a temporary name and renamed over it; a directory is built under
a staging name (`.tmp-<name>-<pid>`) and renamed into place. A crash leaves the old target (or none) and a
leftover that the next owner removes (`remove_staging`). Entries get the modes the user's umask gives.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

STAGING_PREFIX = ".tmp-"


def atomic_write(path: Path, write: Callable[[IO], object], binary: bool = False, fsync: bool = False) -> None:
    """Call write(handle) on a temporary file beside `path`, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w", encoding=None if binary else "utf-8") as handle:
            write(handle)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes it 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda handle: handle.write(text))


def write_json(path: Path, payload: object) -> None:
    write_text(path, json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def atomic_dir(target: Path, write: Callable[[Path], object], replace: bool = True) -> bool:
    """Build a directory with write(staging) and rename it to `target`. An existing target is replaced, or
    with `replace=False` kept (another process built the same thing first): returns whether it was kept."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f"{STAGING_PREFIX}{target.name}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        write(staging)
        _widen_to_umask(staging)
        if target.exists():
            if not replace:
                return True
            shutil.rmtree(target)
        try:
            staging.rename(target)
        except OSError as err:
            # another process renamed its build into place between the check above and this rename
            if replace or err.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not target.is_dir():
                raise
            return True
        return False
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _widen_to_umask(root: Path) -> None:
    """Give every entry under `root` at least the read/write bits the umask allows (safetensors and mkstemp
    write 0600), keeping bits it already has (an executable stays one); links are left alone."""
    allowed = 0o666 & ~umask()
    for entry in [root, *root.rglob("*")]:
        if not entry.is_symlink():
            mode = entry.stat().st_mode & 0o7777
            wanted = mode | (allowed | (allowed & 0o444) >> 2 if entry.is_dir() else allowed)
            if wanted != mode:
                entry.chmod(wanted)


def remove_staging(root: Path) -> None:
    """Remove the staging directories that writers killed mid-write left under `root`. Only the owner of
    what `root` belongs to calls this, so nothing it removes is being written."""
    for leftover in Path(root).glob(f"{STAGING_PREFIX}*") if Path(root).is_dir() else ():
        shutil.rmtree(leftover, ignore_errors=True)


def umask() -> int:
    """The process's umask, read without setting it where Linux allows (os.umask sets it process-wide)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
