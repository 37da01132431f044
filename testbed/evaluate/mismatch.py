"""Does an eval suite speak the language the model was trained on? A model scored on items in a language it
never saw (a real-text model on the synthetic world's tasks, a syn_fr model on syn_en's) gets numbers that
measure something else than the suite was built for: `language_mismatch` says so in one line."""

from __future__ import annotations

from collections.abc import Mapping

from testbed.data.sources import known_sources, mixture


def trained_languages(dataset: str, weights: Mapping[str, float]) -> list[str]:
    """The languages of the run's training mixture (its weights, or the registry's mixture of that name)."""
    sources = known_sources()
    weights = weights or mixture(dataset)
    return sorted({sources[name].language for name in weights if name in sources})


def language_mismatch(suite: str, language: str | None, dataset: str, weights: Mapping[str, float]) -> str | None:
    """One line when the suite's items are in a `language` the model was not trained on; None when they are,
    or when the suite's language is not known (lm-eval's own tasks without `language:`)."""
    if language is None:
        return None
    trained = trained_languages(dataset, weights)
    if language in trained:
        return None
    return (
        f"suite {suite} is in {language}, but the model was trained on {dataset} "
        f"({', '.join(trained) or 'no known language'}): its scores are not what the suite measures"
    )
