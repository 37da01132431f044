"""Checkpoints: full training state for exact resume, and Hugging Face exports for evaluation.

Both are written under a temporary name and renamed into place, so a directory that exists is complete.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import torch
from transformers.utils import logging as hf_logging

hf_logging.disable_progress_bar()  # one bar per run is enough: ours


def step_dir(root: Path, step: int) -> Path:
    return root / f"step_{step:06d}"


def _atomic_dir(target: Path, write) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    try:
        write(staging)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def save_hf(root: Path, step: int, model, tokenizer, state_dict: dict | None = None) -> Path:
    """save_pretrained model + tokenizer: loadable by transformers and lm-eval as is.

    `state_dict`: the full weights when the model itself holds only a shard (FSDP). It is left as it was:
    save_pretrained pops the tensors it writes out of the dict it is given, so it gets a copy.
    """
    target = step_dir(root, step)

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp, state_dict=None if state_dict is None else dict(state_dict))
        tokenizer.save_pretrained(tmp)

    _atomic_dir(target, write)
    return target


def save_train_state(root: Path, step: int, state: dict, keep: int) -> Path:
    """The full training state (model, optimizer, scheduler, RNG, data cursor); older ones pruned to `keep`."""
    target = step_dir(root, step)
    _atomic_dir(target, lambda tmp: torch.save(state, tmp / "state.pt"))
    steps = list_steps(root)
    prune(root, keep=set(steps[-keep:]))
    return target


def prune(root: Path, keep: set[int]) -> None:
    """Remove the training states whose steps are not in `keep`."""
    for old in list_steps(root):
        if old not in keep:
            shutil.rmtree(step_dir(root, old), ignore_errors=True)


def list_steps(root: Path) -> list[int]:
    if not root.is_dir():
        return []
    return sorted(int(p.name.split("_")[1]) for p in root.glob("step_*") if (p / "state.pt").is_file()
                  or (p / "config.json").is_file())


def load_train_state(root: Path, at_most: int | None = None) -> dict | None:
    """The newest complete training state (not past step `at_most`, if given), or None."""
    steps = [s for s in list_steps(root) if at_most is None or s <= at_most]
    if not steps:
        return None
    return torch.load(step_dir(root, steps[-1]) / "state.pt", weights_only=False, map_location="cpu")
