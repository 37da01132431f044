"""Does an eval suite speak the language the model was trained on, and ask about the world it read about? A
model scored on items in a language it never saw (a real-text model on the synthetic world's tasks, a syn_fr
model on syn_en's), or on people of a world other than its corpus's, gets numbers that measure something else
than the suite was built for: `language_mismatch` and `world_mismatch` say so in one line."""

from __future__ import annotations

from collections.abc import Mapping

from testbed.data.sources import known_sources, mixture


def trained_worlds(dataset: str, weights: Mapping[str, float]) -> list[dict]:
    """The world knobs (every knob filled in) of the synthetic sources of the run's training mixture."""
    sources = known_sources()
    worlds = [_filled(sources[name].world) for name in weights or mixture(dataset) if name in sources
              and sources[name].kind == "synthetic"]  # fmt: skip
    return [w for i, w in enumerate(worlds) if w not in worlds[:i]]


def _filled(world: Mapping[str, float]) -> dict:
    """Every world knob, the unset ones at their defaults: {} and {persons: 3000} are the same world."""
    from testbed.data.synthetic_world import WORLD_KNOBS

    return {**WORLD_KNOBS, **world}


def world_mismatch(suite: str, world: Mapping[str, float], dataset: str, weights: Mapping[str, float]) -> str | None:
    """One line when a synthetic suite's items are about a `world` (its knobs) that none of the run's synthetic
    training sources has; None when one has it, or when the run read no synthetic text (language_mismatch's)."""
    trained, wanted = trained_worlds(dataset, weights), _filled(world)
    if not trained or wanted in trained:
        return None
    return (
        f"suite {suite} asks about the world {_knobs(wanted)}, but the model was trained on {dataset} "
        f"({'; '.join(_knobs(w) for w in trained)}): its people are talked about differently"
    )


def _knobs(world: Mapping[str, float]) -> str:
    return ", ".join(f"{knob} {value}" for knob, value in world.items())


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
