"""Checkpoints: full training state for exact resume, and Hugging Face exports for evaluation.

Both are built under a staging name and renamed into place (`testbed.io.atomic_dir`), so a step directory
that exists is complete.
A training state is `state.pt` (tensors and plain containers only: it loads with `weights_only=True`, so
nothing in a run directory can execute code) beside `state.sha256`, its checksum. A resume verifies it;
a state that fails (truncated, overwritten, a flipped bit) is set aside as `damaged-step_N` with a one-line
warning and the newest intact one is used instead.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

import torch
from transformers.utils import logging as hf_logging

from testbed.io import atomic_dir
from testbed.models import declare_untied_head

hf_logging.disable_progress_bar()  # one bar per run is enough: ours

STATE, CHECKSUM = "state.pt", "state.sha256"


def step_dir(root: Path, step: int) -> Path:
    return root / f"step_{step:06d}"


def save_hf(root: Path, step: int, model, tokenizer, state_dict: dict | None = None) -> Path:
    """save_pretrained model + tokenizer: loadable by transformers and lm-eval as is.

    `state_dict`: the full weights when the model itself holds only a shard (FSDP). It is left as it was:
    save_pretrained pops the tensors it writes out of the dict it is given, so it gets a copy.
    """
    target = step_dir(root, step)

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp, state_dict=None if state_dict is None else dict(state_dict))
        declare_untied_head(tmp)  # T5: the config says the head is its own, as it is
        tokenizer.save_pretrained(tmp)

    atomic_dir(target, write)
    return target


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


def save_train_state(root: Path, step: int, state: dict, keep: int) -> Path:
    """The full training state (model, optimizer, scheduler, RNG, data cursor) with its checksum; older
    states pruned to the newest `keep`."""
    target = step_dir(root, step)

    def write(tmp: Path) -> None:
        torch.save(state, tmp / STATE)
        (tmp / CHECKSUM).write_text(f"{_sha256(tmp / STATE)}  {STATE}\n")

    atomic_dir(target, write)
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
    return sorted(
        int(p.name.split("_")[1]) for p in root.glob("step_*") if (p / STATE).is_file() or (p / "config.json").is_file()
    )


class DamagedState(Exception):
    """A training state that fails its checksum or cannot be read."""


def read_state(directory: Path) -> dict:
    """One training state, verified against its checksum (states written before checksums: unverified),
    loaded without unpickling anything but tensors and plain containers."""
    path, checksum = directory / STATE, directory / CHECKSUM
    if checksum.is_file():
        expected = (checksum.read_text().split() or [""])[0]
        if _sha256(path) != expected:
            raise DamagedState("checksum mismatch")
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except Exception as err:  # truncated zip, a crafted pickle (refused by weights_only), ...
        raise DamagedState(f"unreadable ({type(err).__name__}: {str(err).splitlines()[0][:160]})") from None


def load_train_state(root: Path, at_most: int | None = None) -> dict | None:
    """The newest intact training state (not past step `at_most`, if given), or None.

    Damaged states are set aside (renamed `damaged-step_N`, kept for inspection) with a one-line warning.
    """
    candidates = [s for s in list_steps(root) if at_most is None or s <= at_most]
    for step in reversed(candidates):
        directory = step_dir(root, step)
        try:
            return read_state(directory)
        except DamagedState as err:
            aside = _set_aside(directory)
            print(
                f"testbed: warning: {directory}: damaged training state ({err}); set aside as {aside.name}",
                file=sys.stderr,
                flush=True,
            )
    if candidates:
        print(
            f"testbed: warning: {root}: no intact training state left; training starts again from the beginning",
            file=sys.stderr,
            flush=True,
        )
    return None


def _set_aside(directory: Path) -> Path:
    aside = directory.with_name(f"damaged-{directory.name}")
    n = 1
    while aside.exists():
        n += 1
        aside = directory.with_name(f"damaged-{directory.name}.{n}")
    try:
        directory.rename(aside)
    except FileNotFoundError:  # another process of the same run set it aside first
        pass
    return aside
