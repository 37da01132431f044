"""The latent world behind the synthetic languages: a knowledge base and the meanings drawn from it.

One seed fixes the world: countries, cities in countries, and people with facts (home city,
occupation, pet, favourite food, friend). Every sentence of every language means something about
this world, so the facts are consistent across the whole corpus and memorising them pays off.
People are ranked by how often the corpus talks about them (Zipf-like), so frequent people are
learned early and rare ones only by bigger or longer-trained models: that long tail keeps the loss
improving with scale. A person's first name fixes their grammatical class (she/her or he/his) and
a stereotypical occupation that most, not all, people of that name have.

Meanings are small language-free tuples; `synthetic_language` turns them into text. Randomness
comes only from `random.Random.random()`, whose sequence Python guarantees for a given seed, and
seeds come from readable keys through blake2b (never `hash()`), so output is identical in every
process and Python version.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import random
from collections.abc import Mapping
from dataclasses import dataclass, replace
from itertools import accumulate
from typing import NamedTuple

from testbed.errors import TestbedError

# The meaning inventory, by English gloss (syn_en's word for each concept).
OCCUPATIONS = (
    "baker",
    "doctor",
    "farmer",
    "teacher",
    "sailor",
    "smith",
    "weaver",
    "painter",
    "miller",
    "fisher",
    "singer",
    "judge",
)
FOODS = ("bread", "fish", "pear", "cheese", "soup", "rice", "cake", "plum", "bean", "honey", "melon", "nut")
THINGS = (
    "book",
    "letter",
    "ball",
    "cup",
    "key",
    "lamp",
    "box",
    "coat",
    "hat",
    "rope",
    "bell",
    "drum",
    "basket",
    "knife",
    "map",
    "ring",
)
ANIMALS = ("dog", "cat", "horse", "goat", "bird", "sheep", "duck", "pig", "rabbit", "cow")
ADJECTIVES = {  # which adjectives a noun of each kind takes
    "food": ("fresh", "sweet", "warm", "big", "small"),
    "thing": ("red", "blue", "green", "black", "white", "yellow", "big", "small", "new", "heavy"),
    "animal": ("big", "small", "young", "black", "white", "brown"),
}
VERB_OBJECTS = {  # event verb -> the kinds of object it takes ("none": intransitive)
    "eat": ("food",),
    "cook": ("food",),
    "buy": ("food", "thing"),
    "sell": ("food", "thing"),
    "carry": ("thing",),
    "find": ("thing",),
    "lose": ("thing",),
    "paint": ("thing",),
    "mend": ("thing",),
    "feed": ("pet",),
    "wash": ("pet",),
    "meet": ("person",),
    "help": ("person",),
    "visit": ("person",),
    "call": ("person",),
    "sing": ("none",),
    "dance": ("none",),
    "sleep": ("none",),
    "laugh": ("none",),
}
EVENT_VERBS = tuple(VERB_OBJECTS)
THING_VERBS = tuple(v for v, kinds in VERB_OBJECTS.items() if kinds == ("thing",))
RELATIONS = ("city", "occupation", "pet", "food", "friend")  # the facts every person has
TIMES = ("yesterday", "today", "tomorrow")  # the time adverb fixes the tense

N_PERSONS, N_FIRST_NAMES, N_LAST_NAMES, N_CITIES, N_COUNTRIES = 3000, 72, 160, 40, 8
ZIPF_OFFSET = 10  # person of rank r is talked about in proportion to 1 / (r + ZIPF_OFFSET)
STEREOTYPE_SHARE = 0.75  # share of people whose occupation is their first name's stereotype

# The chances the generator draws its meanings with (synthetic_entropy computes documents' exact
# probabilities from the same constants).
SENTENCES = (2, 8)  # a document's sentences after its first, drawn uniformly from this range
FACT_BELOW, CITY_FACT_BELOW, ENCOUNTER_BELOW = 0.3, 0.4, 0.5  # a sentence's kind by one uniform draw; else an event
PRONOUN_SHARE = 0.6  # later mentions of a document's person by pronoun
OWN_FOOD_SHARE = 0.5  # food objects that are the person's favourite (else any food, the favourite included)
ADJECTIVE_SHARE = 0.5  # noun phrases with an adjective
FRIEND_SHARE = 0.6  # person objects that are the person's friend (else anyone drawn by talk weight)
EVENT_CITY_SHARE = 0.6  # events with a place
HOME_CITY_SHARE = 0.7  # an event's place that is the person's home city (else any city, home included)
ENCOUNTER_HOME_SHARE = 0.5  # an encounter's place that is the person's home city (else any city)
FOOD_DETERMINERS, THING_DETERMINERS = ("a", "the"), ("a", "the", "own")  # drawn uniformly ("own": her/his)

NAME_SOUNDS = (
    ("b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "st", ""),
    ("a", "e", "i", "o", "u", "ai", "ei"),
    ("", "", "n", "r", "l", "s", "m"),
)


class SyntheticError(TestbedError, ValueError):
    """A bad request (unknown language, split or task; impossible knob): the command line reports it
    in one line, and it is a ValueError for callers that expect one."""


def check_name(kind: str, value: object, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise SyntheticError(f"unknown {kind} {value!r} (valid: {', '.join(valid)})")


# --- randomness -------------------------------------------------------------------------------


def stream(*key: object) -> random.Random:
    """A generator seeded from a readable key (ints and strings), the same in every process."""
    digest = hashlib.blake2b(repr(key).encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))


def pick(rng: random.Random, options: tuple | list):
    return options[int(rng.random() * len(options))]


def chance(rng: random.Random, p: float) -> bool:
    return rng.random() < p


def shuffled(rng: random.Random, items: tuple | list) -> list:
    """Fisher-Yates on `random()` alone, so the order is fixed across Python versions."""
    out = list(items)
    for i in range(len(out) - 1, 0, -1):
        j = int(rng.random() * (i + 1))
        out[i], out[j] = out[j], out[i]
    return out


# --- the knowledge base -----------------------------------------------------------------------


@dataclass(frozen=True)
class Person:
    name: str  # "First Last", the same in every language
    first: str
    gender: int  # grammatical class of the first name: 0 she/her, 1 he/his
    city: int
    occupation: str
    pet: str
    food: str
    friend: int  # another person's rank


@dataclass(frozen=True)
class World:
    countries: tuple[str, ...]
    cities: tuple[str, ...]
    city_country: tuple[int, ...]
    stereotype: dict[str, str]  # first name -> the occupation most people of that name have
    persons: tuple[Person, ...]  # by rank: the most talked-about first
    person_cdf: tuple[float, ...]  # cumulative talk weights, for sampling by rank

    def sample_person(self, rng: random.Random) -> int:
        """A person's rank, drawn as often as the corpus talks about them."""
        return bisect.bisect(self.person_cdf, rng.random() * self.person_cdf[-1])

    def talk(self, rank: int) -> float:
        """How much the corpus talks about the person of `rank` (unnormalised: person_cdf's step at rank)."""
        return self.person_cdf[rank] - (self.person_cdf[rank - 1] if rank else 0.0)


def _names(rng: random.Random, n: int, syllables: int, taken: set[str]) -> list[str]:
    """`n` new capitalised names that are not in `taken` (which they join)."""
    names: list[str] = []
    while len(names) < n:
        name = "".join(pick(rng, o) + pick(rng, v) + pick(rng, c) for o, v, c in [NAME_SOUNDS] * syllables).capitalize()
        if len(name) > 2 and name not in taken:
            taken.add(name)
            names.append(name)
    return names


# The knobs of a world besides its seed (a synthetic source's `world:`), and their defaults
WORLD_KNOBS = {"persons": N_PERSONS, "zipf": 1.0}


@functools.lru_cache(maxsize=8)
def build_world(seed: int, persons: int = N_PERSONS, zipf: float = 1.0) -> World:
    """The world of `seed`. persons > N_PERSONS adds people after the N_PERSONS every world has (those stay
    as they are; the new ones come from a stream of their own, with new last names); zipf: the corpus talks
    about the person of rank r in proportion to (r + ZIPF_OFFSET)^-zipf (1: the default harmonic tail)."""
    check_knobs({"persons": persons, "zipf": zipf})
    world = _default_world(seed)
    if persons > N_PERSONS:
        world = replace(world, persons=world.persons + _more_persons(world, seed, persons - N_PERSONS))
    if persons != N_PERSONS or zipf != 1.0:
        world = replace(world, person_cdf=_talk(persons, zipf))
    return world


def check_knobs(knobs: Mapping[str, object]) -> dict:
    """World knobs (a subset of WORLD_KNOBS) with valid values, or a SyntheticError naming the first bad one."""
    for name, value in knobs.items():
        if name not in WORLD_KNOBS:
            raise SyntheticError(f"{name}={value!r}: unknown world knob (known: {', '.join(WORLD_KNOBS)})")
    persons, zipf = knobs.get("persons", N_PERSONS), knobs.get("zipf", 1.0)
    if isinstance(persons, bool) or not isinstance(persons, int) or persons < N_PERSONS:
        raise SyntheticError(f"persons={persons!r}: a whole number of at least {N_PERSONS}")
    if isinstance(zipf, bool) or not isinstance(zipf, int | float) or not 0 < zipf <= 10:
        raise SyntheticError(f"zipf={zipf!r}: an exponent in (0, 10]")
    return dict(knobs)


def _talk(persons: int, zipf: float) -> tuple[float, ...]:
    """Cumulative talk weights by rank (the default's 1 / (r + offset) exactly as it always was)."""
    weights = (1.0 / (r + ZIPF_OFFSET) if zipf == 1.0 else (r + ZIPF_OFFSET) ** -float(zipf) for r in range(persons))
    return tuple(accumulate(weights))


def _more_persons(world: World, seed: int, extra: int) -> tuple[Person, ...]:
    """`extra` people after the world's own, from a stream of their own: first names of the world (with their
    class and stereotype), last names old and new, friends among everyone."""
    rng = stream(seed, "world", "more persons", extra)
    gender = {p.first: p.gender for p in world.persons}
    firsts = sorted(gender)
    old_lasts = sorted({p.name.split(" ")[1] for p in world.persons})
    taken = {*world.countries, *world.cities, *world.stereotype, *old_lasts}
    lasts = old_lasts + _names(rng, -(-extra // 20), 2, taken)  # about 20 people per new last name
    full_names = {p.name for p in world.persons}
    total = len(world.persons) + extra
    return tuple(
        _draw_persons(rng, extra, len(world.persons), total, firsts, lasts, gender, world.stereotype, full_names)
    )


def _draw_persons(
    rng: random.Random,
    n: int,
    first_rank: int,
    total: int,
    firsts: list[str],
    lasts: list[str],
    gender: dict[str, int],
    stereotype: dict[str, str],
    full_names: set[str],
) -> list[Person]:
    """`n` people of ranks first_rank, first_rank + 1, ... with new full names (added to `full_names`), their
    facts, and friends among the `total` people of the world."""
    persons: list[Person] = []
    while len(persons) < n:
        first, last = pick(rng, firsts), pick(rng, lasts)
        if f"{first} {last}" in full_names:
            continue
        full_names.add(f"{first} {last}")
        usual = stereotype[first]
        occupation = usual if chance(rng, STEREOTYPE_SHARE) else pick(rng, [o for o in OCCUPATIONS if o != usual])
        friend = (first_rank + len(persons) + 1 + int(rng.random() * (total - 1))) % total
        persons.append(
            Person(
                f"{first} {last}",
                first,
                gender[first],
                int(rng.random() * N_CITIES),
                occupation,
                pick(rng, ANIMALS),
                pick(rng, FOODS),
                friend,
            )
        )
    return persons


@functools.lru_cache(maxsize=8)
def _default_world(seed: int) -> World:
    rng = stream(seed, "world")
    taken: set[str] = set()
    countries = _names(rng, N_COUNTRIES, 3, taken)
    cities = _names(rng, N_CITIES, 2, taken)
    firsts = _names(rng, N_FIRST_NAMES, 2, taken)
    lasts = _names(rng, N_LAST_NAMES, 2, taken)
    # Classes and stereotypes are spread evenly over first names, so neither is frequent overall.
    gender = {first: i % 2 for i, first in enumerate(firsts)}
    stereotype = {first: OCCUPATIONS[i % len(OCCUPATIONS)] for i, first in enumerate(shuffled(rng, firsts))}
    persons = _draw_persons(rng, N_PERSONS, 0, N_PERSONS, firsts, lasts, gender, stereotype, set())
    return World(
        countries=tuple(countries),
        cities=tuple(cities),
        city_country=tuple(int(rng.random() * N_COUNTRIES) for _ in cities),
        stereotype=stereotype,
        persons=tuple(persons),
        person_cdf=tuple(accumulate(1.0 / (rank + ZIPF_OFFSET) for rank in range(N_PERSONS))),
    )


# --- meanings ---------------------------------------------------------------------------------


class Fact(NamedTuple):
    """A knowledge-base fact about a person, e.g. 'Mara Tobin lives in Vemo.'"""

    person: int
    relation: str  # one of RELATIONS
    pronoun: bool = False  # refer to the person as she/he (named earlier in the document)


class CityFact(NamedTuple):
    """'Vemo is a city in Norland.'"""

    city: int


class Thing(NamedTuple):
    """A noun phrase; det 'own' is the possessive her/his that agrees with the sentence's subject."""

    det: str  # "a", "the", "own" or "" (bare)
    adjective: str | None
    noun: str


class Event(NamedTuple):
    """'[Yesterday] she bought a red cup [in Vemo].' The time adverb fixes the tense (none: past)."""

    person: int
    pronoun: bool
    verb: str
    obj: Thing | int | None  # a noun phrase, another person's rank, or nothing
    city: int | None
    time: str | None


class Encounter(NamedTuple):
    """'Mara Tobin, who met Kel Dorn in Vemo, lost her key.' The possessive agrees with the subject
    across a relative clause that ends with another person (an attractor of either class)."""

    person: int
    other: int
    city: int
    verb: str  # one of THING_VERBS, in the past tense
    thing: str


Meaning = Fact | CityFact | Event | Encounter


def _object(world: World, rng: random.Random, rank: int, kind: str) -> Thing | int | None:
    person = world.persons[rank]
    if kind == "food":
        noun = person.food if chance(rng, OWN_FOOD_SHARE) else pick(rng, FOODS)
        return Thing(pick(rng, FOOD_DETERMINERS), _maybe_adjective(rng, "food"), noun)
    if kind == "thing":
        return Thing(pick(rng, THING_DETERMINERS), _maybe_adjective(rng, "thing"), pick(rng, THINGS))
    if kind == "pet":
        return Thing("own", _maybe_adjective(rng, "animal"), person.pet)
    if kind == "person":
        other = world.sample_person(rng)
        return person.friend if chance(rng, FRIEND_SHARE) or other == rank else other
    return None


def _maybe_adjective(rng: random.Random, kind: str) -> str | None:
    return pick(rng, ADJECTIVES[kind]) if chance(rng, ADJECTIVE_SHARE) else None


def event(world: World, rng: random.Random, rank: int, pronoun: bool) -> Event:
    """Something a person does; mostly in their home city, often with their own food, pet or friend."""
    verb = pick(rng, EVENT_VERBS)
    obj = _object(world, rng, rank, pick(rng, VERB_OBJECTS[verb]))
    city = None
    if chance(rng, EVENT_CITY_SHARE):
        city = world.persons[rank].city if chance(rng, HOME_CITY_SHARE) else int(rng.random() * N_CITIES)
    return Event(rank, pronoun, verb, obj, city, pick(rng, (None, *TIMES)))


def encounter(world: World, rng: random.Random, rank: int) -> Encounter:
    other = world.sample_person(rng)
    if other == rank:
        other = world.persons[rank].friend
    city = world.persons[rank].city if chance(rng, ENCOUNTER_HOME_SHARE) else int(rng.random() * N_CITIES)
    return Encounter(rank, other, city, pick(rng, THING_VERBS), pick(rng, THINGS))


def document_meanings(world: World, rng: random.Random) -> list[Meaning]:
    """A paragraph about one person: where they live, then 2-8 sentences of facts and events.

    Later mentions are often pronouns, so the class of the first name must be carried across
    sentences; each fact is stated at most once per document, and never contradicted anywhere.
    """
    rank = world.sample_person(rng)
    untold = shuffled(rng, RELATIONS[1:])
    meanings: list[Meaning] = [Fact(rank, "city")]
    low, high = SENTENCES
    for _ in range(low + int(rng.random() * (high - low + 1))):
        u = rng.random()
        if u < FACT_BELOW and untold:
            meanings.append(Fact(rank, untold.pop(), pronoun=chance(rng, PRONOUN_SHARE)))
        elif u < CITY_FACT_BELOW:
            meanings.append(CityFact(world.persons[rank].city))
        elif u < ENCOUNTER_BELOW:
            meanings.append(encounter(world, rng, rank))
        else:
            meanings.append(event(world, rng, rank, pronoun=chance(rng, PRONOUN_SHARE)))
    return meanings


def sentence_meaning(world: World, rng: random.Random) -> Meaning:
    """One self-contained sentence (people named in full), for parallel pairs."""
    rank = world.sample_person(rng)
    u = rng.random()
    if u < FACT_BELOW:
        return Fact(rank, pick(rng, RELATIONS))
    if u < CITY_FACT_BELOW:
        return CityFact(world.persons[rank].city)
    if u < ENCOUNTER_BELOW:
        return encounter(world, rng, rank)
    return event(world, rng, rank, pronoun=False)
