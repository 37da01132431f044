"""Synthetic languages: a lexicon and a word order each, realising the world's meanings as text.

syn_en is the root: its words are the English glosses of the concepts, so its text reads as plain
(if simple) English. Every other language borrows a share `overlap` of its parent's word forms and
invents the rest with its own sound inventory, and it has its own word order: subject-verb-object
order, verb-second main clauses, adjectives after the noun, a definite article glued to the noun.
Names of people, cities and countries are the same in all languages, as they are in real ones.
Invented forms depend only on (seed, language, concept), so changing `overlap` changes which
words are shared and nothing else.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from testbed.data.synthetic_world import (
    ADJECTIVES,
    ANIMALS,
    FOODS,
    N_PERSONS,
    OCCUPATIONS,
    THINGS,
    TIMES,
    VERB_OBJECTS,
    CityFact,
    Encounter,
    Event,
    Fact,
    Meaning,
    SyntheticError,
    Thing,
    World,
    build_world,
    chance,
    check_name,
    pick,
    stream,
)

PRESENT, PAST, FUTURE = 0, 1, 2
TENSE_OF_TIME = {None: PAST, "yesterday": PAST, "today": PRESENT, "tomorrow": FUTURE}

# syn_en's verbs: (present, past, future), with third-person subjects as the world only has those.
ENGLISH_VERBS = {
    "live": ("lives", "lived", "will live"),
    "work": ("works", "worked", "will work"),
    "have": ("has", "had", "will have"),
    "like": ("likes", "liked", "will like"),
    "be": ("is", "was", "will be"),
    "eat": ("eats", "ate", "will eat"),
    "cook": ("cooks", "cooked", "will cook"),
    "buy": ("buys", "bought", "will buy"),
    "sell": ("sells", "sold", "will sell"),
    "carry": ("carries", "carried", "will carry"),
    "find": ("finds", "found", "will find"),
    "lose": ("loses", "lost", "will lose"),
    "paint": ("paints", "painted", "will paint"),
    "mend": ("mends", "mended", "will mend"),
    "feed": ("feeds", "fed", "will feed"),
    "wash": ("washes", "washed", "will wash"),
    "meet": ("meets", "met", "will meet"),
    "help": ("helps", "helped", "will help"),
    "visit": ("visits", "visited", "will visit"),
    "call": ("calls", "called", "will call"),
    "sing": ("sings", "sang", "will sing"),
    "dance": ("dances", "danced", "will dance"),
    "sleep": ("sleeps", "slept", "will sleep"),
    "laugh": ("laughs", "laughed", "will laugh"),
}
assert set(VERB_OBJECTS) <= set(ENGLISH_VERBS)
FUNCTION_WORDS = ("the", "a", "she", "he", "her", "his", "who", "in", "as", "of", *TIMES)
CONTENT_WORDS = tuple(
    dict.fromkeys(
        (*OCCUPATIONS, *FOODS, *THINGS, *ANIMALS, "friend", "city", *(a for kind in ADJECTIVES.values() for a in kind))
    )
)
CONCEPTS = (*FUNCTION_WORDS, *CONTENT_WORDS, *ENGLISH_VERBS)
PRONOUN = ("she", "he")  # by grammatical class
POSSESSIVE = ("her", "his")


@dataclass(frozen=True)
class Phonology:
    """How a language's own words sound, and how its verbs inflect ('{}' is the stem)."""

    onsets: tuple[str, ...]
    nuclei: tuple[str, ...]
    codas: tuple[str, ...]
    tenses: tuple[str, str, str]  # present, past, future


PHONOLOGIES = {
    "de": Phonology(
        ("b", "d", "f", "g", "h", "k", "l", "m", "n", "r", "s", "t", "w", "z", "sch", "st", "gr", "kr"),
        ("a", "e", "i", "o", "u", "ä", "ö", "ü", "ei", "au", "ie"),
        ("", "", "", "", "n", "r", "t", "ch", "s", "ng"),
        ("{}t", "{}te", "wird {}en"),
    ),
    "fr": Phonology(
        ("b", "c", "d", "f", "g", "j", "l", "m", "n", "p", "r", "s", "t", "v", "ch", "tr", "qu"),
        ("a", "e", "i", "o", "u", "é", "è", "ou", "oi", "au", "eau"),
        ("", "", "", "", "n", "r", "s", "t", "x"),
        ("{}e", "{}ait", "{}era"),
    ),
    "ro": Phonology(
        ("b", "c", "d", "f", "g", "j", "l", "m", "n", "p", "r", "s", "t", "v", "ș", "ț", "z", "cr"),
        ("a", "e", "i", "o", "u", "ă", "â", "î", "ea", "ia"),
        ("", "", "", "", "n", "r", "t", "l", "m"),
        ("{}ă", "{}a", "va {}i"),
    ),
}


@dataclass(frozen=True)
class LanguageSpec:
    """The knobs of one synthetic language."""

    name: str
    parent: str | None = None  # the built-in language it borrows from; None: the root (English glosses)
    overlap: float = 0.0  # share of the parent's word forms it shares
    phonology: str = ""  # key of PHONOLOGIES: the sound of the words it does not borrow
    order: str = "SVO"  # order of subject, verb and object (the object with its place phrase)
    verb_second: bool = False  # main clauses put the verb second; relative clauses keep `order`
    adjective_after: bool = False  # "cup red" rather than "red cup"
    article_suffix: bool = False  # the definite article is glued to the noun: "cupul"

    def __post_init__(self):
        if sorted(self.order) != ["O", "S", "V"]:
            raise SyntheticError(f"language {self.name}: order {self.order!r} is not a permutation of 'SVO'")
        if not 0.0 <= self.overlap <= 1.0:
            raise SyntheticError(f"language {self.name}: overlap {self.overlap!r} is not in [0, 1]")
        if self.parent is not None:
            check_name("phonology", self.phonology, tuple(PHONOLOGIES))


LANGUAGE_SPECS = {
    "syn_en": LanguageSpec("syn_en"),
    "syn_de": LanguageSpec("syn_de", parent="syn_en", overlap=0.35, phonology="de", order="SOV", verb_second=True),
    "syn_fr": LanguageSpec("syn_fr", parent="syn_en", overlap=0.2, phonology="fr", adjective_after=True),
    "syn_ro": LanguageSpec(
        "syn_ro", parent="syn_fr", overlap=0.45, phonology="ro", adjective_after=True, article_suffix=True
    ),
}
LANGUAGES = tuple(LANGUAGE_SPECS)

Lexicon = dict[str, tuple[str, ...]]  # concept -> its forms: (word,), or a verb's (present, past, future)


def _invent(spec: LanguageSpec, seed: int, concept: str, taken: set[str]) -> tuple[str, ...]:
    """A new word for `concept`: one syllable for function words, two or three otherwise."""
    sounds = PHONOLOGIES[spec.phonology]
    rng = stream(seed, "word", spec.name, concept)
    syllables = 1 if concept in FUNCTION_WORDS else 2 + chance(rng, 0.15)
    while True:
        word = "".join(
            pick(rng, sounds.onsets) + pick(rng, sounds.nuclei) + pick(rng, sounds.codas) for _ in range(syllables)
        )
        forms = tuple(tense.format(word) for tense in sounds.tenses) if concept in ENGLISH_VERBS else (word,)
        if forms[0] not in taken:
            return forms


@functools.lru_cache(maxsize=32)
def lexicon(spec: LanguageSpec, seed: int = 0) -> Lexicon:
    """Every concept's forms in this language; distinct concepts get distinct words."""
    if spec.parent is None:
        return {c: ENGLISH_VERBS.get(c, (c,)) for c in CONCEPTS}
    check_name("parent language", spec.parent, LANGUAGES)
    parent = lexicon(LANGUAGE_SPECS[spec.parent], seed)
    borrow = stream(seed, "borrow", spec.name)
    out = {c: parent[c] for c in CONCEPTS if borrow.random() < spec.overlap}
    taken = {forms[0] for forms in out.values()}
    for concept in CONCEPTS:
        if concept not in out:
            out[concept] = _invent(spec, seed, concept, taken)
            taken.add(out[concept][0])
    return {c: out[c] for c in CONCEPTS}


def lexical_overlap(a: LanguageSpec | str, b: LanguageSpec | str, seed: int = 0) -> float:
    """Share of concepts whose forms are identical in the two languages."""
    lex_a, lex_b = lexicon(resolve(a), seed), lexicon(resolve(b), seed)
    return sum(lex_a[c] == lex_b[c] for c in CONCEPTS) / len(CONCEPTS)


def resolve(language: LanguageSpec | str) -> LanguageSpec:
    if isinstance(language, LanguageSpec):
        return language
    check_name("language", language, LANGUAGES)
    return LANGUAGE_SPECS[language]


class Language:
    """Turns meanings into sentences of one language."""

    def __init__(self, spec: LanguageSpec, world: World, lexicon: Lexicon):
        self.spec, self.world, self.lexicon = spec, world, lexicon
        self.word = {c: forms[0] for c, forms in lexicon.items()}
        self._order = tuple("SVO".index(slot) for slot in spec.order)
        self._verb_final = spec.order.index("V") > spec.order.index("O")  # in relative clauses
        self._noun_phrases: dict[Thing, str] = {}
        self._realise: dict[type, Callable[..., str]] = {
            Fact: self._fact,
            CityFact: self._city_fact,
            Event: self._event,
            Encounter: self._encounter,
        }

    def realise(self, meaning: Meaning) -> str:
        text = self._realise[type(meaning)](meaning)
        return text[0].upper() + text[1:] + "."

    def noun_phrase(self, thing: Thing) -> str:
        """Article, adjective and noun in this language's order ("own" must already be her/his)."""
        if thing not in self._noun_phrases:
            det, adjective, noun = thing
            noun = self.word[noun]
            if det == "the" and self.spec.article_suffix:
                det, noun = "", noun + self.word["the"]
            if adjective:
                adjective = self.word[adjective]
                noun = f"{noun} {adjective}" if self.spec.adjective_after else f"{adjective} {noun}"
            self._noun_phrases[thing] = f"{self.word[det]} {noun}" if det else noun
        return self._noun_phrases[thing]

    def clause(self, subject: str, verb: str, obj: str, time: str | None = None) -> str:
        """A main clause; `obj` is everything after the verb in English (object and place), maybe ""."""
        if self.spec.verb_second:
            parts = [self.word[time], verb, subject, obj] if time else [subject, verb, obj]
        else:
            slots = (subject, verb, obj)
            parts = [slots[i] for i in self._order]
            if time:
                parts.insert(0, self.word[time])
        if not obj:
            parts.remove(obj)
        return " ".join(parts)

    def relative_clause(self, verb: str, obj: str) -> str:
        """'who <verb> <obj>' with the verb where this language puts it in subordinate clauses."""
        return f"{self.word['who']} {obj} {verb}" if self._verb_final else f"{self.word['who']} {verb} {obj}"

    def _subject(self, rank: int, pronoun: bool) -> str:
        person = self.world.persons[rank]
        return self.word[PRONOUN[person.gender]] if pronoun else person.name

    def _place(self, city: int) -> str:
        return f"{self.word['in']} {self.world.cities[city]}"

    def _fact(self, fact: Fact) -> str:
        person = self.world.persons[fact.person]
        if fact.relation == "city":
            verb, obj = "live", self._place(person.city)
        elif fact.relation == "occupation":
            verb, obj = "work", f"{self.word['as']} {self.noun_phrase(Thing('a', None, person.occupation))}"
        elif fact.relation == "pet":
            verb, obj = "have", self.noun_phrase(Thing("a", None, person.pet))
        elif fact.relation == "food":
            verb, obj = "like", self.noun_phrase(Thing("", None, person.food))
        else:  # friend
            friend = self.world.persons[person.friend].name
            verb, obj = "be", f"{self.noun_phrase(Thing('a', None, 'friend'))} {self.word['of']} {friend}"
        return self.clause(self._subject(fact.person, fact.pronoun), self.lexicon[verb][PRESENT], obj)

    def _city_fact(self, fact: CityFact) -> str:
        country = self.world.countries[self.world.city_country[fact.city]]
        obj = f"{self.noun_phrase(Thing('a', None, 'city'))} {self.word['in']} {country}"
        return self.clause(self.world.cities[fact.city], self.lexicon["be"][PRESENT], obj)

    def _object(self, obj: Thing | int | None, owner: int) -> str:
        if obj is None:
            return ""
        if isinstance(obj, int):
            return self.world.persons[obj].name
        if obj.det == "own":
            obj = obj._replace(det=POSSESSIVE[self.world.persons[owner].gender])
        return self.noun_phrase(obj)

    def _event(self, event: Event) -> str:
        obj = self._object(event.obj, event.person)
        if event.city is not None:
            obj = f"{obj} {self._place(event.city)}" if obj else self._place(event.city)
        verb = self.lexicon[event.verb][TENSE_OF_TIME[event.time]]
        return self.clause(self._subject(event.person, event.pronoun), verb, obj, event.time)

    def _encounter(self, encounter: Encounter) -> str:
        other = f"{self.world.persons[encounter.other].name} {self._place(encounter.city)}"
        relative = self.relative_clause(self.lexicon["meet"][PAST], other)
        subject = f"{self.world.persons[encounter.person].name}, {relative},"
        obj = self._object(Thing("own", None, encounter.thing), encounter.person)
        return self.clause(subject, self.lexicon[encounter.verb][PAST], obj)


@functools.lru_cache(maxsize=32)
def build_language(spec: LanguageSpec, seed: int = 0, persons: int = N_PERSONS, zipf: float = 1.0) -> Language:
    """The language over the world of `seed` and its knobs (synthetic_world.build_world)."""
    return Language(spec, build_world(seed, persons, zipf), lexicon(spec, seed))
