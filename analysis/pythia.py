"""The Pythia suite's released evaluations (Biderman et al. 2023) imported into the results schema: 15 models
(8 sizes on the Pile, 7 on the deduplicated Pile) at up to 27 checkpoints each, zero- and five-shot.

The data ships in `analysis/data/pythia/` (Apache-2.0, see its SOURCE.md) as one long CSV (model, size, deduped,
shots, step, tokens, task, metric, value); a directory given by the user holds a file of that layout.
The release has no validation loss; LAMBADA's perplexity is imported as a loss too (kind val_loss, name
lambada_openai, value ln ppl: the mean negative log-likelihood of the final word), so that laws and classes
have a loss axis. Pythia publishes evaluations only: there is no fitting protocol to reproduce.
"""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import numpy as np
import pandas as pd

from analysis.errors import AnalysisError
from analysis.schema import COLUMNS
from analysis.studies import Study

NAME = "pythia"
DATA_DIR = Path(__file__).resolve().parent / "data" / NAME
FILE = "pythia_v1_evals_long.csv.gz"
HARNESS = "lm-evaluation-harness (Pythia v1 evals)"
X = "lambada_openai"  # the loss axis: ln of LAMBADA perplexity
# Pythia paper Table 1 and the model configs: size -> (total, non-embedding) parameters
PARAMS = {
    "70m": (70_426_624, 18_915_328),
    "160m": (162_322_944, 85_056_000),
    "410m": (405_334_016, 302_311_424),
    "1b": (1_011_781_632, 805_736_448),
    "1.4b": (1_414_647_808, 1_208_602_624),
    "2.8b": (2_775_208_960, 2_517_652_480),
    "6.9b": (6_857_302_016, 6_444_163_072),
    "12b": (11_846_072_320, 11_327_027_200),
}
FINAL_STEP = 143_000
REQUIRED = ("model", "size", "deduped", "shots", "step", "tokens", "task", "metric", "value")
# chance accuracy of the released multiple-choice tasks (4 choices unless listed; LAMBADA is open-ended)
CHANCE = {"piqa": 0.5, "winogrande": 0.5, "wsc": 0.5, "lambada_openai": 0.0, "blimp": 0.5}


def chance(task: str) -> float:
    return next((value for prefix, value in CHANCE.items() if task.startswith(prefix)), 0.25)


def resolve(directory: str | Path | None) -> Path:
    """The long CSV of a directory (default: the shipped copy), or the file itself."""
    root = Path(directory) if directory is not None else DATA_DIR
    path = root if root.is_file() else root / FILE
    if not path.is_file():
        raise AnalysisError(f"{root}: not a {NAME} data directory (expected {FILE})")
    return path


def load(directory: str | Path | None = None) -> pd.DataFrame:
    """The released evaluations as a results table: one row per (model, shots, checkpoint, task, metric), the
    metric's `_stderr` row as its stderr; `final` marks step 143000. Runs are per (model, shots): run ids
    pythia-410m-deduped-0shot; dataset pile or pile_deduped (both 300B tokens)."""
    path = resolve(directory)
    try:
        raw = pd.read_csv(path)
    except (OSError, ValueError) as err:
        raise AnalysisError(f"{path}: cannot read CSV ({err})") from None
    if missing := [c for c in REQUIRED if c not in raw.columns]:
        raise AnalysisError(f"{path}: missing column {missing[0]!r}")
    if unknown := sorted(set(raw["size"]) - PARAMS.keys()):
        raise AnalysisError(f"{path}: column size has unknown value {unknown[0]!r}")
    errors = raw["metric"].str.endswith("_stderr")
    stderr = raw[errors].assign(metric=raw.loc[errors, "metric"].str.removesuffix("_stderr"))
    keys = ["model", "shots", "step", "task", "metric"]
    rows = raw[~errors].merge(stderr[[*keys, "value"]].rename(columns={"value": "stderr"}), on=keys, how="left")
    lambada = rows[(rows["task"] == X) & (rows["metric"] == "ppl")]
    losses = lambada.assign(kind="val_loss", metric="loss", value=np.log(lambada["value"]),
                            stderr=lambda f: f["stderr"] / lambada["value"])  # fmt: skip
    tasks = rows[rows["metric"] != "ppl"].assign(kind="task")
    out = pd.concat([losses, tasks], ignore_index=True)
    total = out["size"].map(lambda s: PARAMS[s][0])
    out = out.assign(
        run_id=out["model"] + "-" + out["shots"].astype(str) + "shot",
        sweep=NAME,
        arch="decoder",
        params=total,
        params_nonembed=out["size"].map(lambda s: PARAMS[s][1]),
        dataset=np.where(out["deduped"] == 1, "pile_deduped", "pile"),
        multiplier=out["tokens"] / total,
        flops=6.0 * total * out["tokens"],
        final=out["step"] == FINAL_STEP,
        name=out["task"],
        num_fewshot=out["shots"],
        harness=HARNESS,
        chance=np.where(out["kind"] == "task", out["task"].map(chance), np.nan),
    )
    for column in COLUMNS:
        if column not in out:
            out[column] = None
    out = out.sort_values(["run_id", "step", "kind", "name", "metric"], kind="stable", ignore_index=True)
    return out[list(COLUMNS)].astype(COLUMNS)


def is_release(table: pd.DataFrame) -> bool:
    return bool(len(table)) and bool((table["sweep"] == NAME).fillna(False).all())


def chance_levels() -> dict[str, float]:
    """Chance accuracy of the released tasks."""
    names = pd.read_csv(resolve(None), usecols=["task"])["task"].unique()
    return {str(task): chance(str(task)) for task in sorted(names)}


def _no_protocol(table: pd.DataFrame, n_bootstrap: int = 0, seed: int = 0) -> NoReturn:
    raise AnalysisError(f"{NAME} publishes evaluations only, no fitting protocol to reproduce; analyse the import "
                        "with `analyze backtest`, `classify` or `fit`")  # fmt: skip


PYTHIA = Study(
    name=NAME,
    load=load,
    reproduce=_no_protocol,
    is_release=is_release,
    chance_levels=chance_levels,
    x=X,
    loss_law="chinchilla",
)
