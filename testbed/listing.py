"""`testbed list WHAT`: what the config directories and registries hold, one row per entry.

Each lister returns rows (dicts, printed as an aligned table or as JSON); only `sizes` imports torch (the exact
parameter counts are those of the built model, counted on the meta device).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import yaml

from testbed.paths import config_names, find_config

Row = dict[str, object]


def _found(kind: str, name: str) -> Path:
    path = find_config(kind, name)
    assert path is not None  # the name came from config_names
    return path


def ladders() -> list[Row]:
    rows: list[Row] = []
    for name in config_names("ladders"):
        spec = yaml.safe_load(_found("ladders", name).read_text()) or {}
        rows.append(
            {
                "ladder": name,
                "decoder_sizes": " ".join(spec.get("sizes") or {}),
                "t5_sizes": " ".join(spec.get("t5_sizes") or {}),
                "path": str(_found("ladders", name).resolve()),
            }
        )
    return rows


def sizes() -> list[Row]:
    from testbed.arch import arch_names, get_arch
    from testbed.ladder import load_ladder
    from testbed.models import count_params

    rows = []
    for name in config_names("ladders"):
        ladder = load_ladder(name, source=f"ladder {name}")
        for arch in dict.fromkeys(arch_names()):
            for size, rung in ladder.rungs(arch).items():
                params, nonembed = count_params(get_arch(arch).model_config(ladder, rung, False))
                rows.append(
                    {
                        "ladder": name,
                        "arch": get_arch(arch).name,
                        "size": size,
                        "d_model": rung.d_model,
                        "layers": rung.layers,
                        "heads": rung.heads,
                        "params": params,
                        "params_nonembed": nonembed,
                    }
                )
    return rows


def mixtures() -> list[Row]:
    from testbed.data.sources import known_sources, registry

    sources = known_sources()
    return [
        {
            "mixture": name,
            "weights": " ".join(f"{source}:{weight:g}" for source, weight in weights.items()),
            "languages": " ".join(sorted({sources[source].language for source in weights})),
        }
        for name, weights in registry().mixtures.items()
    ]


def suites() -> list[Row]:
    from testbed.evaluate.suite import load_suite, suite_names

    rows = []
    for name in suite_names():
        suite = load_suite(name)
        rows.append(
            {
                "suite": name,
                "generator": suite.generator,
                "language": suite.language or "",
                "tasks": len(suite.tasks),
                "path": str(suite.path.resolve()),
            }
        )
    return rows


def tasks() -> list[Row]:
    """Every task of every suite, and the synthetic world's generated tasks that no suite lists."""
    from testbed.data.synthetic_tasks import TASKS
    from testbed.evaluate.suite import load_suite, suite_names

    rows: list[Row] = []
    for name in suite_names():
        for task in load_suite(name).tasks:
            rows.append(
                {
                    "task": task.name,
                    "suite": name,
                    "lm_eval": task.lm_eval or "(unmapped)",
                    "num_fewshot": task.num_fewshot,
                    "intended": task.intended or "",
                }
            )
    listed = {row["task"] for row in rows}
    for generated in TASKS.names():
        if generated not in listed:
            rows.append({"task": generated, "suite": "", "lm_eval": generated, "num_fewshot": 0, "intended": ""})
    return rows


def laws() -> list[Row]:
    from analysis.laws import LAWS

    return [{"law": name, "inputs": ",".join(law.inputs), "formula": law.formula} for name, law in LAWS.items()]


LISTS: dict[str, Callable[[], list[Row]]] = {
    "ladders": ladders,
    "sizes": sizes,
    "mixtures": mixtures,
    "suites": suites,
    "laws": laws,
    "tasks": tasks,
}


def format_rows(rows: list[Row]) -> str:
    """An aligned table with a header line (columns of the first row)."""
    if not rows:
        return "(none)"
    columns = list(rows[0])
    cells = [[str(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(columns)]
    lines = [columns, *cells]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() for line in lines)
