"""Scores of translations against their references: BLEU, BLEU on the words not copied from the source, chrF,
ROUGE-L and COMET, with standard errors.

Every metric but cross-entropy is a function of (hypotheses, references, sources) alone, so a finished
finetuning's stored predictions can be scored again with a metric added later (`run.finetune_run`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path

from testbed.errors import TestbedError

BLEU, NONCOPY, NONCOPY2, CROSS_ENTROPY = "bleu", "bleu_noncopy", "bleu2_noncopy", "cross_entropy"
# The n-gram order of each BLEU on the words not copied: stripped of its copies a test sentence of the synthetic
# world keeps about 3 words, so 4-grams are rare and bleu_noncopy sits near its floor; bigrams still count.
NONCOPY_ORDER = {NONCOPY: 4, NONCOPY2: 2}
Score = tuple[float, float | None]  # (value, stderr)


def bleu(hypotheses: list[str], references: list[str], sources: list[str]) -> Score:
    import sacrebleu

    return sacrebleu.corpus_bleu(hypotheses, [references]).score, None


def noncopy_strings(hypotheses: list[str], references: list[str], sources: list[str]) -> tuple[list[str], list[str]]:
    """(hypotheses, references), each tokenised as BLEU tokenises (sacrebleu's 13a) and stripped of every token
    that also occurs in its sentence's source (case-sensitive, as BLEU is)."""
    from sacrebleu.metrics import BLEU as SacreBLEU

    tokenize = SacreBLEU().tokenizer

    def strip(sentence: str, source: set[str]) -> str:
        return " ".join(word for word in tokenize(sentence).split() if word not in source)

    stripped_h, stripped_r = [], []
    for hyp, ref, src in zip(hypotheses, references, sources, strict=True):
        words = set(tokenize(src).split())
        stripped_h.append(strip(hyp, words))
        stripped_r.append(strip(ref, words))
    return stripped_h, stripped_r


def noncopy_bleu(order: int) -> Callable[[list[str], list[str], list[str]], Score]:
    """BLEU on the words not copied from the source, n-grams up to `order`: corpus BLEU of hypothesis and
    reference with every word of the source sentence removed from both (`noncopy_strings`; the strings come
    tokenised, so scored with tokenize="none"). Language-independent: on the synthetic world it drops the
    proper names (the same string in every language, which a model can copy without translating) and the
    words and punctuation the languages share; on real text, copied identifiers, numbers and punctuation.
    Copying a source word earns nothing here, so the score moves only with what is translated."""

    def metric(hypotheses: list[str], references: list[str], sources: list[str]) -> Score:
        from sacrebleu.metrics import BLEU as SacreBLEU

        stripped_h, stripped_r = noncopy_strings(hypotheses, references, sources)
        bleu = SacreBLEU(tokenize="none", max_ngram_order=order)
        return bleu.corpus_score(stripped_h, [stripped_r]).score, None

    return metric


def chrf(hypotheses: list[str], references: list[str], sources: list[str]) -> Score:
    import sacrebleu

    return sacrebleu.corpus_chrf(hypotheses, [references]).score, None


def rouge_l(hypotheses: list[str], references: list[str], sources: list[str]) -> Score:
    """ROUGE-L F1 x 100, the mean over sentences, with its standard error."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"])
    rouge = [100 * scorer.score(ref, hyp)["rougeL"].fmeasure for hyp, ref in zip(hypotheses, references, strict=True)]
    return sum(rouge) / len(rouge), stderr(rouge)


# The metrics of every row set, in row order, each scored from the texts alone; cross-entropy (scored by the
# finetuned model) follows them, and COMET with a local COMET model.
TEXT_METRICS: dict[str, Callable[[list[str], list[str], list[str]], Score]] = {
    BLEU: bleu,
    **{name: noncopy_bleu(order) for name, order in NONCOPY_ORDER.items()},
    "chrf": chrf,
    "rougeL": rouge_l,
}
METRICS = (*TEXT_METRICS, CROSS_ENTROPY)
# With the baseline, each checkpoint's gain over it (significance.metric_gain): gain metric -> its metric.
GAINS = {f"{metric}_gain": metric for metric in (BLEU, *NONCOPY_ORDER)}


def row_metrics() -> list[str]:
    """Every metric a finetuned combination gets rows of (COMET aside): the finetune stage's record names them, so
    a metric added here reopens the stage of the runs finetuned before, which then only re-scores (run.py)."""
    return [*METRICS, *GAINS]


def score(
    hypotheses: list[str],
    references: list[str],
    sources: list[str],
    comet_model: str | None,
    only: Iterable[str] | None = None,
) -> dict[str, Score]:
    """metric -> (value, stderr) for every text metric (or those in `only`), and COMET (x 100) with a local
    model (unless `only` leaves it out)."""
    wanted = set(TEXT_METRICS) | {"comet"} if only is None else set(only)
    scores = {name: fn(hypotheses, references, sources) for name, fn in TEXT_METRICS.items() if name in wanted}
    if comet_model and "comet" in wanted:
        scores["comet"] = comet(comet_model, hypotheses, references, sources)
    return scores


def text_metrics(comet_model: str | None) -> list[str]:
    """The metrics a protocol scores from predictions alone (those a stored predictions file can re-score)."""
    return [*TEXT_METRICS, *(["comet"] if comet_model else [])]


def comet(model_path: str, hypotheses: list[str], references: list[str], sources: list[str]):
    import torch

    try:
        from comet import load_from_checkpoint
    except ImportError as err:
        raise TestbedError(
            "comet_model is set but unbabel-comet is not installed (pip install 'testbed[comet]')"
        ) from err
    path = Path(model_path).expanduser()
    if not path.is_file():
        raise TestbedError(f"comet_model={model_path!r}: no such checkpoint file (a local COMET .ckpt)")
    model = load_from_checkpoint(str(path))
    data = [{"src": s, "mt": h, "ref": r} for s, h, r in zip(sources, hypotheses, references, strict=True)]
    out = model.predict(data, batch_size=32, gpus=1 if torch.cuda.is_available() else 0, progress_bar=False)
    values = [100 * v for v in out.scores]
    return sum(values) / len(values), stderr(values)


def stderr(values: list[float]) -> float | None:
    n = len(values)
    if n < 2:
        return None
    mu = sum(values) / n
    return math.sqrt(sum((v - mu) ** 2 for v in values) / (n - 1) / n)
