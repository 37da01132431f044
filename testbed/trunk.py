"""The shared stable phase of warmup-stable-decay runs: one trunk, a cooldown branch per token multiplier.

Runs that differ only in their multiplier (and cooldown shape) follow the same trajectory until their
cooldown starts: same init, same batches, same LR (warmup, then the peak). The first of them trains that
prefix once, in `<sweep dir>/_trunks/<trunk id>/`, and leaves the full training state at every branch
point a run has asked for; each run then loads the state at its own cooldown start and trains only its
cooldown. Runs of a sweep usually go in ascending multiplier order, so each extends the trunk a little.

- Requests: a run writes `requests/<step>` before it waits, so whoever is extending the trunk keeps a
  state there even when it is heading further.
- Lock: one process at a time extends a trunk (an flock, released by the kernel if the process dies).
- Kept states: every requested branch point, and the newest (a SIGTERM checkpoint mid-trunk).
- A run that finds no state at or before its branch point but past the start (asked for too late) resumes
  from the newest earlier one: compute is repeated, results are not changed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
from pathlib import Path

from testbed import checkpoint
from testbed.arch import get_arch
from testbed.io import remove_staging


def trunk_dir(config, plan, run_dir: Path) -> Path:
    """Where the trunk of a WSD run lives: keyed by everything that shapes the stable phase."""
    key = {
        "model": dataclasses.asdict(config.model),
        "data": {"mixture": dict(sorted(config.data.mixture.items())), "world_seed": config.data.world_seed},
        "train": {k: getattr(config.train, k) for k in ("seed", "weight_decay", "beta2", "grad_clip", "z_loss")},
        "plan": {k: getattr(plan, k) for k in ("lr", "warmup_steps", "batch_size", "micro_batch_size", "seq_len")},
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
    arch = get_arch(config.model.arch).run_prefix
    name = f"{arch}-{config.model.size}-{config.data.name}-seed{config.train.seed}-{digest}"
    return Path(run_dir).parent / "_trunks" / name


class Trunk:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.states = self.root / "ckpt"
        (self.root / "requests").mkdir(parents=True, exist_ok=True)

    def request(self, step: int) -> None:
        (self.root / "requests" / str(step)).touch()

    def requested(self, step: int) -> bool:
        return (self.root / "requests" / str(step)).is_file()

    @contextlib.contextmanager
    def lock(self, enabled: bool = True):
        """Exclusive use of the trunk; `enabled=False` on the non-main processes of a distributed run."""
        if not enabled:
            yield
            return
        with open(self.root / "LOCK", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                remove_staging(self.states)
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def load(self, at_most: int) -> dict | None:
        return checkpoint.load_train_state(self.states, at_most=at_most)

    def save(self, step: int, state: dict) -> None:
        checkpoint.save_train_state(self.states, step, state, keep=1 << 30)
        newest = max(checkpoint.list_steps(self.states))
        checkpoint.prune(
            self.states, {s for s in checkpoint.list_steps(self.states) if self.requested(s) or s == newest}
        )
