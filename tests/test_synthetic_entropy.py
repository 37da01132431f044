"""The synthetic world's exact document probabilities: they sum to one, they match the generator's
frequencies, and the entropy of a text is the mean of its documents' -ln P per token."""

from __future__ import annotations

import collections
import math
import random
from itertools import accumulate

import pytest

from testbed.data.synthetic import entropy
from testbed.data.synthetic_entropy import document_log_prob, person_prob, prefix_log_prob, sentence_prob
from testbed.data.synthetic_world import (
    ADJECTIVES,
    EVENT_VERBS,
    FOODS,
    N_CITIES,
    RELATIONS,
    THING_VERBS,
    THINGS,
    TIMES,
    VERB_OBJECTS,
    CityFact,
    Encounter,
    Event,
    Fact,
    Person,
    Thing,
    World,
    build_world,
    document_meanings,
    encounter,
    event,
    stream,
)

WORLD = build_world(0)


def _tiny_world() -> World:
    """Three people (the generator's draws of cities, foods and verbs keep their full ranges)."""
    persons = tuple(
        Person(f"P{i} Q{i}", f"P{i}", i % 2, city=i, occupation="baker", pet="dog", food=FOODS[i], friend=(i + 1) % 3)
        for i in range(3)
    )
    return World(
        countries=("K",),
        cities=tuple(f"c{i}" for i in range(N_CITIES)),
        city_country=(0,) * N_CITIES,
        stereotype={p.first: "baker" for p in persons},
        persons=persons,
        person_cdf=tuple(accumulate((0.5, 0.3, 0.2))),
    )


def _objects(world: World, kind: str, rank: int):
    if kind == "food":
        return [Thing(d, a, n) for d in ("a", "the") for a in (None, *ADJECTIVES["food"]) for n in FOODS]
    if kind == "thing":
        return [Thing(d, a, n) for d in ("a", "the", "own") for a in (None, *ADJECTIVES["thing"]) for n in THINGS]
    if kind == "pet":
        return [Thing("own", a, world.persons[rank].pet) for a in (None, *ADJECTIVES["animal"])]
    if kind == "person":
        return list(range(len(world.persons)))
    return [None]


@pytest.mark.parametrize("untold", [4, 1, 0])
def test_a_sentence_s_probabilities_sum_to_one(untold):
    world, rank = _tiny_world(), 1
    facts = [Fact(rank, r, p) for r in RELATIONS[1 : 1 + untold] for p in (False, True)]  # the untold ones
    total = sum(sentence_prob(world, m, untold) for m in facts)
    total += sentence_prob(world, CityFact(world.persons[rank].city), untold)
    total += sum(
        sentence_prob(world, Encounter(rank, other, city, verb, thing), untold)
        for other in range(3)
        for city in range(N_CITIES)
        for verb in THING_VERBS
        for thing in THINGS
    )
    # events: summed over object and place at one time and pronoun, the others are uniform draws
    events = sum(
        sentence_prob(world, Event(rank, True, verb, obj, city, None), untold)
        for verb in EVENT_VERBS
        for kind in VERB_OBJECTS[verb]
        for obj in _objects(world, kind, rank)
        for city in (None, *range(N_CITIES))
    )
    total += events * (len(TIMES) + 1) / 0.6  # 0.6: PRONOUN_SHARE
    assert total == pytest.approx(1.0, abs=1e-12)


def _frequencies(draw, n: int) -> collections.Counter:
    return collections.Counter(draw(random.Random(i)) for i in range(n))


def test_event_probabilities_match_the_generator_s_frequencies():
    n, rank = 60_000, 0
    counts = _frequencies(lambda rng: event(WORLD, rng, rank, pronoun=True), n)
    for meaning, count in counts.most_common(12):
        expected = sentence_prob(WORLD, meaning, 4) / (0.5 * 0.6)  # the event branch, a pronoun
        sd = math.sqrt(n * expected * (1 - expected))
        assert abs(count - n * expected) < 4 * sd, (meaning, count, n * expected)


def test_encounter_probabilities_match_the_generator_s_frequencies():
    n, rank = 60_000, 3
    counts = _frequencies(lambda rng: encounter(WORLD, rng, rank)[1:3], n)  # (other, city)
    for (other, city), count in counts.most_common(8):
        expected = (
            sum(sentence_prob(WORLD, Encounter(rank, other, city, v, t), 4) for v in THING_VERBS for t in THINGS) / 0.1
        )  # 0.1: the encounter branch
        sd = math.sqrt(n * expected * (1 - expected))
        assert abs(count - n * expected) < 4 * sd, (other, city, count, n * expected)


def test_document_log_prob_is_finite_on_generated_documents_and_counts_each_sentence():
    for i in range(300):
        meanings = document_meanings(WORLD, stream(0, "document", "syn_en", "valid", i))
        assert math.isfinite(document_log_prob(WORLD, meanings))
    meanings = next(  # a document of fewer than 8 sentences after its first, so one more is possible
        m for i in range(20) if len(m := document_meanings(WORLD, stream(0, "document", "syn_en", "valid", i))) < 9
    )
    longer = [*meanings, CityFact(WORLD.persons[meanings[0].person].city)]
    untold = 4 - sum(isinstance(m, Fact) for m in meanings[1:])
    step = document_log_prob(WORLD, longer) - document_log_prob(WORLD, meanings)
    assert step == pytest.approx(math.log(sentence_prob(WORLD, longer[-1], untold)))


def test_text_entropy_counts_complete_documents_within_the_window():
    tokens = lambda texts: [len(t.split()) for t in texts]  # noqa: E731  a word counter stands in for a tokenizer
    small, large = entropy("syn_en", "valid", tokens, 2000), entropy("syn_en", "valid", tokens, 200_000)
    assert small.tokens <= 2000 < small.tokens + 60  # the next document would not fit
    assert small.documents < large.documents
    # the syn_en and syn_fr texts mean the same, so their nats per document agree to sampling noise
    fr = entropy("syn_fr", "valid", tokens, 200_000)
    assert fr.nats / fr.documents == pytest.approx(large.nats / large.documents, rel=0.02)
    assert 0.2 < large.per_token < 1.5
    by_hand = sum(
        -document_log_prob(WORLD, document_meanings(WORLD, stream(0, "document", "syn_en", "valid", i)))
        for i in range(small.documents)
    )
    assert small.nats == pytest.approx(by_hand, rel=1e-12)


def test_a_document_is_its_prefix_that_then_ends():
    meanings = document_meanings(WORLD, stream(0, "document", "syn_en", "valid", 5))
    more = len(meanings) - 1
    assert document_log_prob(WORLD, meanings) == pytest.approx(
        prefix_log_prob(WORLD, meanings) + math.log(1 / (8 - more + 1))
    )
    # the first two sentences: every document has them, so the sentence count costs nothing yet
    head = meanings[:2]
    assert prefix_log_prob(WORLD, head) == pytest.approx(
        math.log(person_prob(WORLD, meanings[0].person)) + math.log(sentence_prob(WORLD, meanings[1], 4))
    )
    assert document_log_prob(WORLD, head) == -math.inf  # too short to be a whole document
