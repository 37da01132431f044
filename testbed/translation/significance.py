"""The BLEU gain of one system over a baseline on the same test sentences, with a paired bootstrap; also the
gain in BLEU on the words not copied from the source (`metric_gain`).

sacrebleu's own BLEU gives every sentence's sufficient statistics (n-gram matches and totals, lengths) and turns
summed statistics into a corpus score, as its `significance` module does. Its `PairedTest` reports a two-sided
p-value of |difference| and no spread of the difference, so the resampling is done here: each resample draws
the test sentences with replacement, the same draw for both systems (a paired test), and scores both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from testbed.errors import TestbedError
from testbed.translation.metrics import GAINS, NONCOPY_ORDER, noncopy_strings

BOOTSTRAP_SEED = 12345  # sacrebleu's default SACREBLEU_SEED: the same resamples every time


@dataclass(frozen=True)
class Gain:
    value: float  # BLEU(system) - BLEU(baseline), corpus level, 0-100 scale
    stderr: float  # the standard deviation of that difference over the resamples
    p_value: float  # one-sided: the share of resamples with no gain (difference <= 0), +1 smoothed


def paired_bleu_gain(
    system: list[str],
    baseline: list[str],
    references: list[str],
    samples: int = 1000,
    seed: int = BOOTSTRAP_SEED,
    tokenize: str | None = None,
    order: int = 4,
) -> Gain:
    """BLEU(system) - BLEU(baseline) on the same references, with its paired-bootstrap SD and p-value of no gain.
    tokenize: sacrebleu's tokenizer (default 13a; "none" for strings that come tokenised); order: the largest n."""
    from sacrebleu.metrics import BLEU as SacreBLEU

    if not (len(system) == len(baseline) == len(references)) or not references or samples < 1:
        raise TestbedError(
            f"paired bootstrap: {len(system)} system and {len(baseline)} baseline hypotheses for "
            f"{len(references)} references, {samples} resamples: equal non-empty sets and >= 1 resample needed"
        )
    bleu = SacreBLEU(tokenize=tokenize, max_ngram_order=order)
    stats = [np.asarray(bleu._extract_corpus_statistics(h, [references]), dtype=np.int64) for h in (system, baseline)]
    # Each row: how often each sentence is drawn in one resample (n draws with replacement).
    counts = np.random.default_rng(seed).multinomial(
        len(references), np.full(len(references), 1 / len(references)), samples
    )

    def scores(sentence_stats: np.ndarray, weights: np.ndarray) -> np.ndarray:
        return np.array([bleu._compute_score_from_stats(row).score for row in weights @ sentence_stats])

    full = np.ones((1, len(references)), dtype=np.int64)
    value = float(scores(stats[0], full)[0] - scores(stats[1], full)[0])
    diffs = scores(stats[0], counts) - scores(stats[1], counts)
    stderr = float(diffs.std(ddof=1)) if samples > 1 else 0.0
    return Gain(value, stderr, float((np.sum(diffs <= 0) + 1) / (samples + 1)))


def metric_gain(
    gain: str, sources: list[str], references: list[str], system: list[str], baseline: list[str], samples: int
) -> Gain:
    """One of GAINS: the system's score minus the baseline's on the same test sentences, paired bootstrap.
    The noncopy gains resample the sentences with the source's words stripped (metrics.noncopy_bleu)."""
    metric = GAINS[gain]
    if metric in NONCOPY_ORDER:
        stripped_system, stripped_references = noncopy_strings(system, references, sources)
        stripped_baseline = noncopy_strings(baseline, references, sources)[0]
        order = NONCOPY_ORDER[metric]
        return paired_bleu_gain(stripped_system, stripped_baseline, stripped_references, samples, tokenize="none",
                                order=order)  # fmt: skip
    return paired_bleu_gain(system, baseline, references, samples)
