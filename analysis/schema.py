"""The results table: one row per measured number (docs/design.md, "The row schema").

This module is the single definition of the columns. `testbed` writes rows with it,
`analysis` reads tables with it, and published results are imported into it.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

# column -> pandas dtype. Optional columns are nullable.
COLUMNS: dict[str, str] = {
    "run_id": "string",  # readable and stable, e.g. dec-s3-synth_a-m20-seed0
    "sweep": "string",
    "arch": "string",  # decoder | t5
    "size": "string",  # ladder rung name, e.g. micro-s3 or 0.154B
    "params": "Int64",  # total parameters N
    "params_nonembed": "Int64",
    "dataset": "string",  # training mixture name
    "multiplier": "Float64",  # token multiplier M = D / N
    "seed": "Int64",
    "step": "Int64",  # optimizer step of the checkpoint measured
    "tokens": "Int64",  # training tokens seen at that step
    "flops": "Float64",  # 6 * N * tokens
    "final": "boolean",  # measured on the end-of-training checkpoint
    "kind": "string",  # val_loss | task | translation | train | train_loss
    "name": "string",  # validation set, task, or translation task
    "metric": "string",  # loss | acc | acc_norm | p_correct | bleu | ...
    "value": "Float64",
    "stderr": "Float64",
    "num_fewshot": "Int64",
    "harness": "string",  # e.g. lm_eval==0.4.13
    "finetune_size": "Int64",
    "alignment": "Float64",
    "finetune_seed": "Int64",  # translation rows: the seed of the finetuning (its data order)
    "p_value": "Float64",  # translation gains (metric bleu_gain): paired-bootstrap p of no gain over the baseline
    "chance": "Float64",  # multiple-choice tasks: the accuracy of guessing (mean over items of 1 / choices)
    "entropy_floor": "Float64",  # val_loss rows of generated text: its entropy under the generator, nats per token
    "intended": "string",  # designed tasks: the class their suite says they are meant to show (analysis.verdicts)
    # The run's hyperparameters (null in imported published results and in rows written before they existed)
    "ladder": "string",  # the size ladder, e.g. micro
    "lr": "Float64",  # the peak learning rate actually used
    "lr_factor": "Float64",  # the multiple of the rule's (or the set) peak LR: an LR sweep's axis
    "batch_size": "Int64",  # sequences per optimizer step
    "seq_len": "Int64",  # tokens per training sequence
    "warmup_steps": "Int64",
    "schedule": "string",  # cosine | wsd
    "final_lr_ratio": "Float64",  # the LR the schedule ends at, as a fraction of the peak (1: constant after warmup)
    "weight_decay": "Float64",
    "qk_norm": "boolean",
    "z_loss": "Float64",
    "epochs": "Float64",  # passes over the training text the run's budget takes (> 1: repeated); null: unknown
}

# The hyperparameter columns two runs of one configuration (arch, size, dataset, multiplier) may differ in: runs
# that differ in one are not seeds of each other (epochs is left out: it follows from the rest)
RUN_SETTINGS = ("ladder", "lr", "lr_factor", "batch_size", "seq_len", "warmup_steps", "schedule", "final_lr_ratio",
                "weight_decay", "qk_norm", "z_loss")  # fmt: skip


def settings_by_run(rows: pd.DataFrame, columns: tuple[str, ...] = RUN_SETTINGS) -> pd.DataFrame:
    """One row per run_id: each of `columns` the rows have, its first known value (null only where every row of
    the run is null: rows written before the column existed are null while later ones are not)."""
    return rows.groupby("run_id")[[c for c in columns if c in rows.columns]].first()


# train_loss: the mean training loss over the steps since the previous such row, every ~1 % of a run (never final);
# the fits read val_loss and task rows only
KINDS = ("val_loss", "task", "translation", "train", "train_loss")


def to_frame(rows: list[dict]) -> pd.DataFrame:
    """Rows (dicts, missing keys allowed) -> a DataFrame with exactly COLUMNS and their dtypes."""
    frame = pd.DataFrame.from_records(rows, columns=list(COLUMNS))
    return frame.astype(COLUMNS)


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a results table written as parquet, CSV or jsonl."""
    path = Path(path)
    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
    elif path.suffix == ".csv":
        frame = pd.read_csv(path)
    elif path.suffix == ".jsonl":
        frame = pd.read_json(path, lines=True)
    else:
        raise ValueError(f"{path}: unknown results format {path.suffix!r} (use .parquet, .csv or .jsonl)")
    missing = [c for c in ("run_id", "kind", "name", "value") if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: results table lacks column(s) {', '.join(missing)}")
    for column in COLUMNS:
        if column not in frame.columns:
            frame[column] = None
    return frame[list(COLUMNS)].astype(COLUMNS)


def write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a results table as parquet, CSV or jsonl (by suffix), atomically: all or nothing."""
    path = Path(path)
    writers = {
        ".parquet": lambda target: frame.to_parquet(target, index=False),
        ".csv": lambda target: frame.to_csv(target, index=False),
        ".jsonl": lambda target: frame.to_json(target, orient="records", lines=True),
    }
    if path.suffix not in writers:
        raise ValueError(f"{path}: unknown results format {path.suffix!r} (use .parquet, .csv or .jsonl)")
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.partial")
    try:
        writers[path.suffix](staging)
        staging.replace(path)
    finally:
        staging.unlink(missing_ok=True)
    return path
