"""A run's home: `RunDir` owns every file of a run directory (names, markers, rows, records, failures), and
the lock that makes one live process its owner.

    runs/<sweep>/<run_id>/
      config.yaml            the resolved run config (written first; a rerun must match it)
      LOCK                   flock'ed by the one process that owns the run; names it (pid, host, since)
      meta.json              versions, plan, device, throughput
      ckpt/step_N/           state.pt + state.sha256: the full training state, for exact resume
      ckpt/damaged-step_N/   a state that failed its checksum, set aside
      hf/step_N/             save_pretrained model + tokenizer (log-spaced steps and the final one)
      rows.jsonl             one row per measured number (analysis/schema.py); .lock, .bad beside it
      stages/<stage>.json    eval / finetune: DONE or FAILED, with the settings it was done under
      eval_failures.json, finetune_failures.json   what failed, keyed per step and task
      eval_samples/step_N/   lm-eval's per-item samples
      wandb/                 the tracker's offline run
      FAILED                 the reason training stopped (removed when it finishes)
      DONE                   written last
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from pathlib import Path

from testbed import results
from testbed.checkpoint import list_steps
from testbed.errors import TestbedError
from testbed.io import remove_staging, write_json, write_text
from testbed.ladder import RunPlan, run_columns, run_id

# An flock on this file marks the one process that owns the run (trains it, or runs its stages). The kernel
# drops it when that process dies, so a crashed owner never blocks a resume. The file is never removed:
# unlinking a lock file lets two processes each lock "their" copy of it.
LOCK = "LOCK"


class RunBusy(TestbedError):
    """Another live process owns the run (or the sweep)."""


class RunChanged(TestbedError):
    """The run dir holds a different config than the one asked for; `reason` names the first differing key."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


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
        raise RunBusy(
            f"{directory}: this {what} is in use by another process ({holder}); wait for it, or stop that process"
        )
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


# Keys that say how a run executes, not what it computes: a resume may change them (another device, more
# processes, gradient accumulation, tracking) without making it another run.
HOW_KEYS = frozenset({"out_dir", "track", "train.device", "train.distributed", "train.compile", "train.threads",
                      "train.micro_batch_size", "train.attention"})  # fmt: skip


def _shown(value: object) -> str:
    """A config value as YAML writes it: null, true, 0.003, wsd, [a, b]."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return f"[{', '.join(_shown(v) for v in value)}]"
    return str(value)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


class StageFailures:
    """A stage's failures file (eval or finetune): key -> its latest failure, removed once it succeeds; the
    file is rewritten on every change and gone when nothing fails."""

    def __init__(self, run_dir: RunDir, stage: str):
        self.run_dir, self.stage = run_dir, stage
        self.entries = run_dir.failures(stage)

    def record(self, key: str, entry: dict) -> dict:
        self.entries[key] = entry
        self.run_dir.write_failures(self.stage, self.entries)
        return entry

    def clear(self, key: str) -> None:
        if self.entries.pop(key, None) is not None:
            self.run_dir.write_failures(self.stage, self.entries)


class RunDir:
    """One run's directory: every file's name, and every read and write of it (see the module doc)."""

    CONFIG, META, DONE, FAILED, LOCK = "config.yaml", "meta.json", "DONE", "FAILED", LOCK
    FAILURES = {"eval": "eval_failures.json", "finetune": "finetune_failures.json"}

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @classmethod
    def of(cls, config) -> RunDir:
        """Where the run of `config` lives: <out_dir>/<sweep>/<run_id>."""
        return cls(Path(config.out_dir) / config.sweep / run_id(config))

    def __fspath__(self) -> str:
        return str(self.path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def name(self) -> str:
        """The run id."""
        return self.path.name

    @property
    def ckpt(self) -> Path:
        return self.path / "ckpt"

    @property
    def hf(self) -> Path:
        return self.path / "hf"

    @property
    def config_file(self) -> Path:
        return self.path / self.CONFIG

    def failures_file(self, stage: str) -> Path:
        return self.path / self.FAILURES[stage]

    def samples_dir(self, step: int) -> Path:
        return self.path / "eval_samples" / f"step_{step:06d}"

    # The run's config ---------------------------------------------------------------------------------------

    def prepare(self, config, against: str = "sweep") -> RunDir:
        """Create the dir with config.yaml, or check that an existing one holds the same config (RunChanged,
        naming the first differing key, if not). The saved file is read through the current schema, so fields
        added since it was written take their defaults and do not orphan finished runs."""
        from testbed.config_layers import to_yaml

        reason = self.change(config, against)
        if reason is not None:
            raise RunChanged(
                f"{self.config_file}: the run dir holds a different config ({reason}); "
                "use another sweep name or remove the run dir",
                reason,
            )
        if not self.config_file.is_file():
            write_text(self.config_file, to_yaml(config))
        return self

    def change(self, config, against: str = "sweep") -> str | None:
        """Why the saved config is not `config` (`config differs: train.lr 0.003 (saved) vs 0.001 (sweep)`), or
        None: nothing saved yet, or the same config. What `sweep status` shows and `prepare` refuses."""
        from testbed.config_layers import first_difference

        if not self.config_file.is_file():
            return None
        try:
            saved = self.config()
        except TestbedError as err:
            return f"the saved config no longer loads: {err}"
        difference = first_difference(saved, config, ignore=HOW_KEYS)
        if difference is None:
            return self.corpus_change()
        key, was, now = difference
        return f"config differs: {key} {_shown(was)} (saved) vs {_shown(now)} ({against})"

    def corpus_change(self) -> str | None:
        """Why the run's data is not what it trained on: a corpus rebuilt since (its fingerprint in meta.json
        differs from the built one's), or None. A corpus not built now cannot be compared and is passed over."""
        from testbed.data.sources import corpus_fingerprints  # late: sources reads the data registry

        try:
            trained = self.meta().get("corpora") or {}
        except (OSError, ValueError):  # an unreadable meta.json: nothing to compare
            return None
        now = corpus_fingerprints(trained)
        for name, stamp in trained.items():
            if name in now and now[name] != stamp:
                return (f"corpus {name} was rebuilt since the run trained: fingerprint {stamp} (trained) vs "
                        f"{now[name]} (now)")  # fmt: skip
        return None

    def config(self):
        """The run's resolved config, as saved."""
        from testbed.resolve import load_run_config  # late: resolve reads the registries

        return load_run_config(self.config_file)

    # Ownership and markers ----------------------------------------------------------------------------------

    def owned(self):
        """This process owns the run for the duration (see `owned`)."""
        return owned(self.path)

    def owner(self) -> str | None:
        return owner(self.path)

    def remove_leftovers(self) -> None:
        """What writers killed mid-write left: staging directories and temporary files. The owner calls it."""
        remove_staging(self.ckpt)
        remove_staging(self.hf)
        for leftover in self.path.glob("*.tmp"):
            leftover.unlink(missing_ok=True)

    def done(self) -> bool:
        return (self.path / self.DONE).is_file()

    def mark_done(self) -> None:
        (self.path / self.FAILED).unlink(missing_ok=True)
        write_json(self.path / self.DONE, {"finished": _now()})

    def mark_failed(self, reason: str, step: int | None) -> None:
        write_json(self.path / self.FAILED, {"reason": reason, "step": step, "time": _now()})

    def state(self) -> tuple[str, str]:
        """(TODO | RUNNING | PARTIAL | DONE | FAILED, detail) of training. PARTIAL: a checkpoint to resume."""
        if self.done():
            return "DONE", ""
        holder = self.owner()
        if holder is not None:
            return "RUNNING", holder
        if (self.path / self.FAILED).is_file():
            info = json.loads((self.path / self.FAILED).read_text())
            return "FAILED", f"{info['reason']} (step {info['step']})"
        steps = list_steps(self.ckpt)
        if steps:
            return "PARTIAL", f"resumable from step {steps[-1]}"
        return "TODO", ""

    # meta.json ----------------------------------------------------------------------------------------------

    def meta(self) -> dict:
        path = self.path / self.META
        return json.loads(path.read_text()) if path.is_file() else {}

    def write_meta(self, meta: dict) -> None:
        write_json(self.path / self.META, meta)

    # Rows ---------------------------------------------------------------------------------------------------

    def base_row(self, config, plan: RunPlan, step: int) -> dict:
        """The columns every row of the run shares at `step` (analysis/schema.py); `epochs` from meta.json,
        where training recorded it."""
        tokens = plan.tokens_before(step)
        return {
            **run_columns(config, plan),
            "sweep": config.sweep,
            "arch": config.model.arch,
            "step": step,
            "tokens": tokens,
            "flops": 6.0 * plan.params * tokens,
            "final": step == plan.steps,
            "ladder": config.model.ladder,
            "lr": plan.lr,
            "lr_factor": config.train.lr_factor,
            "batch_size": plan.batch_size,
            "seq_len": plan.seq_len,
            "warmup_steps": plan.warmup_steps,
            "schedule": plan.schedule,
            "final_lr_ratio": config.train.final_lr_ratio,
            "weight_decay": config.train.weight_decay,
            "qk_norm": config.model.qk_norm,
            "z_loss": config.train.z_loss,
            "epochs": self.meta().get("epochs"),
        }

    def append_rows(self, rows: list[dict]) -> None:
        results.append_rows(self.path, rows)

    def read_rows(self, skip_bad: bool | None = None) -> list[dict]:
        return results.read_rows(self.path, skip_bad)

    def drop_rows_after(self, step: int, kinds: tuple[str, ...]) -> None:
        results.drop_rows_after(self.path, step, kinds)

    # Stage records and failures -----------------------------------------------------------------------------

    def stage_record(self, stage: str) -> dict | None:
        path = self.path / "stages" / f"{stage}.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def record_stage(self, stage: str, **fields) -> None:
        write_json(self.path / "stages" / f"{stage}.json", dict(fields, time=_now()))

    def failures(self, stage: str) -> dict[str, dict]:
        path = self.failures_file(stage)
        return json.loads(path.read_text()) if path.is_file() else {}

    def write_failures(self, stage: str, failures: dict[str, dict]) -> None:
        """Keep what still fails (keyed per step and task); no file when nothing does."""
        if failures:
            write_text(self.failures_file(stage), json.dumps(failures, indent=1, sort_keys=True) + "\n")
        else:
            self.failures_file(stage).unlink(missing_ok=True)

    # Exports ------------------------------------------------------------------------------------------------

    def exported_steps(self, steps: str) -> tuple[list[int], list[int]]:
        """(every exported checkpoint step, the ones `steps` selects: the final one, or all): the check every
        stage that reads a run's Hugging Face exports starts with."""
        if not self.config_file.is_file():
            raise TestbedError(f"{self.path}: not a run directory (no config.yaml)")
        available = list_steps(self.hf)
        if not available:
            raise TestbedError(f"{self.path}: no checkpoints under hf/ (train the run first)")
        if steps not in ("final", "all"):
            raise TestbedError(f"--steps {steps!r}: known: final, all")
        return available, available if steps == "all" else [available[-1]]
