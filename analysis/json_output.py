"""Strict JSON for the commands' `--json`: a number that is not finite (a relative error against an observed 0,
an interval that could not be computed) is written as null, never as NaN or Infinity."""

from __future__ import annotations

import json
import math


def strict(value):
    """`value` with every non-finite float, at any depth of dicts, lists and tuples, replaced by None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict(v) for v in value]
    return value


def print_json(value, indent: int = 2) -> None:
    print(json.dumps(strict(value), indent=indent, allow_nan=False))
