"""BLEU's parts per finetuned checkpoint (benchmarks/replication_translation/, session 17): for every run of a
sweep on one mixture, each checkpoint's corpus BLEU, its 1- to 4-gram precisions, brevity penalty and
hypothesis/reference length ratio (sacrebleu, from the stored predictions.jsonl), averaged over the runs
(pretraining seeds) and finetuning seeds. It tells a dip in BLEU made of fewer right words (unigram
precision) from one made of the right words in a worse order (higher n-grams alone):

    python scripts/bleu_precisions.py runs/alignment_s2_cpu syn_en-syn_fr 20000 syn_de syn_en_fr
"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from pathlib import Path

import sacrebleu


def parts(predictions: Path) -> tuple[float, ...]:
    pairs = [json.loads(line) for line in predictions.read_text().splitlines()]
    hyps, refs = [p["hyp"] for p in pairs], [p["ref"] for p in pairs]
    bleu = sacrebleu.corpus_bleu(hyps, [refs])
    ratio = sum(len(h.split()) for h in hyps) / sum(len(r.split()) for r in refs)
    return (bleu.score, *bleu.precisions, bleu.bp, ratio)


def main(sweep: str, task: str, size: str, *mixtures: str) -> None:
    print("mixture, pretraining step: BLEU, 1- to 4-gram precisions (%), brevity penalty, length ratio; runs x seeds")
    for mixture in mixtures:
        by_step = defaultdict(list)
        for run in sorted(Path(sweep).glob(f"*-{mixture}-*")):
            if not re.search(r"-seed\d+$", run.name):  # a sweep axis's suffix (-flr0.01): another setting, no repeat
                continue
            for predictions in sorted(
                (run / "finetune" / task / f"size_{size}").glob("step_*/seed_*/predictions.jsonl")
            ):
                by_step[int(predictions.parent.parent.name.removeprefix("step_"))].append(parts(predictions))
        for step, values in sorted(by_step.items()):
            m = [sum(v[i] for v in values) / len(values) for i in range(7)]
            print(
                f"{mixture:10s} step {step:6d}: BLEU {m[0]:5.2f}  p1-p4 {m[1]:5.1f} {m[2]:5.1f} {m[3]:5.1f} "
                f"{m[4]:5.1f}  BP {m[5]:.3f}  length ratio {m[6]:.3f}  (n = {len(values)})"
            )


if __name__ == "__main__":
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    main(*sys.argv[1:])
