"""Offline multiple-choice tasks for lm-evaluation-harness: one jsonl of items plus one task YAML.

An item is {"query": str, "choices": list[str], "gold": int}. lm-eval scores each choice as the
continuation " " + choice after the query (its default target_delimiter) and picks the most likely one.
The YAML names the jsonl by absolute path (`dataset_path: json`), so the task loads with no hub access:
`TaskManager(include_path=<out_dir>)` finds it by its name. Its doc_to_* keys name the item's fields, which
lm-eval reads directly; a Jinja template ("{{query}}") gives the same strings but is compiled anew for every
item and choice, which was 40 % of a small model's evaluation time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from testbed.errors import TestbedError
from testbed.io import write_text

# Names lm-eval indexes and that are safe as file names.
TASK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")

MC_TASK_YAML = """\
# Written by testbed.evaluate.tasks.write_mc_task; the items are in the jsonl named below.
task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {jsonl}
test_split: test
output_type: multiple_choice
doc_to_text: query
doc_to_choice: choices
doc_to_target: gold
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
metadata:
  version: {version}
"""


def check_mc_item(item: Mapping, where: str) -> dict:
    """One validated item as a plain dict; TestbedError naming `where` if it is malformed."""
    query, choices, gold = item.get("query"), item.get("choices"), item.get("gold")
    if not isinstance(query, str) or not query.strip():
        raise TestbedError(f"{where}: 'query' must be a non-empty string, got {query!r}")
    if query != query.rstrip():
        raise TestbedError(f"{where}: 'query' ends with whitespace ({query!r}); lm-eval adds ' ' itself")
    if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) and c for c in choices):
        raise TestbedError(f"{where}: 'choices' must be a list of at least 2 non-empty strings, got {choices!r}")
    if isinstance(gold, bool) or not isinstance(gold, int) or not 0 <= gold < len(choices):
        raise TestbedError(f"{where}: 'gold' must be an index into {len(choices)} choices, got {gold!r}")
    return {"query": query, "choices": list(choices), "gold": gold}


def write_mc_task(name: str, items: Iterable[Mapping], out_dir: str | Path, *, version: int = 1) -> Path:
    """Write `<out_dir>/<name>.jsonl` and `<out_dir>/<name>.yaml`; return the YAML's path.

    Both files are written to a temporary name and renamed, the jsonl first, so a reader never sees a
    YAML whose items are missing or half-written. Raises TestbedError on a bad name or a bad item.
    Bump `version` when the items of a task change meaning: lm-eval records it with the results.
    """
    if not TASK_NAME.match(name):
        raise TestbedError(f"task name {name!r}: use letters, digits, '_', '-' and '.' only")
    items = [check_mc_item(item, f"task {name}, item {i}") for i, item in enumerate(items)]
    if not items:
        raise TestbedError(f"task {name}: no items")
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    jsonl = out_dir / f"{name}.jsonl"
    yaml_path = out_dir / f"{name}.yaml"
    lines = "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items)
    write_text(jsonl, lines)
    # json.dumps gives a double-quoted scalar YAML reads back verbatim, whatever the path holds.
    write_text(yaml_path, MC_TASK_YAML.format(name=name, jsonl=json.dumps(str(jsonl)), version=version))
    return yaml_path
