"""The finetuning protocol (configs/eval/finetune*.yaml) and the finetuning-set sizes asked for."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from testbed.errors import TestbedError
from testbed.paths import config_names, find_config


@dataclass
class Protocol:
    """How every checkpoint is finetuned and scored: configs/eval/finetune*.yaml."""

    name: str = "finetune"
    # Exactly one of: optimizer steps whatever the finetuning-set size (Isik: 300), or epochs over the finetuning
    # set, steps = ceil(epochs x pairs / batch_size), so that a larger set gets proportionally more steps.
    steps: int | None = None
    epochs: float | None = None
    batch_size: int = 32  # pairs per step (Isik: 128)
    lrs: list[float] = field(default_factory=lambda: [3e-4, 1e-3, 3e-3])  # constant LR grid; best on valid
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    max_len: int = 128  # tokens kept of each source and each target
    max_new_tokens: int = 128  # greedy decoding stops here (or at EOS)
    n_valid: int = 256  # pairs of the valid split that pick the LR
    n_test: int = 512  # pairs of the test split that are scored
    decode_batch: int = 64
    # Finetuning seeds (batch order and dropout): each checkpoint is finetuned once per seed; the first picks the LR
    seeds: list[int] = field(default_factory=lambda: [0])
    bootstrap_samples: int = 1000  # paired-bootstrap resamples of the test sentences for the bleu_gain rows
    baseline: bool = True  # also finetune the run's initialisation (step 0)
    comet_model: str | None = None  # a local COMET checkpoint (unbabel-comet, the `comet` extra)

    @property
    def harness(self) -> str:
        return f"testbed-finetune/{self.name}"

    def train_steps(self, pairs: int) -> int:
        """Optimizer steps on a finetuning set of `pairs` pairs: `steps`, or ceil(epochs x pairs / batch_size)."""
        if self.steps is not None:
            return self.steps
        assert self.epochs is not None  # load_protocol checks that exactly one is set
        return max(1, math.ceil(self.epochs * pairs / self.batch_size))


def load_protocol(name: str | Path = "finetune") -> Protocol:
    from testbed.config_layers import load_schema, read_yaml

    path = Path(name)
    if path.suffix not in (".yaml", ".yml"):
        path = find_config("eval", str(name)) or path
    if not path.is_file():
        known = [n for n in config_names("eval") if n.startswith("finetune")]
        raise TestbedError(f"--protocol {str(name)!r}: no such protocol (known: {', '.join(known)})")
    protocol = load_schema(Protocol, str(path), [{"name": path.stem}, read_yaml(path)])
    check_budget(path, protocol)
    positive = ("batch_size", "max_len", "max_new_tokens", "n_valid", "n_test", "decode_batch")
    for key in (*positive, "bootstrap_samples"):
        if getattr(protocol, key) <= 0:
            raise TestbedError(f"{path}: {key}={getattr(protocol, key)!r}: must be positive")
    if not protocol.lrs or any(not (lr > 0 and math.isfinite(lr)) for lr in protocol.lrs):
        raise TestbedError(f"{path}: lrs={protocol.lrs!r}: a non-empty list of positive learning rates")
    if not protocol.seeds or len(set(protocol.seeds)) != len(protocol.seeds):
        raise TestbedError(f"{path}: seeds={list(protocol.seeds)!r}: a non-empty list of distinct integer seeds")
    return protocol


def check_budget(path: Path, protocol: Protocol) -> None:
    """Exactly one of steps (a positive integer) and epochs (a positive number); else one line naming both."""
    steps, epochs = protocol.steps, protocol.epochs
    if (steps is None) == (epochs is None):
        raise TestbedError(f"{path}: steps={steps!r}, epochs={epochs!r}: set exactly one of steps and epochs")
    if steps is not None and not (isinstance(steps, int) and steps > 0):
        raise TestbedError(f"{path}: steps={steps!r}: must be a positive integer")
    if epochs is not None and not (isinstance(epochs, (int, float)) and math.isfinite(epochs) and epochs > 0):
        raise TestbedError(f"{path}: epochs={epochs!r}: must be a positive number")


def parse_sizes(sizes: Iterable[int | str]) -> list[int]:
    out = []
    for size in sizes:
        try:
            value = int(float(size))
        except (TypeError, ValueError):
            value = 0
        if value <= 0:
            raise TestbedError(f"--size {size!r}: a finetuning-set size is a positive number of tokens")
        out.append(value)
    return out
