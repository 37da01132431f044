"""How often finetuned models copy the source's proper names (benchmarks/replication_translation/).

In the synthetic world a name is the same string in every language, so a translation's BLEU depends much on
whether the model copies the names of the source. For every run of a sweep and every finetuned checkpoint of
one task and size, this prints the share of the source's names (capitalised words after the first) that the
hypothesis contains, averaged over the finetuning seeds; then, for the final checkpoint of each run, BLEU
on the words that are not names (every capitalised word after the first dropped from reference and hypothesis
alike) beside plain BLEU, seed 0:

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


def without_names(sentence: str) -> str:
    words = sentence.split()
    return " ".join(words[:1] + [w for w in words[1:] if not w[:1].isupper()])


def bleu_without_names(predictions: Path) -> tuple[float, float]:
    """(plain corpus BLEU, BLEU with names dropped from both sides) of one predictions file."""
    from sacrebleu.metrics import BLEU

    pairs = [json.loads(line) for line in predictions.read_text().splitlines()]
    hyps, refs = [p["hyp"] for p in pairs], [p["ref"] for p in pairs]
    plain = BLEU().corpus_score(hyps, [refs]).score
    masked = BLEU().corpus_score([without_names(h) for h in hyps], [[without_names(r) for r in refs]]).score
    return plain, masked


def main(sweep_dir: str, task: str, size: str) -> None:
    for run in sorted(Path(sweep_dir).glob("*/finetune")):
        steps = sorted((run / task / f"size_{size}").glob("step_*"))
        rates = []
        for step in steps:
            seeds = [copy_rate(p) for p in sorted(step.glob("seed_*/predictions.jsonl"))]
            if seeds:
                rates.append(f"{int(step.name[5:])}:{sum(seeds) / len(seeds):.2f}")
        print(f"{run.parent.name:32s} {' '.join(rates)}")
    print("\nfinal checkpoint, seed 0: plain BLEU / BLEU without names (baseline in brackets)")
    for run in sorted(Path(sweep_dir).glob("*/finetune")):
        steps = sorted((run / task / f"size_{size}").glob("step_*/seed_0/predictions.jsonl"))
        if len(steps) > 1:
            (b_plain, b_masked), (plain, masked) = bleu_without_names(steps[0]), bleu_without_names(steps[-1])
            print(f"{run.parent.name:32s} {plain:5.1f} / {masked:5.1f}   [{b_plain:4.1f} / {b_masked:4.1f}]")


if __name__ == "__main__":
    main(*sys.argv[1:4])
