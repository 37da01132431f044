"""The embedded default data: a controllable synthetic world in four synthetic languages.

A seed fixes a world (people, cities, countries and their facts; `synthetic_world`) and four
languages that express it, playing the roles of en, de, fr and ro (`synthetic_language`). Mixtures
of them have real alignment structure: the same meanings, shared names, a tunable share of shared
words, different word orders. The multiple-choice tasks over the same world are in
`synthetic_tasks`. docs/synthetic_world.md describes the design.

Document i of a (language, split, seed) stream depends on nothing else, so streams can be read
from any offset, and train/valid/test are disjoint streams over the same world.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping

from testbed.data.synthetic_entropy import TextEntropy, text_entropy
from testbed.data.synthetic_language import (
    LANGUAGE_SPECS,
    LANGUAGES,
    LanguageSpec,
    build_language,
    lexical_overlap,
    lexicon,
    resolve,
)
from testbed.data.synthetic_tasks import TASKS, task_items, write_task_suite
from testbed.data.synthetic_world import (
    build_world,
    check_knobs,
    check_name,
    document_meanings,
    sentence_meaning,
    stream,
)

__all__ = [
    "LANGUAGES",
    "LANGUAGE_SPECS",
    "SPLITS",
    "TASKS",
    "LanguageSpec",
    "documents",
    "entropy",
    "lexical_overlap",
    "lexicon",
    "parallel_pairs",
    "task_items",
    "write_task_suite",
]

SPLITS = ("train", "valid", "test")


def documents(
    language: str | LanguageSpec,
    split: str,
    n_docs: int,
    seed: int = 0,
    start: int = 0,
    world: Mapping[str, float] | None = None,
) -> list[str]:
    """Documents [start, start + n_docs) of one language's split: paragraphs about one person each.
    world: knobs of the world (synthetic_world.WORLD_KNOBS: more persons, another Zipf exponent of talk)."""
    return [text for _, text in itertools.islice(_documents(language, split, seed, start, world), n_docs)]


def _documents(
    language: str | LanguageSpec, split: str, seed: int, start: int, world: Mapping[str, float] | None = None
) -> Iterator[tuple[list, str]]:
    """(meanings, text) of documents start, start + 1, ... of one language's split."""
    spec = resolve(language)
    check_name("split", split, SPLITS)
    knobs = check_knobs(world or {})
    realise, built = build_language(spec, seed, **knobs).realise, build_world(seed, **knobs)
    for index in itertools.count(start):
        meanings = document_meanings(built, stream(seed, "document", spec.name, split, index))
        yield meanings, " ".join(realise(m) for m in meanings)


def entropy(
    language: str | LanguageSpec,
    split: str,
    count_tokens: Callable[[list[str]], list[int]],
    n_tokens: int,
    seed: int = 0,
    world: Mapping[str, float] | None = None,
) -> TextEntropy:
    """The entropy of the first `n_tokens` of a split's token stream (its complete documents) under the
    generator: what no model can score below on that text (synthetic_entropy)."""
    built = build_world(seed, **check_knobs(world or {}))
    return text_entropy(_documents(language, split, seed, 0, world), built, count_tokens, n_tokens)


def parallel_pairs(
    src: str | LanguageSpec, dst: str | LanguageSpec, split: str, n_pairs: int, seed: int = 0
) -> list[tuple[str, str]]:
    """One sentence meaning rendered in both languages, per pair.

    The meanings depend on (seed, split) only, so every language pair translates the same sentences.
    """
    src_realise, dst_realise = build_language(resolve(src), seed).realise, build_language(resolve(dst), seed).realise
    check_name("split", split, SPLITS)
    world = build_world(seed)
    pairs = []
    for index in range(n_pairs):
        meaning = sentence_meaning(world, stream(seed, "pair", split, index))
        pairs.append((src_realise(meaning), dst_realise(meaning)))
    return pairs
