"""How often finetuned models copy the source's proper names (benchmarks/replication_translation/).

In the synthetic world a name is the same string in every language, so a translation's BLEU depends much on
whether the model copies the names of the source. For every run of a sweep and every finetuned checkpoint of
one task and size, this prints the share of the source's names (capitalised words after the first) that the
hypothesis contains, averaged over the finetuning seeds:

    python scripts/name_copy_rate.py runs/alignment_cpu syn_en-syn_fr 20000
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def names(sentence: str) -> list[str]:
    return [w.strip(".,;:!?") for w in sentence.split()[1:] if w[:1].isupper()]


def copy_rate(predictions: Path) -> float:
    found = total = 0
    for line in predictions.read_text().splitlines():
        pair = json.loads(line)
        wanted = names(pair["src"])
        total += len(wanted)
        found += sum(name in pair["hyp"].split() or name in pair["hyp"] for name in wanted)
    return found / total if total else float("nan")


def main(sweep_dir: str, task: str, size: str) -> None:
    for run in sorted(Path(sweep_dir).glob("*/finetune")):
        steps = sorted((run / task / f"size_{size}").glob("step_*"))
        rates = []
        for step in steps:
            seeds = [copy_rate(p) for p in sorted(step.glob("seed_*/predictions.jsonl"))]
            if seeds:
                rates.append(f"{int(step.name[5:])}:{sum(seeds) / len(seeds):.2f}")
        print(f"{run.parent.name:32s} {' '.join(rates)}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
