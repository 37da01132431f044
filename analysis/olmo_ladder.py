"""The OLMo model ladder's released evaluations (Bhagia et al., arXiv 2412.04403) imported into the results
schema, one row per checkpoint and number, and the constants of the paper's two-step protocol.

The data ships in `analysis/data/olmo_ladder/` (Apache-2.0, see its SOURCE.md); a directory given by the user
may be that folder or the release's `src/scripts/paper/` (`configs/final.json` and `data/ladder-runs/` or
`ladder-runs/`, CSV files plain or gzipped).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.errors import AnalysisError
from analysis.schema import COLUMNS

NAME = "olmo_ladder"
DATA_DIR = Path(__file__).resolve().parent / "data" / NAME
DATASET = "peteish"  # the release's name for the OLMo 2 training mix of the ladder and both targets
HARNESS = "OLMo in-loop evaluation"
TARGETS = ("7B-4T", "13B-5T")  # the released config's eval-mode entries
X = "c4_en"  # the general validation loss (the paper's alternative intermediate feature)

# The paper's eight tasks (the release's `v2_main` set): name -> {component task: weight}. MMLU is the
# weighted mean of its four subject groups, weights by their share of the test items, as the release's code.
TASKS: dict[str, dict[str, float]] = {
    "mmlu_avg_test_5shot": {
        "mmlu_stem_test_5shot": 0.215,
        "mmlu_humanities_test_5shot": 0.335,
        "mmlu_social_sciences_test_5shot": 0.219,
        "mmlu_other_test_5shot": 0.231,
    },
    **{
        f"{task}_5shot": {f"{task}_5shot": 1.0}
        for task in ("hellaswag_val", "arc_challenge_test", "arc_easy_test", "piqa_val", "csqa_val", "socialiqa_val")
    },
    "openbookqa_test_5shot": {"openbookqa_test_5shot": 1.0},
}
DISPLAY = {
    "mmlu_avg_test_5shot": "MMLU",
    "hellaswag_val_5shot": "HellaSwag",
    "arc_challenge_test_5shot": "ARC-Challenge",
    "arc_easy_test_5shot": "ARC-Easy",
    "piqa_val_5shot": "PIQA",
    "csqa_val_5shot": "CSQA",
    "socialiqa_val_5shot": "Social IQa",
    "openbookqa_test_5shot": "OpenBookQA",
}
# chance accuracy per task family (the release's task minimums; 4 choices unless listed)
CHANCE = {"piqa": 0.5, "socialiqa": 1 / 3, "csqa": 0.2, "boolq": 0.5, "winogrande": 0.5}

# released column -> (kind, metric); the name is the task (with `_5shot`) or the validation set
_VAL = re.compile(r"^eval/(?P<name>.+)-validation/CrossEntropyLoss$")
_TASK = re.compile(
    r"^eval/(?P<family>downstream|downstream_bpb|downstream_soft|downstream_soft_log)/"
    r"(?P<task>.+)_(?P<format>rc|mc)_5shot_(?P<measure>bpb|len_norm|acc|soft|soft_log)$"
)
METADATA = {"_step", "throughput/total_tokens", "throughput/total_training_Gflops", "optim/learning_rate_group0",
            "learning_rate_peak", "batch_size_in_tokens"}  # fmt: skip


def chance(task: str) -> float:
    """Chance accuracy of a released task name (e.g. piqa_val_5shot -> 0.5)."""
    return next((value for family, value in CHANCE.items() if task.startswith(family)), 0.25)


def _metric(match: re.Match) -> str:
    """bpb, acc (the accuracy the paper predicts: length-normalised, BoolQ's plain), mc_acc, soft, ce."""
    if match["family"] == "downstream":
        return "mc_acc" if match["format"] == "mc" else "acc"
    measure = "ce" if match["measure"] == "soft_log" else match["measure"]
    return f"mc_{measure}" if match["format"] == "mc" else measure


def column_meaning(column: str, path: Path) -> tuple[str, str, str] | None:
    """(kind, name, metric) of a released column, None for run metadata; an unknown column is an error."""
    if column in METADATA:
        return None
    if match := _VAL.match(column):
        return "val_loss", match["name"], "loss"
    if match := _TASK.match(column):
        return "task", f"{match['task']}_5shot", _metric(match)
    raise AnalysisError(f"{path}: unknown column {column!r}")


def resolve(directory: str | Path | None) -> tuple[Path, Path]:
    """(configs/final.json, the folder of the run CSVs) of a released-layout directory (None: shipped copy)."""
    root = Path(directory) if directory is not None else DATA_DIR
    config = root / "configs" / "final.json"
    runs = next((d for d in (root / "ladder-runs", root / "data" / "ladder-runs") if d.is_dir()), None)
    if not config.is_file() or runs is None:
        raise AnalysisError(f"{root}: not an {NAME} data directory (expected configs/final.json and ladder-runs/)")
    return config, runs


def read_config(path: Path) -> dict[str, dict]:
    """The released config: entry -> {'files': [run file stems], 'n': N, 'mode': 'train' | 'eval'}."""
    try:
        config = json.loads(path.read_text())
        return {
            name: {"files": [Path(p).stem for p in entry["paths"]], "n": int(entry["n"]), "mode": str(entry["mode"])}
            for name, entry in config.items()
        }
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise AnalysisError(f"{path}: cannot read the ladder config ({err!r})") from None


def _read_run(folder: Path, stem: str) -> tuple[Path, pd.DataFrame]:
    for path in (folder / f"{stem}.csv", folder / f"{stem}.csv.gz"):
        if path.is_file():
            try:
                return path, pd.read_csv(path)
            except (OSError, ValueError) as err:
                raise AnalysisError(f"{path}: cannot read CSV ({err})") from None
    raise AnalysisError(f"{folder / stem}.csv: missing (named in configs/final.json)")


def _run_rows(path: Path, frame: pd.DataFrame, run_id: str, size: str, n: int) -> pd.DataFrame:
    """One row per (checkpoint, released number) of one run file."""
    if frame.empty:
        raise AnalysisError(f"{path}: no rows")
    if "throughput/total_tokens" in frame:
        tokens = frame["throughput/total_tokens"].astype(float)
    elif {"_step", "batch_size_in_tokens"} <= set(frame.columns):
        tokens = frame["_step"].astype(float) * frame["batch_size_in_tokens"].astype(float)
    else:
        raise AnalysisError(f"{path}: missing column 'throughput/total_tokens' (or '_step' and 'batch_size_in_tokens')")
    if tokens.isna().any() or (tokens <= 0).any():
        raise AnalysisError(f"{path}: column tokens has missing or non-positive values")
    meanings = {c: column_meaning(c, path) for c in frame.columns}
    numbers = [c for c, meaning in meanings.items() if meaning is not None]
    base = pd.DataFrame({
        "step": frame["_step"] if "_step" in frame else pd.NA,
        "tokens": tokens.round(),
        "final": np.arange(len(frame)) == len(frame) - 1,
        "lr": frame["learning_rate_peak"] if "learning_rate_peak" in frame else np.nan,
    })  # fmt: skip
    long = base.join(frame[numbers]).melt(id_vars=list(base.columns), var_name="column", value_name="value")
    long = long.dropna(subset=["value"])
    kinds = pd.DataFrame([meanings[c] for c in long["column"]], columns=["kind", "name", "metric"], index=long.index)
    long = long.drop(columns="column").join(kinds)
    long["value"] = long["value"].where(long["metric"] != "ce", -long["value"])  # released as log p: CE = -that
    long["chance"] = np.where(long["metric"].isin(["acc", "mc_acc"]), long["name"].map(chance), np.nan)
    long["num_fewshot"] = np.where(long["kind"] == "task", 5, pd.NA)
    long["harness"] = long["kind"].map({"task": HARNESS})
    return long.assign(
        run_id=run_id, sweep=NAME, arch="decoder", size=size, params=n, params_nonembed=n, dataset=DATASET,
        multiplier=long["tokens"] / n, flops=6.0 * n * long["tokens"],
    )  # fmt: skip


def load(directory: str | Path | None = None) -> pd.DataFrame:
    """The released ladder (16 runs: 4 sizes x 4 token budgets) and the 7B and 13B targets as a results table.

    Every checkpoint row of every run file becomes one row per number: validation losses (kind val_loss, name
    e.g. c4_en), and per task (name e.g. hellaswag_val_5shot) the bits per byte of the correct answer (metric
    bpb), the accuracy (acc: length-normalised, BoolQ plain, as the paper), the multiple-choice-format accuracy
    (mc_acc, targets only), and the probability and cross-entropy of the correct answer (soft, ce = -soft_log).
    `params` and `params_nonembed` are both the release's N (non-embedding), the N of the paper's fits; run ids
    are the file stems (190M-1xC) and the target names (7B-4T, 13B-5T); `final` marks each run's last row.
    """
    config_path, folder = resolve(directory)
    parts = []
    for entry, spec in read_config(config_path).items():
        size = entry.split("-")[0]
        for stem in spec["files"]:
            path, frame = _read_run(folder, stem)
            run_id = entry if spec["mode"] == "eval" else stem
            parts.append(_run_rows(path, frame, run_id, size, spec["n"]))
    table = pd.concat(parts, ignore_index=True)
    for column in COLUMNS:
        if column not in table:
            table[column] = None
    return table[list(COLUMNS)].astype(COLUMNS)


def is_release(table: pd.DataFrame) -> bool:
    """Whether a results table is this import (every row from sweep olmo_ladder)."""
    return bool(len(table)) and bool((table["sweep"] == NAME).fillna(False).all())


def chance_levels() -> dict[str, float]:
    """Chance accuracy of the released tasks."""
    tasks = {c for spec in TASKS.values() for c in spec} | set(TASKS)
    tasks |= {f"{t}_5shot" for t in ("boolq_val", "winogrande_val", "arc_easy_val", "arc_challenge_val",
                                      "openbookqa_val", "mmlu_stem_val", "mmlu_humanities_val",
                                      "mmlu_social_sciences_val", "mmlu_other_val")}  # fmt: skip
    return {task: chance(task) for task in sorted(tasks)}


def published(directory: str | Path | None = None) -> pd.DataFrame:
    """The release's own 13B-5T table (figures/chained_main.csv): per task Actual, Pred (chained accuracy)."""
    path = (Path(directory) if directory is not None else DATA_DIR) / "figures" / "chained_main.csv"
    try:
        return pd.read_csv(path).set_index("Task")
    except (OSError, ValueError, KeyError) as err:
        raise AnalysisError(f"{path}: cannot read the published table ({err})") from None
