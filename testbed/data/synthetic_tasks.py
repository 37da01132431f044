"""Multiple-choice tasks over the synthetic world, written in syn_en, as offline lm-eval tasks.

Each task is built so that one behaviour of the downstream-scaling taxonomy can honestly arise
at micro scale; whether it does is measured, not assumed. A query is the exact prefix of a
sentence the corpus could contain, and the choices are its possible last words, so lm-eval's
multiple_choice (log-likelihood of " " + choice after the query) decides by what the model learned.
The task suite must be written with the seed of the corpus the models were trained on.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from analysis.registry import Registry
from testbed.data.synthetic_language import LANGUAGE_SPECS, POSSESSIVE, Language, build_language
from testbed.data.synthetic_world import (
    N_CITIES,
    N_PERSONS,
    THING_VERBS,
    THINGS,
    Encounter,
    Fact,
    SyntheticError,
    World,
    build_world,
    pick,
    shuffled,
    stream,
)

DEFAULT_ITEMS = 200
TINY_ITEMS = 20
CITY_CHOICES = 4
RARE_FROM_RANK = N_PERSONS // 2  # inverse items ask about the rarer half of the people


@dataclass(frozen=True)
class TaskGenerator:
    """A task: `items(world, english, rng, n)` draws n items {"query", "choices", "gold"} from `rng` alone."""

    description: str
    items: Callable[[World, Language, random.Random, int], list[dict]]
    default_items: int = DEFAULT_ITEMS


# A new task is one `TASKS.register("name", TaskGenerator("what it measures", items_function))` call.
TASKS: Registry[TaskGenerator] = Registry("task", error=SyntheticError)


def task_items(task: str, n_items: int | None = None, seed: int = 0) -> list[dict]:
    """Items {"query", "choices", "gold"} of one task, deterministic in (task, n_items, seed)."""
    generator = TASKS.get(task)
    n = n_items if n_items is not None else generator.default_items
    world, english = build_world(seed), build_language(LANGUAGE_SPECS["syn_en"], seed)
    return generator.items(world, english, stream(seed, "task", task), n)


def write_task_suite(out_dir: Path, seed: int = 0) -> dict[str, Path]:
    """<task>.jsonl and <task>.yaml (an lm-eval task of that name) per task; task -> YAML path."""
    from testbed.evaluate.tasks import write_mc_task

    return {task: write_mc_task(task, task_items(task, seed=seed), out_dir) for task in TASKS}


def _random_label_items(world: World, english: Language, rng: random.Random, n: int) -> list[dict]:
    """Items like smooth's with the gold choice drawn at random (after the items, from the same rng)."""
    items = _home_city_items(world, english, rng, n)
    return [dict(item, gold=int(rng.random() * len(item["choices"]))) for item in items]


def _home_city_items(world: World, english: Language, rng: random.Random, n: int) -> list[dict]:
    """People drawn log-uniformly by rank, so items span every frequency from famous to obscure."""
    items = []
    for rank in _weighted_sample(rng, range(N_PERSONS), lambda r: 1 / (r + 1), n):
        city = world.persons[rank].city
        others = shuffled(rng, [c for c in range(N_CITIES) if c != city])[: CITY_CHOICES - 1]
        items.append(
            _item(rng, english.realise(Fact(rank, "city")), world.cities[city], [world.cities[c] for c in others])
        )
    return items


def _stereotype_items(world: World, english: Language, rng: random.Random, n: int) -> list[dict]:
    """Rare people whose occupation differs from their first name's stereotype (the distractor)."""
    exceptions = [
        rank
        for rank in range(RARE_FROM_RANK, N_PERSONS)
        if world.persons[rank].occupation != world.stereotype[world.persons[rank].first]
    ]
    items = []
    for rank in _weighted_sample(rng, exceptions, lambda r: 1.0, n):
        person = world.persons[rank]
        items.append(
            _item(rng, english.realise(Fact(rank, "occupation")), person.occupation, [world.stereotype[person.first]])
        )
    return items


def _agreement_items(world: World, english: Language, rng: random.Random, n: int) -> list[dict]:
    """Half the items put an attractor of the other class right before the verb; genders balanced."""
    items = []
    for i in range(n):
        gender, attractor_gender = i % 2, (i // 2 + i) % 2
        rank = _person_of_gender(world, rng, gender)
        other = _person_of_gender(world, rng, attractor_gender, avoid=rank)
        meaning = Encounter(rank, other, int(rng.random() * N_CITIES), pick(rng, THING_VERBS), pick(rng, THINGS))
        sentence = english.realise(meaning)
        query = _cut(sentence, f"{POSSESSIVE[gender]} {meaning.thing}")
        items.append({"query": query, "choices": list(POSSESSIVE), "gold": gender})
    return items


def _person_of_gender(world: World, rng: random.Random, gender: int, avoid: int = -1) -> int:
    while True:
        rank = world.sample_person(rng)
        if world.persons[rank].gender == gender and rank != avoid:
            return rank


def _weighted_sample(rng: random.Random, population, weight, n: int) -> list[int]:
    """`n` distinct members, drawn with probability proportional to weight (Efraimidis-Spirakis keys)."""
    population = list(population)
    if n > len(population):
        raise ValueError(f"n_items={n}: this task has at most {len(population)} items")
    keys = [(math.log(1.0 - rng.random()) / weight(member), member) for member in population]
    return [member for _, member in sorted(keys, reverse=True)[:n]]


def _item(rng: random.Random, sentence: str, answer: str, distractors: list[str]) -> dict:
    """The sentence cut before its final `answer`, with the answer at a random position among the choices."""
    choices = shuffled(rng, [answer, *distractors])
    return {"query": _cut(sentence, answer), "choices": choices, "gold": choices.index(answer)}


def _cut(sentence: str, tail: str) -> str:
    """The prefix of 'prefix <tail>.'; lm-eval puts the space back between query and choice."""
    if not sentence.endswith(f" {tail}."):
        raise AssertionError(f"{sentence!r} does not end with {tail!r}")
    return sentence[: -len(tail) - 2]


TASKS.register(
    "smooth",
    TaskGenerator(
        "Where a person lives ('Mara Tobin lives in' + 4 cities), people of all frequencies: memorising facts, "
        "meant to improve gradually with scale.",
        _home_city_items,
    ),
)
TASKS.register(
    "breakthrough",
    TaskGenerator(
        "Her/his after a relative clause ending in another person ('Mara Tobin, who met Kel Dorn in Vemo, lost' "
        "her|his): long-range agreement past an attractor, meant to stay at chance and then rise abruptly.",
        _agreement_items,
    ),
)
TASKS.register(
    "inverse",
    TaskGenerator(
        "Occupation of rare people who break their first name's stereotype ('... works as a' true|stereotype): "
        "the stereotype is a frequent surface pattern, meant to pull accuracy below chance as models learn the "
        "corpus better.",
        _stereotype_items,
    ),
)
TASKS.register(
    "random_label",
    TaskGenerator(
        "Items like smooth's with the gold choice drawn at random: a trendless control.", _random_label_items
    ),
)
TASKS.register(
    "tiny",
    TaskGenerator(
        "20 items like smooth's (other draws): a learnable task on a deliberately tiny, noisy eval set.",
        _home_city_items,
        TINY_ITEMS,
    ),
)
