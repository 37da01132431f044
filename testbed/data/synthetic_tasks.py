"""Multiple-choice tasks over the synthetic world, written in syn_en, as offline lm-eval tasks.

Each task is built so that one behaviour of the downstream-scaling taxonomy can honestly arise
at micro scale; whether it does is measured, not assumed (docs/synthetic_world.md has the
measurements). A query is the exact prefix of a text the corpus could contain, most of them a
document's opening sentence ('Mara Tobin lives in Vemo.') and the start of the next one, since every
document opens so; the choices are possible next words, so lm-eval's multiple_choice (log-likelihood
of " " + choice after the query) decides by what the model learned. The task suite must be written
with the seed of the corpus the models were trained on.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from analysis.registry import Registry
from testbed.data.synthetic_language import (
    LANGUAGE_SPECS,
    POSSESSIVE,
    PRONOUN,
    TENSE_OF_TIME,
    Language,
    build_language,
)
from testbed.data.synthetic_world import (
    EVENT_VERBS,
    FOODS,
    N_CITIES,
    OCCUPATIONS,
    THING_VERBS,
    THINGS,
    TIMES,
    VERB_OBJECTS,
    Encounter,
    Fact,
    SyntheticError,
    World,
    build_world,
    check_knobs,
    pick,
    shuffled,
    stream,
)

DEFAULT_ITEMS = 1000
TINY_ITEMS = 10
STEREOTYPE_ITEMS = 300  # the rarer half holds about 400 exceptions to their first name's stereotype
CITY_CHOICES = 4
NOUN_CHOICES = 4
FOOD_VERBS = tuple(v for v, kinds in VERB_OBJECTS.items() if kinds == ("food",))


@dataclass(frozen=True)
class TaskGenerator:
    """A task: `items(world, english, rng, n)` draws n items {"query", "choices", "gold"} from `rng` alone."""

    description: str
    items: Callable[[World, Language, random.Random, int], list[dict]]
    default_items: int = DEFAULT_ITEMS
    most: bool = False  # default_items is also the most items the task has (a larger request gets them all)


# A new task is one `TASKS.register("name", TaskGenerator("what it measures", items_function))` call.
TASKS: Registry[TaskGenerator] = Registry("task", error=SyntheticError)


def task_items(
    task: str, n_items: int | None = None, seed: int = 0, world: Mapping[str, float] | None = None
) -> list[dict]:
    """Items {"query", "choices", "gold"} of one task, deterministic in (task, n_items, seed, world).

    world: the knobs of the world the items are about (synthetic_world.WORLD_KNOBS), as the training source's
    `world:`: people are drawn as often as that world's corpus talks about them."""
    generator = TASKS.get(task)
    n = min(n_items, generator.default_items) if n_items is not None and generator.most else n_items
    n = n if n is not None else generator.default_items
    knobs = check_knobs(world or {})
    built, english = build_world(seed, **knobs), build_language(LANGUAGE_SPECS["syn_en"], seed, **knobs)
    return generator.items(built, english, stream(seed, "task", task), n)


def write_task_suite(
    out_dir: Path,
    seed: int = 0,
    tasks: list[str] | None = None,
    n_items: int | None = None,
    world: Mapping[str, float] | None = None,
) -> dict[str, Path]:
    """<task>.jsonl and <task>.yaml (an lm-eval task of that name) per task (default: all); task -> YAML path.

    n_items: items per task (default: each task's own; a task with fewer possible items keeps all it has)."""
    from testbed.evaluate.tasks import write_mc_task

    return {task: write_mc_task(task, task_items(task, n_items, seed, world), out_dir) for task in tasks or TASKS}


def _tense_items(world: World, english: Language, rng: random.Random, n: int) -> list[dict]:
    """'Mara Tobin lives in Vemo. Yesterday she' + the present, past and future of one verb (chance 1/3)."""

    def draw(i: int) -> dict:
        rank, time, verb = world.sample_person(rng), pick(rng, TIMES), pick(rng, EVENT_VERBS)
        query = _opening(world, english, rng, rank, time)
        return {"query": query, "choices": list(english.lexicon[verb]), "gold": TENSE_OF_TIME[time]}

    return _distinct(draw, n)


def _selection_items(world: World, english: Language, rng: random.Random, n: int) -> list[dict]:
    """'... Yesterday she cooked the' + one food among three things, or one thing among three foods."""

    def draw(i: int) -> dict:
        rank, time = world.sample_person(rng), pick(rng, TIMES)
        verb, answers, wrong = (
            (pick(rng, FOOD_VERBS), FOODS, THINGS) if i % 2 else (pick(rng, THING_VERBS), THINGS, FOODS)
        )
        query = f"{_opening(world, english, rng, rank, time)} {english.lexicon[verb][TENSE_OF_TIME[time]]}"
        answer = pick(rng, answers)
        return _choose(
            rng, f"{query} {english.word[pick(rng, ('a', 'the'))]}", answer, shuffled(rng, wrong)[: NOUN_CHOICES - 1]
        )

    return _distinct(draw, n)


def _possessive_items(world: World, english: Language, rng: random.Random, n: int) -> list[dict]:
    """'... Today Mara Tobin sells' + her|his: the grammatical class of the person's first name (chance 1/2)."""

    def draw(i: int) -> dict:
        rank, time, verb = _person_of_gender(world, rng, i % 2), pick(rng, TIMES), pick(rng, THING_VERBS)
        person = world.persons[rank]
        opening = f"{english.realise(Fact(rank, 'city'))} {english.word[time].capitalize()} {person.name}"
        query = f"{opening} {english.lexicon[verb][TENSE_OF_TIME[time]]}"
        return {"query": query, "choices": list(POSSESSIVE), "gold": person.gender}

    return _distinct(draw, n)


def _mixed(*parts: Callable[[World, Language, random.Random, int], list[dict]]):
    """An items function drawing an equal share of n from each part in turn, then shuffling them."""

    def items(world: World, english: Language, rng: random.Random, n: int) -> list[dict]:
        k = len(parts)
        drawn = [it for i, part in enumerate(parts) for it in part(world, english, rng, n // k + (i < n % k))]
        return shuffled(rng, drawn)

    return items


def _home_trap_items(world: World, english: Language, rng: random.Random, n: int) -> list[dict]:
    """'... Yesterday she lost a key in' + another city | the home city named in the opening sentence."""

    def draw(i: int) -> dict:
        rank, time, verb = world.sample_person(rng), pick(rng, TIMES), pick(rng, THING_VERBS)
        home = world.persons[rank].city
        elsewhere = pick(rng, [c for c in range(N_CITIES) if c != home])
        thing = f"{english.word[pick(rng, ('a', 'the'))]} {english.word[pick(rng, THINGS)]}"
        query = f"{_opening(world, english, rng, rank, time)} {english.lexicon[verb][TENSE_OF_TIME[time]]}"
        return _choose(rng, f"{query} {thing} {english.word['in']}", world.cities[elsewhere], [world.cities[home]])

    return _distinct(draw, n)


def _random_label_items(world: World, english: Language, rng: random.Random, n: int) -> list[dict]:
    """Items like home_city's with a random gold choice (drawn after the items, from the same rng), balanced
    over the choices' corpus frequency: the most talked-about city of an item is gold in a quarter of the
    items, the next in a quarter, and so on, so a model that picks by frequency also scores chance."""
    talk = [0.0] * N_CITIES
    for rank, person in enumerate(world.persons):
        talk[person.city] += world.talk(rank)
    index = {name: c for c, name in enumerate(world.cities)}
    items = _home_city_items(world, english, rng, n)
    places = shuffled(rng, [i % CITY_CHOICES for i in range(n)])
    golds = [sorted(item["choices"], key=lambda c: -talk[index[c]])[p] for item, p in zip(items, places, strict=True)]
    return [dict(item, gold=item["choices"].index(gold)) for item, gold in zip(items, golds, strict=True)]


def _occupation_items(world: World, english: Language, rng: random.Random, n: int) -> list[dict]:
    """'Mara Tobin works as a' + 4 occupations, people drawn by how often the corpus talks about them."""
    items = []
    for rank in _weighted_sample(rng, range(len(world.persons)), world.talk, n):
        occupation = world.persons[rank].occupation
        others = shuffled(rng, [o for o in OCCUPATIONS if o != occupation])[: NOUN_CHOICES - 1]
        items.append(_item(rng, english.realise(Fact(rank, "occupation")), occupation, others))
    return items


def _home_city_items(world: World, english: Language, rng: random.Random, n: int) -> list[dict]:
    """People drawn log-uniformly by rank, so items span every frequency from famous to obscure."""
    items = []
    for rank in _weighted_sample(rng, range(len(world.persons)), lambda r: 1 / (r + 1), n):
        city = world.persons[rank].city
        others = shuffled(rng, [c for c in range(N_CITIES) if c != city])[: CITY_CHOICES - 1]
        items.append(
            _item(rng, english.realise(Fact(rank, "city")), world.cities[city], [world.cities[c] for c in others])
        )
    return items


# A third each of tense, selection and possessive items: skills learned at different scales.
_graded_items = _mixed(_tense_items, _selection_items, _possessive_items)
# The same and a quarter of home-city facts of people of every frequency: the facts of the long tail are
# learned last, so the mix keeps improving where its grammar quarters have saturated.
_long_tail_items = _mixed(_tense_items, _selection_items, _possessive_items, _home_city_items)


def _stereotype_items(world: World, english: Language, rng: random.Random, n: int) -> list[dict]:
    """Rare people whose occupation differs from their first name's stereotype (the distractor)."""
    exceptions = [
        rank
        for rank in range(len(world.persons) // 2, len(world.persons))  # the rarer half of the people
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


def _opening(world: World, english: Language, rng: random.Random, rank: int, time: str | None = None) -> str:
    """A document's opening sentence, then the next one's time adverb and subject (she/he or the name)."""
    person = world.persons[rank]
    subject = english.word[PRONOUN[person.gender]] if rng.random() < 0.5 else person.name
    time = time or pick(rng, TIMES)
    return f"{english.realise(Fact(rank, 'city'))} {english.word[time].capitalize()} {subject}"


def _distinct(draw: Callable[[int], dict], n: int) -> list[dict]:
    """`n` items of distinct (query, choices), item i from `draw(i)` (redrawn while it repeats an earlier one)."""
    items: list[dict] = []
    seen: set[tuple] = set()
    for _ in range(100 * n):
        if len(items) == n:
            return items
        item = draw(len(items))
        key = (item["query"], tuple(item["choices"]))
        if key not in seen:
            seen.add(key)
            items.append(item)
    if len(items) == n:
        return items
    raise SyntheticError(f"n_items={n}: only {len(items)} distinct items found")


def _choose(rng: random.Random, query: str, answer: str, distractors: list[str]) -> dict:
    """The answer at a random position among the choices."""
    choices = shuffled(rng, [answer, *distractors])
    return {"query": query, "choices": choices, "gold": choices.index(answer)}


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
    return _choose(rng, _cut(sentence, answer), answer, distractors)


def _cut(sentence: str, tail: str) -> str:
    """The prefix of 'prefix <tail>.'; lm-eval puts the space back between query and choice."""
    if not sentence.endswith(f" {tail}."):
        raise AssertionError(f"{sentence!r} does not end with {tail!r}")
    return sentence[: -len(tail) - 2]


TASKS.register(
    "smooth",
    TaskGenerator(
        "A third each of tense, selection and possessive items ('... Yesterday she cooked the' bread|key|...): "
        "skills the ladder learns at different scales, meant to improve gradually (predictable).",
        _graded_items,
    ),
)
TASKS.register(
    "tense",
    TaskGenerator(
        "The verb's tense after a time adverb ('Mara Tobin lives in Vemo. Yesterday she' sells|sold|will sell): "
        "learned early and steadily, meant to be predictable.",
        _tense_items,
    ),
)
TASKS.register(
    "breakthrough",
    TaskGenerator(
        "The object a verb takes ('... Yesterday she cooked the' one food among three things, or one thing among "
        "three foods): selectional restrictions, flat at chance until the verb-object link is learned, then "
        "abrupt (breakthrough).",
        _selection_items,
    ),
)
TASKS.register(
    "inverse",
    TaskGenerator(
        "Where an event took place ('Mara Tobin lives in Vemo. Yesterday she lost a key in' another city|Vemo): "
        "the gold is a true but atypical place, the distractor the home city the opening names, where most "
        "events happen; models that learn to copy it fall below chance (inverse).",
        _home_trap_items,
    ),
)
TASKS.register(
    "possessive",
    TaskGenerator(
        "Her/his after a verb ('... Today Mara Tobin sells' her|his): the grammatical class of the person's first "
        "name, learned name by name (nothing in its spelling signals it; chance 1/2).",
        _possessive_items,
    ),
)
TASKS.register(
    "random_label",
    TaskGenerator(
        "Home-city items ('Mara Tobin lives in' + 4 cities) with the gold choice drawn at random: a trendless control.",
        _random_label_items,
    ),
)
TASKS.register(
    "tiny",
    TaskGenerator(
        f"{TINY_ITEMS} items like smooth's (other draws): a learnable task on a deliberately tiny eval set (noisy).",
        _graded_items,
        TINY_ITEMS,
    ),
)
TASKS.register(
    "occupation",
    TaskGenerator(
        "What a person does ('Mara Tobin works as a' + 4 occupations), people drawn as often as the corpus talks "
        "about them: a fact stated in few documents, learned slowly, a small rise under run-to-run scatter "
        "(noisy).",
        _occupation_items,
    ),
)
TASKS.register(
    "home_city",
    TaskGenerator(
        "Where a person lives ('Mara Tobin lives in' + 4 cities), people of all frequencies: memorised facts, "
        "near chance on the CPU ladders (the tail needs more scale).",
        _home_city_items,
    ),
)
TASKS.register(
    "long_tail",
    TaskGenerator(
        "A quarter each of tense, selection, possessive and home-city items (people of every frequency): "
        "grammar learned early and facts learned down the long tail, meant to improve gradually without "
        "saturating within the CPU ladders (predictable).",
        _long_tail_items,
    ),
)
TASKS.register(
    "agreement",
    TaskGenerator(
        "Her/his after a relative clause ending in another person ('Mara Tobin, who met Kel Dorn in Vemo, lost' "
        "her|his): long-range agreement past an attractor; rises only at the end of the CPU ladders.",
        _agreement_items,
    ),
)
TASKS.register(
    "stereotype",
    TaskGenerator(
        "Occupation of rare people who break their first name's stereotype ('... works as a' true|stereotype): "
        "near chance on the CPU ladders, where neither the stereotype nor the exception is learned.",
        _stereotype_items,
        STEREOTYPE_ITEMS,
        most=True,
    ),
)
