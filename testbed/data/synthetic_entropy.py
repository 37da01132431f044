"""The exact probability of a synthetic document, and so the entropy of a synthetic text: a loss floor.

The world generates a document by drawing its meanings (synthetic_world.document_meanings); a language
then writes them down deterministically, and distinct meanings are distinct sentences (names are unique,
each concept has its own word, every choice shows in the text). So a document's probability is the
probability of its meanings, summed over the generator's ways of drawing them: an event's place is the
home city either by the home-city draw or by the any-city draw that lands on it, and so on.

The entropy of a text is -sum ln P(document) over its documents, per token of its token stream (each
document's tokens plus its EOS). No model can score a lower expected cross-entropy on that text: it is
the floor an over-training law's irreducible loss E cannot go below (a model that sees 64 tokens of
context has a higher floor still, since it may not see who a pronoun names). Real text has no such
number; that is one reason the synthetic world exists.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

from testbed.data.synthetic_world import (
    ADJECTIVE_SHARE,
    ADJECTIVES,
    CITY_FACT_BELOW,
    ENCOUNTER_BELOW,
    ENCOUNTER_HOME_SHARE,
    EVENT_CITY_SHARE,
    EVENT_VERBS,
    FACT_BELOW,
    FOOD_DETERMINERS,
    FOODS,
    FRIEND_SHARE,
    HOME_CITY_SHARE,
    N_CITIES,
    OWN_FOOD_SHARE,
    PRONOUN_SHARE,
    RELATIONS,
    SENTENCES,
    THING_DETERMINERS,
    THING_VERBS,
    THINGS,
    TIMES,
    VERB_OBJECTS,
    CityFact,
    Encounter,
    Event,
    Fact,
    Meaning,
    Thing,
    World,
)


def person_prob(world: World, rank: int) -> float:
    """The chance that one `World.sample_person` draw gives `rank`."""
    return world.talk(rank) / world.person_cdf[-1]


def _either(share: float, is_own: bool, n: int) -> float:
    """A draw that takes the own value with chance `share`, else any of `n` values (the own one included)."""
    return share * is_own + (1 - share) / n


def _pronoun(pronoun: bool) -> float:
    return PRONOUN_SHARE if pronoun else 1 - PRONOUN_SHARE


def _adjective(adjective: str | None, kind: str) -> float:
    return 1 - ADJECTIVE_SHARE if adjective is None else ADJECTIVE_SHARE / len(ADJECTIVES[kind])


def _object(world: World, rank: int, verb: str, obj: Thing | int | None) -> float:
    """P(obj) for an event of `verb` by person `rank` (synthetic_world._object)."""
    kinds = VERB_OBJECTS[verb]
    if obj is None:
        return 1.0
    if isinstance(obj, int):  # the friend when the friend draw wins, or when the any-person draw hits them or rank
        person = world.persons[rank]
        if obj == rank:
            return 0.0
        anyone = (1 - FRIEND_SHARE) * person_prob(world, obj)
        if obj == person.friend:
            return FRIEND_SHARE + anyone + (1 - FRIEND_SHARE) * person_prob(world, rank)
        return anyone
    det, adjective, noun = obj
    if noun in FOODS:
        own = noun == world.persons[rank].food
        kind, p = "food", _either(OWN_FOOD_SHARE, own, len(FOODS)) / len(FOOD_DETERMINERS)
    elif noun in THINGS:
        kind, p = "thing", 1 / len(THING_DETERMINERS) / len(THINGS)
    else:
        kind, p = "animal", 1.0  # the person's own pet
    which = "pet" if kind == "animal" else kind
    return p * _adjective(adjective, kind) / len(kinds) * (which in kinds)


def _event(world: World, event: Event) -> float:
    city = world.persons[event.person].city
    where = (
        1 - EVENT_CITY_SHARE
        if event.city is None
        else EVENT_CITY_SHARE * _either(HOME_CITY_SHARE, event.city == city, N_CITIES)
    )
    return _object(world, event.person, event.verb, event.obj) * where / len(EVENT_VERBS) / (len(TIMES) + 1)


def _encounter(world: World, encounter: Encounter) -> float:
    person = world.persons[encounter.person]
    if encounter.other == encounter.person:
        return 0.0
    other = person_prob(world, encounter.other)
    if encounter.other == person.friend:  # a draw of the person themself is replaced by their friend
        other += person_prob(world, encounter.person)
    where = _either(ENCOUNTER_HOME_SHARE, encounter.city == person.city, N_CITIES)
    return other * where / len(THING_VERBS) / len(THINGS)


def sentence_prob(world: World, meaning: Meaning, untold: int) -> float:
    """The chance that the next sentence of a document about `meaning`'s person is `meaning`, with
    `untold` of the person's facts (besides the city) not yet told (synthetic_world.document_meanings)."""
    if isinstance(meaning, Fact):  # the untold facts come in a uniformly shuffled order
        return FACT_BELOW / untold * _pronoun(meaning.pronoun) if untold else 0.0
    if isinstance(meaning, CityFact):  # once every fact is told, the fact draws give city facts too
        return CITY_FACT_BELOW - (FACT_BELOW if untold else 0.0)
    if isinstance(meaning, Encounter):
        return (ENCOUNTER_BELOW - CITY_FACT_BELOW) * _encounter(world, meaning)
    return (1 - ENCOUNTER_BELOW) * _pronoun(meaning.pronoun) * _event(world, meaning)


def document_log_prob(world: World, meanings: Sequence[Meaning]) -> float:
    """ln P(meanings) under synthetic_world.document_meanings: the document's exact log-probability."""
    low, high = SENTENCES
    more = len(meanings) - 1  # sentences after the first
    if not low <= more <= high:
        return -math.inf
    return prefix_log_prob(world, meanings) - math.log(high - more + 1)  # it ends here, of high - more + 1 ways


def prefix_log_prob(world: World, meanings: Sequence[Meaning]) -> float:
    """ln P(a document begins with `meanings`), its first sentences: the text up to their last full stop,
    whatever follows (the end of the document or more sentences)."""
    first = meanings[0]
    assert isinstance(first, Fact) and first.relation == "city", "a document starts with where its person lives"
    low, high = SENTENCES
    more = len(meanings) - 1
    log_p = math.log(person_prob(world, first.person) * min(1.0, (high - more + 1) / (high - low + 1)))
    untold = len(RELATIONS) - 1
    for meaning in meanings[1:]:
        log_p += math.log(sentence_prob(world, meaning, untold))
        untold -= isinstance(meaning, Fact)
    return log_p


class TextEntropy(NamedTuple):
    nats: float  # -sum of the documents' ln P
    tokens: int  # their tokens, one EOS each included
    documents: int

    @property
    def per_token(self) -> float:
        return self.nats / self.tokens


def text_entropy(
    documents: Iterable[tuple[Sequence[Meaning], str]],
    world: World,
    count_tokens: Callable[[list[str]], list[int]],
    n_tokens: int,
    batch: int = 256,
) -> TextEntropy:
    """The entropy of the complete documents among the first `n_tokens` of a token stream made of
    `documents` ((meanings, text) pairs, in stream order), each followed by one EOS; `count_tokens` gives
    the tokens of a list of texts. A document cut by the end of the window is left out of both sums."""
    nats, tokens, count, pending = 0.0, 0, 0, []
    for item in documents:
        pending.append(item)
        if len(pending) < batch:
            continue
        for (meanings, _), size in zip(pending, count_tokens([text for _, text in pending]), strict=True):
            if tokens + size + 1 > n_tokens:
                return TextEntropy(nats, tokens, count)
            nats, tokens, count = nats - document_log_prob(world, meanings), tokens + size + 1, count + 1
        pending = []
    raise ValueError("text_entropy: the documents ran out before n_tokens")
