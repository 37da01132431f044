"""The synthetic world: determinism, splits, languages and their knobs, parallel pairs, tasks, lm-eval."""

from __future__ import annotations

import collections
import math
import os
import re
import subprocess
import sys
import time

import pytest

from testbed.data.synthetic import (
    LANGUAGE_SPECS,
    LANGUAGES,
    TASKS,
    LanguageSpec,
    documents,
    lexical_overlap,
    lexicon,
    parallel_pairs,
    task_items,
    write_task_suite,
)
from testbed.data.synthetic_language import CONTENT_WORDS, ENGLISH_VERBS, build_language
from testbed.data.synthetic_world import FOODS, THINGS, VERB_OBJECTS, Fact, Thing, build_world

WORLD = build_world(0)
PEOPLE = {person.name: person for person in WORLD.persons}
NAMES = {part for p in WORLD.persons for part in p.name.split()} | set(WORLD.cities) | set(WORLD.countries)


def test_same_seed_same_bytes_in_another_process():
    script = (
        "import sys; from testbed.data.synthetic import documents; "
        "sys.stdout.buffer.write('\\n'.join(documents('syn_ro', 'train', 50, seed=3)).encode())"
    )
    env = dict(os.environ, PYTHONHASHSEED="12345")
    other = subprocess.run([sys.executable, "-c", script], capture_output=True, check=True, env=env).stdout
    assert other == "\n".join(documents("syn_ro", "train", 50, seed=3)).encode()
    assert documents("syn_ro", "train", 50, seed=4) != documents("syn_ro", "train", 50, seed=3)


def test_a_stream_can_be_read_from_any_offset():
    assert documents("syn_de", "valid", 5, start=7) == documents("syn_de", "valid", 12)[7:]


def test_splits_are_disjoint_and_documents_are_paragraphs():
    splits = {split: documents("syn_en", split, 500) for split in ("train", "valid", "test")}
    assert not set(splits["train"]) & set(splits["valid"])
    assert not set(splits["train"]) & set(splits["test"])
    assert not set(splits["valid"]) & set(splits["test"])
    sentences = [doc.count(".") for doc in splits["train"]]
    assert min(sentences) >= 3 and max(sentences) <= 9


def test_facts_are_consistent_across_the_corpus():
    homes = collections.defaultdict(set)
    for doc in documents("syn_en", "train", 2000):
        for name, city in re.findall(r"(\w+ \w+) lives in (\w+)\.", doc):
            homes[name].add(city)
    assert len(homes) > 500
    assert all(cities == {WORLD.cities[PEOPLE[name].city]} for name, cities in homes.items())


def test_languages_differ_in_words_and_order():
    docs = {lang: documents(lang, "train", 200) for lang in LANGUAGES}
    vocab = {lang: set(" ".join(d).split()) - NAMES for lang, d in docs.items()}
    for a in LANGUAGES:
        for b in LANGUAGES:
            if a < b:
                assert len(vocab[a] & vocab[b]) < 0.6 * min(len(vocab[a]), len(vocab[b])), (a, b)
    # The knobs of syn_de: verb-second main clauses, verb-final relative clauses.
    de = build_language(LANGUAGE_SPECS["syn_de"])
    met = lexicon(LANGUAGE_SPECS["syn_de"])["meet"][1]
    assert de.relative_clause(met, "Kel Dorn").endswith(f"Kel Dorn {met}")
    assert de.clause("Anna", "V", "O", time="today").split()[1] == "V"


@pytest.mark.parametrize("name", ["syn_de", "syn_fr", "syn_ro"])
def test_measured_overlap_with_the_parent_matches_the_knob(name):
    spec = LANGUAGE_SPECS[name]
    assert abs(lexical_overlap(spec, spec.parent) - spec.overlap) < 0.12


def test_the_overlap_knob_moves_the_shared_words():
    english_words = set(" ".join(documents("syn_en", "train", 300)).split()) - NAMES
    measured, in_text = [], []
    for overlap in (0.1, 0.5, 0.9):
        spec = LanguageSpec("syn_x", parent="syn_en", overlap=overlap, phonology="de")
        measured.append(lexical_overlap(spec, "syn_en"))
        words = [w for w in " ".join(documents(spec, "train", 300)).split() if w not in NAMES]
        in_text.append(sum(w in english_words for w in words) / len(words))
        assert abs(measured[-1] - overlap) < 0.12
    print(f"\nlexicon overlap {measured}, share of running words also in syn_en {in_text}")
    assert measured == sorted(measured) and in_text == sorted(in_text)
    assert in_text[-1] - in_text[0] > 0.4


def test_the_word_order_knobs():
    english = dict(parent="syn_en", overlap=1.0, phonology="de")  # English words, other orders
    sov = build_language(LanguageSpec("syn_x", order="SOV", **english))
    assert re.fullmatch(r"\w+ \w+ in \w+ lives\.", sov.realise(Fact(0, "city")))
    suffixed = build_language(LanguageSpec("syn_x", adjective_after=True, article_suffix=True, **english))
    assert suffixed.noun_phrase(Thing("the", "red", "cup")) == "cupthe red"
    assert suffixed.noun_phrase(Thing("a", "red", "cup")) == "a cup red"


@pytest.mark.parametrize("dst", ["syn_de", "syn_fr", "syn_ro"])
def test_parallel_pairs_carry_the_same_meaning(dst):
    pairs = parallel_pairs("syn_en", dst, "test", 300)
    assert [src for src, _ in pairs] == [src for src, _ in parallel_pairs("syn_en", "syn_de", "test", 300)]
    en, other = lexicon(LANGUAGE_SPECS["syn_en"]), lexicon(LANGUAGE_SPECS[dst])
    for src, tgt in pairs:
        assert sorted(w for w in re.findall(r"\w+", src) if w in NAMES) == sorted(
            w for w in re.findall(r"\w+", tgt) if w in NAMES
        )
        words = set(re.findall(r"\w+", src.lower()))
        for concept in CONTENT_WORDS:
            if concept in words:
                assert other[concept][0] in tgt.lower(), (concept, src, tgt)
        for verb in ENGLISH_VERBS:
            for tense, form in enumerate(en[verb]):
                if re.search(rf"\b{form}\b", src.lower()):
                    assert other[verb][tense] in tgt.lower(), (verb, src, tgt)


def test_a_bigram_model_beats_a_unigram_model_on_valid():
    """Cheap evidence of learnable structure: word bigrams cut the cross-entropy by well over a bit."""

    def words(split: str, n: int) -> list[str]:
        return re.findall(r"\w+|[.,]", " ".join(documents("syn_en", split, n)))

    train, valid = words("train", 3000), words("valid", 300)
    unigrams, bigrams = collections.Counter(train), collections.Counter(zip(train, train[1:], strict=False))
    vocab = len(unigrams) + 1

    def p_unigram(w: str) -> float:
        return (unigrams[w] + 1) / (len(train) + vocab)

    def p_bigram(prev: str, w: str) -> float:
        return 0.9 * bigrams[prev, w] / unigrams[prev] + 0.1 * p_unigram(w) if unigrams[prev] else p_unigram(w)

    unigram_bits = -sum(math.log2(p_unigram(w)) for w in valid[1:]) / (len(valid) - 1)
    bigram_bits = -sum(math.log2(p_bigram(a, b)) for a, b in zip(valid, valid[1:], strict=False)) / (len(valid) - 1)
    print(f"\nbits per word on valid: unigram {unigram_bits:.2f}, bigram {bigram_bits:.2f}")
    assert bigram_bits < unigram_bits - 2.0


@pytest.mark.parametrize("task", list(TASKS))
def test_task_items_are_well_formed(task):
    items = task_items(task)
    assert len(items) == {"tiny": 10, "stereotype": 300}.get(task, 1000)
    assert items == task_items(task) != task_items(task, seed=1)
    for item in items:
        assert set(item) == {"query", "choices", "gold"}
        assert item["query"] == item["query"].strip() and len(item["choices"]) >= 2
        assert len(set(item["choices"])) == len(item["choices"]) and 0 <= item["gold"] < len(item["choices"])
    assert len({(item["query"], tuple(item["choices"])) for item in items}) == len(items)


def _person(query: str):
    return PEOPLE[" ".join(query.split()[:2]).rstrip(",")]


def test_tasks_answer_from_the_world():
    english = build_language(LANGUAGE_SPECS["syn_en"])
    for item in task_items("home_city"):
        assert item["choices"][item["gold"]] == WORLD.cities[_person(item["query"]).city]
    for item in task_items("stereotype"):
        person = _person(item["query"])
        assert item["choices"][item["gold"]] == person.occupation
        assert set(item["choices"]) == {person.occupation, WORLD.stereotype[person.first]}
    agreement = task_items("agreement")
    attractors = [PEOPLE[re.search(r"who met (\w+ \w+)", item["query"])[1]] for item in agreement]
    assert [item["gold"] for item in agreement] == [_person(item["query"]).gender for item in agreement]
    assert sum(item["gold"] for item in agreement) == 500
    assert sum(a.gender != item["gold"] for a, item in zip(attractors, agreement, strict=True)) == 500
    possessive = task_items("possessive")  # her|his: the class of the person's first name, balanced
    assert [item["gold"] for item in possessive] == [_person(item["query"]).gender for item in possessive]
    assert sum(item["gold"] for item in possessive) == 500
    random_gold = [
        it["choices"][it["gold"]] == WORLD.cities[_person(it["query"]).city] for it in task_items("random_label")
    ]
    assert 0.2 < sum(random_gold) / len(random_gold) < 0.3
    for item in task_items("inverse"):  # the gold: a place other than the home city, which is the distractor
        home = WORLD.cities[_person(item["query"]).city]
        assert item["query"].startswith(f"{_person(item['query']).name} lives in {home}. ")
        assert home in item["choices"] and item["choices"][item["gold"]] != home
    tense = {"Yesterday": 1, "Today": 0, "Tomorrow": 2}
    for item in task_items("tense"):
        assert item["gold"] == tense[item["query"].split(". ")[1].split()[0]]
    kinds = {noun: "food" for noun in FOODS} | {noun: "thing" for noun in THINGS}
    for item in task_items("breakthrough"):  # the gold is the only noun of the kind the verb takes
        verb = {form.split()[-1]: v for v in VERB_OBJECTS for form in english.lexicon[v]}[item["query"].split()[-2]]
        assert [kinds[c] in VERB_OBJECTS[verb] for c in item["choices"]].count(True) == 1
        assert kinds[item["choices"][item["gold"]]] in VERB_OBJECTS[verb]
    mixed = task_items("smooth")
    assert {len(item["choices"]) for item in mixed} == {2, 3, 4}  # possessive, tense and selection items
    # long_tail: the same three skills and a quarter of home-city facts, every fact answered from the world
    long_tail = task_items("long_tail", 400)
    facts = [item for item in long_tail if item["query"].endswith(" lives in")]
    assert len(facts) == 100
    assert all(item["choices"][item["gold"]] == WORLD.cities[_person(item["query"]).city] for item in facts)
    assert sum(len(item["choices"]) == 2 for item in long_tail) == 100  # possessive


def test_task_suite_loads_in_lm_eval_offline(tmp_path, monkeypatch):
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.setenv(name, "1")
    from lm_eval.tasks import TaskManager

    written = write_task_suite(tmp_path)
    assert set(written) == set(TASKS)
    assert all(path.is_file() and (tmp_path / f"{task}.jsonl").is_file() for task, path in written.items())
    # include_defaults=False: indexing lm-eval's own thousands of tasks takes ~15 s and is not under test.
    manager = TaskManager(include_path=str(tmp_path), include_defaults=False)
    loaded = manager.load_task_or_group(list(written))
    for task, obj in loaded.items():
        docs = list(obj.test_docs())
        assert len(docs) == len(task_items(task))
        assert obj.doc_to_text(docs[0]) == task_items(task)[0]["query"]
        assert obj.doc_to_choice(docs[0]) == task_items(task)[0]["choices"]
        assert obj.doc_to_target(docs[0]) == task_items(task)[0]["gold"]


def test_unknown_names_are_one_line_value_errors():
    with pytest.raises(ValueError, match=r"unknown language 'syn_xx' \(valid: syn_en, syn_de, syn_fr, syn_ro\)"):
        documents("syn_xx", "train", 1)
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        documents("syn_en", "dev", 1)
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        parallel_pairs("syn_en", "syn_fr", "dev", 1)
    with pytest.raises(ValueError, match="unknown task 'hard'"):
        task_items("hard")
    with pytest.raises(ValueError, match="order 'SSV' is not a permutation"):
        LanguageSpec("syn_x", order="SSV")
    with pytest.raises(ValueError, match="unknown parent language 'syn_zz'"):
        documents(LanguageSpec("syn_x", parent="syn_zz", phonology="fr"), "train", 1)


def test_generation_speed():
    for lang in LANGUAGES:
        documents(lang, "train", 1)
        start = time.process_time()
        size = sum(len(doc.encode()) for doc in documents(lang, "train", 3000, start=10))
        print(f"\n{lang}: {size / (time.process_time() - start) / 1e6:.2f} MB of text per CPU second")


def test_world_knobs_add_people_and_reweight_the_talk():
    world = build_world(0, persons=30000, zipf=1.5)
    assert world.persons[:3000] == WORLD.persons and len({p.name for p in world.persons}) == 30000
    assert all(0 <= p.friend < 30000 and p.friend != r for r, p in enumerate(world.persons))
    names = set(world.countries) | set(world.cities) | {p.first for p in world.persons}
    assert not names & {p.name.split()[1] for p in world.persons}  # last names stay apart from other names
    weights = [world.person_cdf[0], world.person_cdf[1] - world.person_cdf[0]]
    assert weights == pytest.approx([10**-1.5, 11**-1.5])
    # documents pick their person by that talk: the share about the 27,000 new people matches it
    from testbed.data.synthetic_world import document_meanings, stream

    ranks = [document_meanings(world, stream(0, "document", "syn_en", "valid", i))[0].person for i in range(4000)]
    expected = 1 - world.person_cdf[2999] / world.person_cdf[-1]
    share = sum(r >= 3000 for r in ranks) / len(ranks)
    assert abs(share - expected) < 4 * math.sqrt(expected * (1 - expected) / len(ranks))
    assert documents("syn_en", "valid", 3) == documents("syn_en", "valid", 3, world={})
    tail = documents("syn_en", "valid", 50, world={"persons": 30000, "zipf": 1.5})
    assert any(p.name in doc for doc in tail for p in world.persons[3000:])


def test_tasks_ask_about_the_world_of_their_knobs():
    """A task about a world with knobs draws its people as that world's corpus talks about them: the share of
    tense items about the 10 most talked-about people matches the talk (within 4 binomial SDs), in both worlds;
    home_city reaches the 27,000 people the default world does not have; no knobs is the default world."""
    from testbed.data.synthetic_tasks import task_items

    z15 = {"persons": 30000, "zipf": 1.5}
    assert task_items("tense", 50) == task_items("tense", 50, world={}) != task_items("tense", 50, world=z15)
    for knobs in ({}, z15):
        world = build_world(0, **knobs)
        head = {p.name: r for r, p in enumerate(world.persons[:10])}
        items = task_items("tense", 1000, world=knobs)
        share = sum(any(f"{name} lives" in it["query"] for name in head) for it in items) / len(items)
        expected = world.person_cdf[9] / world.person_cdf[-1]
        assert abs(share - expected) < 4 * math.sqrt(expected * (1 - expected) / len(items)), (knobs, share)
    world = build_world(0, **z15)
    new_people = {p.name for p in world.persons[3000:]}
    cities = task_items("home_city", 1000, world=z15)
    tail = sum(it["query"].split(" lives")[0] in new_people for it in cities)
    # 1,000 distinct people drawn log-uniformly from 30,000 (from 3,000 before): ranks 3,000 on are ln(10) / ln(30000)
    # = 22 % of the weight, more once the head is used up; the default world has none of them
    assert 0.3 < tail / len(cities) < 0.5
