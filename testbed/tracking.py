"""Experiment tracking: every run mirrors its numbers to wandb, grouped by sweep, with its resolved config.

The run's rows.jsonl stays the source of truth; tracking is a mirror. It is off the hot path (it logs only
at checkpoints) and never fatal: a wandb error is printed once and tracking stops for that process.

Offline by default: the wandb run lands in `<run_dir>/wandb/offline-run-*` (`wandb sync` uploads it).
WANDB_MODE=online sends it live (with WANDB_PROJECT, WANDB_ENTITY, `wandb login` as usual).
`track: none` in the run config, or TESTBED_TRACK=none in the environment, switches it off.

The interface is three calls, used by train.py and the sweep's stages:
`start(config, run_dir, plan)`, `log_rows(rows)`, `finish(ok)`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
from pathlib import Path
from typing import Any

_active = None  # the wandb run of this process, if any
TRANSLATION_X = "translation/tokens"  # the x axis of the translation metrics: the checkpoint's pretraining tokens


def enabled(config) -> bool:
    choice = os.environ.get("TESTBED_TRACK") or config.track
    rank = int(os.environ.get("RANK", "0") or 0)  # under accelerate, only the main process tracks
    return choice == "wandb" and rank == 0


def wandb_id(run_dir: Path) -> str:
    """Stable per run directory, so a resumed run (or its eval stage) continues the same wandb run."""
    return hashlib.sha1(str(Path(run_dir).resolve()).encode()).hexdigest()[:16]


def start(config, run_dir: Path, plan=None, stage: str = "train") -> None:
    global _active
    finish(ok=True)
    if not enabled(config):
        return
    try:
        import wandb
        from omegaconf import OmegaConf

        # to_container's return type covers every kind of node; a dataclass config gives a dict of str keys
        resolved: dict[str, Any]
        resolved = OmegaConf.to_container(OmegaConf.structured(config))  # type: ignore[assignment]
        if plan is not None:
            resolved["plan"] = {k: v for k, v in dataclasses.asdict(plan).items() if k != "checkpoint_steps"}
        _active = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "testbed"),
            group=config.sweep,
            name=Path(run_dir).name,
            id=wandb_id(run_dir),
            resume="allow",
            job_type=stage,
            dir=str(run_dir),
            config=resolved,
            # wandb.init's Literal omits modes its settings accept (dryrun, run); wandb checks the value
            mode=os.environ.get("WANDB_MODE") or "offline",  # type: ignore[arg-type]
            settings=wandb.Settings(silent=True, console="off"),
        )
    except Exception as err:  # tracking must never stop a run
        _disable(err)


def log_rows(rows: list[dict]) -> None:
    """Result rows -> wandb: val/<set> and train/loss at their step; task numbers into the summary; translation
    rows as `translation/<task>/size_<N>/<metric>` (mean over finetuning seeds) against `translation/tokens`."""
    if _active is None or not rows:
        return
    try:
        at_step: dict[int, dict] = {}
        summary = {}
        for row in rows:
            kind, name, metric = row.get("kind"), row.get("name"), row.get("metric")
            if kind == "val_loss":
                at_step.setdefault(row["step"], {})[f"val/{name}"] = row["value"]
            elif kind in ("train", "train_loss") and metric == "loss":
                at_step.setdefault(row["step"], {})["train/loss"] = row["value"]
            elif kind == "task":
                summary[f"task/{name}/{metric}"] = row["value"]
        for step, metrics in sorted(at_step.items()):
            sample = next(r for r in rows if r["step"] == step)
            _active.log({**metrics, "tokens": sample["tokens"], "flops": sample["flops"]}, step=step)
        if summary:
            _active.summary.update(summary)
        _log_translation([r for r in rows if r.get("kind") == "translation"])
    except Exception as err:
        _disable(err)


def _log_translation(rows: list[dict]) -> None:
    """One wandb step per pretraining checkpoint (the baseline first, at 0 tokens), plotted against its
    pretraining tokens: the translation rows come after training, at steps wandb has already passed."""
    if not rows or _active is None:
        return
    _active.define_metric(TRANSLATION_X)
    _active.define_metric("translation/*", step_metric=TRANSLATION_X)
    by_tokens: dict[int, dict[str, list[float]]] = {}
    for row in rows:
        key = f"translation/{row['name']}/size_{row['finetune_size']}/{row['metric']}"
        by_tokens.setdefault(row["tokens"], {}).setdefault(key, []).append(row["value"])
    for tokens, values in sorted(by_tokens.items()):
        _active.log({TRANSLATION_X: tokens, **{k: sum(v) / len(v) for k, v in values.items()}})


def finish(ok: bool) -> None:
    global _active
    if _active is None:
        return
    run, _active = _active, None
    try:
        run.finish(exit_code=0 if ok else 1)
    except Exception as err:
        _disable(err)


def _disable(err: Exception) -> None:
    global _active
    _active = None
    os.environ["TESTBED_TRACK"] = "none"
    print(
        f"testbed: tracking off for this process: {type(err).__name__}: {err}".splitlines()[0],
        file=sys.stderr,
        flush=True,
    )
