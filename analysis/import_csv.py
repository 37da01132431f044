"""Any CSV of runs -> a results table, through a column mapping (docs/analysis.md, "Importing a table").

The mapping is `KEY=COLUMN` pairs separated by commas:
- run metadata: run (required), params (required), tokens or multiplier (one required), step, size, dataset,
  seed, flops, params_nonembed, arch;
- wide numbers (one column per number): `loss:NAME=COLUMN` a validation loss on set NAME, `task:NAME=COLUMN`
  the accuracy on task NAME, `task:NAME:METRIC=COLUMN` another metric of it;
- long rows (one row per number): name=COLUMN and value=COLUMN, with kind=COLUMN (values val_loss, task, ...)
  and optionally metric=COLUMN (default: loss for val_loss rows, acc for task rows) and stderr=COLUMN.
Constants for run metadata come from `--set KEY=VALUE` (e.g. dataset=pile). Rows are checkpoints when step is
mapped (`final` marks each run's last step), runs otherwise (each run then has one row, or one per number).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis.errors import AnalysisError
from analysis.schema import COLUMNS, KINDS

META = ("run", "params", "tokens", "multiplier", "step", "size", "dataset", "seed", "flops", "params_nonembed",
        "arch")  # fmt: skip
LONG = ("name", "value", "kind", "metric", "stderr")
NUMERIC = ("params", "tokens", "multiplier", "step", "seed", "flops", "params_nonembed")
DEFAULT_METRIC = {"val_loss": "loss", "task": "acc"}


def parse_pairs(text: str, option: str) -> dict[str, str]:
    """'a=x,b=y' -> {'a': 'x', 'b': 'y'}; a pair without '=' or a key given twice is an error."""
    pairs: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise AnalysisError(f"{option}: {item!r} is not KEY=VALUE")
        if key.strip() in pairs:
            raise AnalysisError(f"{option}: key {key.strip()!r} given twice")
        pairs[key.strip()] = value.strip()
    return pairs


def _wide_key(key: str) -> tuple[str, str, str] | None:
    """(kind, name, metric) of a `loss:NAME` or `task:NAME[:METRIC]` key, None for other keys."""
    parts = key.split(":")
    if parts[0] == "loss" and len(parts) == 2 and parts[1]:
        return "val_loss", parts[1], "loss"
    if parts[0] == "task" and len(parts) in (2, 3) and all(parts[1:]):
        return "task", parts[1], parts[2] if len(parts) == 3 else "acc"
    return None


def check_mapping(mapping: dict[str, str], constants: dict[str, str]) -> None:
    """Unknown keys, missing required keys, and a mix of wide and long numbers are errors."""
    for key in mapping:
        if key not in META and key not in LONG and _wide_key(key) is None:
            raise AnalysisError(f"--map: unknown key {key!r} (known: {', '.join(META + LONG)}, loss:NAME, "
                                "task:NAME[:METRIC])")  # fmt: skip
    for key in constants:
        if key not in META or key == "run":
            raise AnalysisError(f"--set: unknown key {key!r} (known: {', '.join(k for k in META if k != 'run')})")
    given = mapping.keys() | constants.keys()
    for required in ("run", "params"):
        if required not in given:
            raise AnalysisError(f"--map: missing key {required!r} (the column of the {required})")
    if not {"tokens", "multiplier"} & given:
        raise AnalysisError("--map: missing key 'tokens' (or 'multiplier'): the training tokens of each row")
    wide = [k for k in mapping if _wide_key(k)]
    long = [k for k in mapping if k in LONG]
    if wide and long:
        raise AnalysisError(f"--map: {wide[0]!r} (wide) and {long[0]!r} (long) mixed; use one layout")
    if not wide and not long:
        raise AnalysisError("--map: no numbers mapped: give loss:NAME=COLUMN / task:NAME=COLUMN, or name, value, kind")
    if long and (missing := [k for k in ("name", "value", "kind") if k not in mapping]):
        raise AnalysisError(f"--map: long rows need key {missing[0]!r}")


def _numeric(frame: pd.DataFrame, column: str, path: Path) -> pd.Series:
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = values.isna() & frame[column].notna()
    if bad.any():
        raise AnalysisError(f"{path}: column {column!r} has non-numeric value {frame.loc[bad, column].iloc[0]!r}")
    return values


def load(path: str | Path, mapping: dict[str, str], constants: dict[str, str] | None = None) -> pd.DataFrame:
    """The CSV at `path` as a results table (sweep: the file's stem)."""
    path, constants = Path(path), constants or {}
    check_mapping(mapping, constants)
    try:
        raw = pd.read_csv(path)
    except (OSError, ValueError) as err:
        raise AnalysisError(f"{path}: cannot read CSV ({err})") from None
    for key, column in mapping.items():
        if column not in raw.columns:
            raise AnalysisError(f"{path}: --map {key}={column}: no column {column!r} (columns: "
                                f"{', '.join(map(str, raw.columns))})")  # fmt: skip
    meta = pd.DataFrame(index=raw.index)
    for key in META:
        target = "run_id" if key == "run" else key
        if key in mapping:
            meta[target] = _numeric(raw, mapping[key], path) if key in NUMERIC else raw[mapping[key]].astype(str)
        elif key in constants:
            meta[target] = (
                float(constants[key]) if key in NUMERIC and _is_number(constants[key], key) else constants[key]
            )
    if meta["run_id"].isna().any():
        raise AnalysisError(f"{path}: column {mapping['run']!r} has an empty run id")
    if "multiplier" not in meta:
        meta["multiplier"] = meta["tokens"] / meta["params"]
    if "tokens" not in meta:
        meta["tokens"] = (meta["multiplier"] * meta["params"]).round()
    meta["params"], meta["tokens"] = meta["params"].round(), meta["tokens"].round()
    meta["flops"] = meta["flops"] if "flops" in meta else 6.0 * meta["params"] * meta["tokens"]
    numbers = _wide(raw, mapping, path) if any(_wide_key(k) for k in mapping) else _long(raw, mapping, path)
    table = numbers.join(meta, on="row")
    _mark_final(table, "step" in meta, path)
    table["sweep"] = path.stem
    for column in COLUMNS:
        if column not in table:
            table[column] = None
    return table[list(COLUMNS)].astype(COLUMNS)


def _is_number(value: str, key: str) -> bool:
    try:
        float(value)
    except ValueError:
        raise AnalysisError(f"--set {key}={value}: not a number") from None
    return True


def _wide(raw: pd.DataFrame, mapping: dict[str, str], path: Path) -> pd.DataFrame:
    parts = []
    for key, column in mapping.items():
        if (meaning := _wide_key(key)) is not None:
            kind, name, metric = meaning
            values = _numeric(raw, column, path)
            parts.append(pd.DataFrame({"row": raw.index, "kind": kind, "name": name, "metric": metric,
                                       "value": values}).dropna(subset=["value"]))  # fmt: skip
    return pd.concat(parts, ignore_index=True)


def _long(raw: pd.DataFrame, mapping: dict[str, str], path: Path) -> pd.DataFrame:
    kinds = raw[mapping["kind"]].astype(str)
    if unknown := sorted(set(kinds) - set(KINDS)):
        raise AnalysisError(f"{path}: column {mapping['kind']!r} has unknown kind {unknown[0]!r} "
                            f"(known: {', '.join(KINDS)})")  # fmt: skip
    out = pd.DataFrame({"row": raw.index, "kind": kinds, "name": raw[mapping["name"]].astype(str),
                        "value": _numeric(raw, mapping["value"], path)})  # fmt: skip
    out["metric"] = raw[mapping["metric"]].astype(str) if "metric" in mapping else kinds.map(DEFAULT_METRIC)
    if "stderr" in mapping:
        out["stderr"] = _numeric(raw, mapping["stderr"], path)
    return out.dropna(subset=["value"])


def _mark_final(table: pd.DataFrame, stepped: bool, path: Path) -> None:
    """final: each run's last step (with step), else every row, after checking one number per run and name."""
    keys = ["run_id", "step", "kind", "name", "metric"] if stepped else ["run_id", "kind", "name", "metric"]
    duplicated = table.duplicated(keys)
    if duplicated.any():
        row = table[duplicated].iloc[0]
        where = f" at step {row['step']:g}" if stepped else " (map step if rows are checkpoints)"
        raise AnalysisError(f"{path}: run {row['run_id']} has two {row['kind']} values for {row['name']!r}{where}")
    if stepped:
        if table["step"].isna().any():
            raise AnalysisError(f"{path}: column step has an empty value")
        table["final"] = table["step"] == table.groupby("run_id")["step"].transform("max")
    else:
        table["final"] = True
    table.drop(columns=[c for c in ("row",) if c in table], inplace=True)
    if not np.isfinite(table["value"].to_numpy(dtype=float)).all():
        raise AnalysisError(f"{path}: a mapped value is not finite")
