"""Gadre et al. 2024's released results (104 models) imported into the results schema, and the
constants of their protocol (docs/analysis.md).

The data ships in `analysis/data/gadre2024/` (MIT, see its SOURCE.md); a directory given by the user
may be that folder, its `exp_data/`, or any copy of the released layout.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.errors import AnalysisError
from analysis.schema import to_frame

NAME = "gadre2024"
DATA_DIR = Path(__file__).resolve().parent / "data" / NAME

# released model key -> the paper's size name
SIZES = {
    "d=96_l=8_h=4": "0.011B",
    "d=512_l=8_h=4": "0.079B",
    "d=576_l=24_h=8": "0.154B",
    "d=1024_l=24_h=8": "0.411B",
    "open_lm_1b": "1.4B",
    "open_lm_7b": "6.9B",
}
DATASETS = ("c4_original", "rpj", "rw_original")
VAL_SETS = (
    "c4_val",
    "openlm",
    "paloma_c4_en",
    "paloma_dolma_100_programing_languages",
    "paloma_falcon-refinedweb",
    "paloma_ptb",
    "paloma_redpajama",
    "val_de-en_100",
)
N_MODELS, N_TASKS = 104, 46
X = "c4_val"  # the validation loss every fit of the paper uses
PROGRAMMING = "paloma_dolma_100_programing_languages"  # Lourie et al.'s other x-axis
# the paper's 17-task subset (scaling/constants.py::SUBSET)
SUBSET17 = (
    "bigbench_operators",
    "pubmed_qa_labeled",
    "hellaswag_zeroshot",
    "boolq",
    "arc_easy",
    "coqa",
    "bigbench_dyck_languages",
    "lambada_openai",
    "bigbench_novel_concepts",
    "winograd",
    "bigbench_cs_algorithms",
    "commonsense_qa",
    "bigbench_qa_wikidata",
    "hellaswag",
    "copa",
    "squad",
    "piqa",
)
HARNESS = "llm-foundry icl (heavy)"


def run_id(dataset: str, model: str, cc_mult: float) -> str:
    """The released run name, e.g. rpj-open_lm_1b-32.0 (M = 20 x cc_mult = 640)."""
    return f"{dataset}-{model}-{cc_mult:.1f}" if cc_mult >= 1 else f"{dataset}-{model}-{cc_mult:g}"


def _runs(dataset: str, size_multipliers: Mapping[str, tuple[float, ...]]) -> tuple[str, ...]:
    by_size = {size: model for model, size in SIZES.items()}
    return tuple(run_id(dataset, by_size[s], m / 20) for s, ms in size_multipliers.items() for m in ms)


# Fit and held-out runs per training dataset (as in the released fitting code)
LOSS_FIT = {"0.011B": (20, 320), "0.079B": (20,), "0.154B": (20,), "0.411B": (20,)}
OVERTRAINED_1B = {"c4_original": 80, "rpj": 640, "rw_original": 320}


def loss_fit_runs(dataset: str) -> tuple[str, ...]:
    return _runs(dataset, LOSS_FIT)


def error_fit_runs(dataset: str) -> tuple[str, ...]:
    return _runs(dataset, LOSS_FIT | {"1.4B": (20,)})


def heldout_runs(dataset: str) -> dict[str, str]:
    """target label (e.g. 1.4B-M640) -> run id."""
    targets = {"1.4B": OVERTRAINED_1B[dataset], "6.9B": 20}
    return {f"{size}-M{m}": _runs(dataset, {size: (m,)})[0] for size, m in targets.items()}


def is_release(table: pd.DataFrame) -> bool:
    """Whether a results table is this import (every row from sweep gadre2024)."""
    return bool(len(table)) and bool((table["sweep"] == NAME).fillna(False).all())


def resolve(directory: str | Path | None) -> Path:
    """The `exp_data` folder of a released-layout directory (default: the shipped copy)."""
    root = Path(directory) if directory is not None else DATA_DIR
    for candidate in (root / "exp_data", root):
        if (candidate / "models").is_dir() and (candidate / "evals").is_dir():
            return candidate
    raise AnalysisError(f"{root}: not a {NAME} data directory (expected exp_data/models and exp_data/evals)")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise AnalysisError(f"{path}: cannot read JSON ({err})") from None


def _get(record: dict, path: Path, *keys: str):
    value = record
    for depth, key in enumerate(keys):
        if not isinstance(value, dict) or key not in value:
            raise AnalysisError(f"{path}: missing key {'.'.join(keys[: depth + 1])!r}")
        value = value[key]
    return value


def _val_set(result: dict, path: Path) -> str:
    source = Path(_get(result, path, "val_data")[0])
    name = source.stem if source.parent.name == "de-en" else source.parent.name
    if name not in VAL_SETS:
        raise AnalysisError(f"{path}: unknown validation set {name!r} in results[].val_data")
    return name


def task_metadata(directory: str | Path | None = None) -> dict[str, dict]:
    """task -> {'num_fewshot', 'n_items', 'chance' (fraction)} from eval_metadata.csv."""
    path = resolve(directory) / "eval_metadata.csv"
    try:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        return {
            row["Eval Task"]: {
                "num_fewshot": int(row["#shots"]),
                "n_items": int(row["#datapoints"]),
                "chance": float(row["Random baseline"]) / 100,
            }
            for row in rows
        }
    except (OSError, KeyError, ValueError) as err:
        raise AnalysisError(f"{path}: cannot read task metadata ({err!r})") from None


def chance_levels(tasks=None) -> dict[str, float]:
    """Chance accuracy of the released tasks (empty for tasks it does not know)."""
    meta = task_metadata()
    return {t: m["chance"] for t, m in meta.items() if tasks is None or t in set(tasks)}


def _model_rows(path: Path, evals: Path, meta: dict[str, dict]) -> list[dict]:
    record = _read_json(path)
    name = _get(record, path, "name")
    hyper = _get(record, path, "hyperparameters")
    model = Path(_get(record, path, "hyperparameters", "model")).stem  # some give a config path
    if model not in SIZES:
        raise AnalysisError(f"{path}: unknown hyperparameters.model {model!r}")
    params, tokens = int(hyper["params"]), int(hyper["tokens"])
    run = {
        "run_id": name,
        "sweep": NAME,
        "arch": "decoder",
        "size": SIZES[model],
        "params": params,
        "params_nonembed": int(_get(record, path, "hyperparameters", "params_no_embed")),
        "dataset": _get(record, path, "dataset_name"),
        "multiplier": 20 * float(_get(record, path, "hyperparameters", "chinchilla_multiplier")),
        "tokens": tokens,
        "flops": 6.0 * params * tokens,
        "final": True,
    }
    rows, seen = [], set()
    for result in _get(record, path, "results"):
        val_set = _val_set(result, path)
        if val_set in seen:
            raise AnalysisError(f"{path}: validation set {val_set!r} appears twice in results")
        seen.add(val_set)
        low, high = result.get("loss_sequences_lower_95"), result.get("loss_sequences_upper_95")
        stderr = (high - low) / (2 * 1.96) if low is not None and high is not None else None
        rows.append(
            run | dict(kind="val_loss", name=val_set, metric="loss", value=float(result["loss"]), stderr=stderr)
        )
    if missing := sorted(set(VAL_SETS) - seen):
        raise AnalysisError(f"{path}: results lack validation set(s) {', '.join(missing)}")
    eval_path = evals / f"evaluation_{name}_heavy.json"
    if not eval_path.is_file():
        raise AnalysisError(f"{eval_path}: missing (the downstream results of model {name})")
    scores = _get(_read_json(eval_path), eval_path, "eval_metrics", "icl")
    for task, accuracy in sorted(scores.items()):
        if task not in meta:
            raise AnalysisError(f"{eval_path}: task {task!r} is not in eval_metadata.csv")
        accuracy, items = float(accuracy), meta[task]["n_items"]
        rows.append(run | dict(
            kind="task", name=task, metric="acc", value=accuracy,
            stderr=float(np.sqrt(accuracy * (1 - accuracy) / items)),  # binomial, over the task's items
            num_fewshot=meta[task]["num_fewshot"], harness=HARNESS,
        ))  # fmt: skip
    return rows


def load(directory: str | Path | None = None) -> pd.DataFrame:
    """The released results as a results table: per model 8 val_loss rows and 46 task rows.

    Checks the layout: every model file has its evaluation file, the 8 validation sets, and the
    same task set as every other model; problems raise AnalysisError naming the file and key.
    """
    exp_data = resolve(directory)
    meta = task_metadata(exp_data)
    paths = sorted((exp_data / "models").glob("*.json"))
    if not paths:
        raise AnalysisError(f"{exp_data / 'models'}: no model files")
    rows: list[dict] = []
    tasks = None
    for path in paths:
        mine = _model_rows(path, exp_data / "evals", meta)
        names = {r["name"] for r in mine if r["kind"] == "task"}
        if tasks is not None and names != tasks:
            raise AnalysisError(f"{path}: task set differs from other models' ({sorted(names ^ tasks)[:3]} ...)")
        tasks = names
        rows += mine
    return to_frame(rows)
