"""Scores of translations against their references: BLEU, chrF, ROUGE-L and COMET, with standard errors."""

from __future__ import annotations

import math
from pathlib import Path

from testbed.errors import TestbedError

METRICS = ("bleu", "chrf", "rougeL", "cross_entropy")  # every row set; "comet" with a COMET model


def score(hypotheses: list[str], references: list[str], sources: list[str], comet_model: str | None) -> dict:
    """metric -> (value, stderr): BLEU, chrF (corpus level, sacrebleu), ROUGE-L F1 x 100 (mean over
    sentences), and COMET (x 100) with a local model."""
    import sacrebleu
    from rouge_score import rouge_scorer

    scores: dict[str, tuple[float, float | None]] = {
        "bleu": (sacrebleu.corpus_bleu(hypotheses, [references]).score, None),
        "chrf": (sacrebleu.corpus_chrf(hypotheses, [references]).score, None),
    }
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    rouge = [100 * scorer.score(ref, hyp)["rougeL"].fmeasure for hyp, ref in zip(hypotheses, references, strict=True)]
    scores["rougeL"] = (sum(rouge) / len(rouge), stderr(rouge))
    if comet_model:
        scores["comet"] = comet(comet_model, hypotheses, references, sources)
    return scores


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
