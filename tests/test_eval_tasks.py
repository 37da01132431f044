"""Designed evaluation tasks: the synthetic tasks' item generators, a suite's `intended` classes (parsed,
carried into rows, scored by the classifier), and cloze items from held-out real text."""

from __future__ import annotations

import json

import pytest

from analysis.classify import classify
from analysis.schema import to_frame
from analysis.select import informative_tasks
from analysis.synthetic import taxonomy_curve
from testbed.config import load_sweep_config
from testbed.data.sources import known_sources
from testbed.data.synthetic import TASKS, task_items
from testbed.data.synthetic_tasks import DEFAULT_ITEMS
from testbed.errors import TestbedError
from testbed.evaluate import suite as suite_module
from testbed.evaluate.cloze import CHOICES, cloze_items
from testbed.evaluate.suite import load_suite, task_dir

DESIGNED = load_suite("synthetic")


def test_the_synthetic_suite_states_an_intended_class_per_task():
    intended = {t.name: t.intended for t in DESIGNED.tasks}
    assert set(intended) <= set(TASKS) and len(intended) >= 5 and all(intended.values())
    assert {"predictable", "inverse", "breakthrough", "trendless", "noisy"} <= set(intended.values())
    assert all(len(task_items(name)) >= 1000 for name in intended)


def test_the_cpu_uniform_suite_is_the_replications_and_the_demos():
    """synthetic_uniform (1000 items a task) is what the demo's suite copies at 300 items, with the same intended
    classes; make replicate scores syn_en_z15 on the same tasks asked about that corpus's world."""
    uniform, demo = load_suite("synthetic_uniform"), load_suite("synthetic_demo")
    intended = {t.name: t.intended for t in uniform.tasks}
    assert {"predictable", "inverse", "breakthrough", "trendless"} <= set(intended.values()) and len(intended) >= 5
    assert all(len(task_items(name)) >= 1000 for name in intended)
    assert {t.name: t.intended for t in demo.tasks} == intended and demo.items == 300
    assert {t.name: t.items for t in demo.tasks if t.items} == {"home_city": 1000}  # the replication's items
    sweep = load_sweep_config("configs/sweeps/overtrain_micro.yaml")
    assert sweep.eval_suites["syn_en_z15"] == "synthetic_z15" and sweep.eval_steps == "all"
    assert load_suite("synthetic_z15").world == known_sources()["syn_en_z15"].world  # its tasks ask about its world


@pytest.mark.parametrize("task", ["tense"])
def test_a_designed_task_generator(task):
    items = task_items(task)
    assert len(items) == DEFAULT_ITEMS == 1000
    assert items == task_items(task) != task_items(task, seed=1)  # deterministic in the seed
    assert task_items(task, 30) == task_items(task, 30) and len(task_items(task, 30)) == 30
    assert all(0 <= it["gold"] < len(it["choices"]) == 3 for it in items)  # chance 1/3 by design
    assert len({(it["query"], tuple(it["choices"])) for it in items}) == len(items)  # no duplicate items
    golds = [it["gold"] for it in items]
    assert all(abs(golds.count(g) / len(golds) - 1 / 3) < 0.05 for g in range(3))  # no position to guess from


def write_suite(tmp_path, body: str):
    path = tmp_path / "suite.yaml"
    path.write_text(body)
    return path


def test_task_entries_are_names_or_mappings_with_an_intended_class(tmp_path):
    path = write_suite(tmp_path, "tasks: [smooth, {name: inverse, intended: inverse}, {name: x, lm_eval: tiny}]\n")
    tasks = {t.name: t for t in load_suite(path).tasks}
    assert (tasks["smooth"].lm_eval, tasks["smooth"].intended) == ("smooth", None)
    assert (tasks["inverse"].lm_eval, tasks["inverse"].intended) == ("inverse", "inverse")
    assert tasks["x"].lm_eval == "tiny"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{name: smooth, intended: steady}", "tasks[0].intended='steady': must be one of predictable, inverse"),
        ("{name: smooth, lm_eval: smooth, unmapped: why}", "give lm_eval (the task) or unmapped (why not), not both"),
        ("{name: smooth, expected: inverse}", "tasks[0].expected: unknown key"),
        ("{name: smooth, items: 0}", "tasks[0].items=0: must be an integer >= 1"),
    ],
)
def test_bad_task_entries_are_one_line_errors(tmp_path, entry, message):
    path = write_suite(tmp_path, f"tasks:\n  - {entry}\n")
    with pytest.raises(TestbedError) as caught:
        load_suite(path)
    assert str(caught.value).startswith(str(path)) and message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_generated_task_may_have_its_own_item_count(tmp_path, monkeypatch):
    """The suite's count for every task but one that names its own: each written with its count."""
    monkeypatch.setattr(suite_module, "cache_root", lambda: tmp_path / "cache")
    path = write_suite(tmp_path, "items: 12\ntasks: [smooth, {name: home_city, items: 40}]\n")
    out = task_dir(load_suite(path), world_seed=0)
    lines = {task: (out / f"{task}.jsonl").read_text().splitlines() for task in ("smooth", "home_city")}
    assert {task: len(items) for task, items in lines.items()} == {"smooth": 12, "home_city": 40}
    assert [json.loads(line) for line in lines["home_city"]] == task_items("home_city", 40)
    assert out != task_dir(load_suite(write_suite(tmp_path, "items: 12\ntasks: [smooth, home_city]\n")), 0)
    twice = write_suite(tmp_path, "tasks: [{name: a, lm_eval: smooth, items: 5}, {name: b, lm_eval: smooth}]\n")
    with pytest.raises(TestbedError, match=r"tasks\[1\].items: task 'smooth' is listed with two item counts"):
        load_suite(twice)
    with pytest.raises(TestbedError, match=r"items=5: only generated tasks \(synthetic, cloze\) have items"):
        load_suite(write_suite(tmp_path, "generator: none\ntasks: [{name: hellaswag, items: 5}]\n"))


def test_the_classifier_reports_intended_beside_the_verdict():
    rows = []
    for task, kind in (("up", "predictable"), ("down", "inverse")):
        curve = taxonomy_curve(kind, seed=1, corpora=("a",))
        for i, (loss, value) in enumerate(zip(curve["loss"], curve["value"], strict=True)):
            run = {"run_id": f"r{i}", "dataset": "a", "final": True}
            if task == "up":
                rows.append(dict(run, kind="val_loss", name="val", metric="loss", value=loss))
            rows.append(dict(run, kind="task", name=task, metric="acc", value=value, intended="predictable"))
    verdicts = classify(to_frame(rows), "val", n_bootstrap=50)
    by_task = {v.task: v for v in verdicts}
    assert (by_task["up"].cls, by_task["up"].intended, by_task["up"].hit) == ("predictable", "predictable", True)
    assert (by_task["down"].cls, by_task["down"].hit) == ("inverse", False)
    assert verdicts.designed() == (1, 2)
    assert list(verdicts.table().columns[:3]) == ["task", "class", "intended"]
    assert "designed tasks: 1 of 2 in their intended class with confidence >= 0.8" in verdicts.summary()


def test_tasks_meant_as_controls_stay_out_of_the_default_mean():
    rows = [
        {"run_id": f"r{i}", "kind": "task", "final": True, "metric": "acc", "name": name, "value": value,
         "stderr": 0.01, "chance": 0.25, "intended": intended}
        for i in range(3)
        for name, value, intended in (("a", 0.5 + i / 10, "predictable"), ("b", 0.6, "noisy"), ("c", 0.6, None))
    ]  # fmt: skip
    choice = informative_tasks(to_frame(rows), ["r0", "r1", "r2"])
    assert choice.kept == ("a", "c") and choice.dropped == {"b": "control"}


TEXT = [
    "the cat sat on the warm mat and then the cat slept on the mat all day long",
    "a dog ran in the park and the dog found a stick near the old tree by the lake",
    "she reads a book in the evening and writes a letter to her friend every week",
    "the train leaves the station at noon and arrives in the city before the night",
]


def test_cloze_items_from_a_tiny_text():
    items = cloze_items(TEXT, 25, seed=0)
    assert len(items) == 25 and items == cloze_items(TEXT, 25, seed=0) != cloze_items(TEXT, 25, seed=1)
    assert len({(it["query"], it["choices"][it["gold"]]) for it in items}) == 25  # distinct items
    words = {w for line in TEXT for w in line.split()}
    for it in items:
        gold = it["choices"][it["gold"]]
        assert len(it["choices"]) == len(set(it["choices"])) == CHOICES and set(it["choices"]) <= words
        assert any(f"{it['query']} {gold}" in line for line in TEXT)  # the true continuation of the text
        assert len(it["query"].split()) >= 4 and it["query"] == it["query"].strip()
    first = [next(k for k, line in enumerate(TEXT) if it["query"] in line) for it in items[:4]]
    assert sorted(first) == [0, 1, 2, 3]  # one item from each document before any second one
    assert not {"the", "and", "cat"} & {it["choices"][it["gold"]] for it in items}  # the 3 most frequent words
    with pytest.raises(TestbedError, match="tiny: .* cloze targets in 4 documents, 500 items wanted"):
        cloze_items(TEXT, 500, where="tiny")


def test_a_cloze_suite_reads_only_the_test_split(tmp_path, monkeypatch):
    from testbed.data import sources

    train, test = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    train.write_text(json.dumps({"text": "zebra " * 50}) + "\n")
    test.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXT))
    entry = {"kind": "local", "language": "en", "splits": {"train": str(train), "test": str(test)}}
    monkeypatch.setattr(sources, "known_sources", lambda: {"tiny_en": sources.parse_source("tiny_en", entry, "t")})
    monkeypatch.setattr(suite_module, "cache_root", lambda: tmp_path / "cache")
    path = write_suite(tmp_path, "generator: cloze\nsource: tiny_en\nitems: 20\ntasks: [{name: c, intended: noisy}]\n")
    out = task_dir(load_suite(path), world_seed=0)
    items = [json.loads(line) for line in (out / "c.jsonl").read_text().splitlines()]
    assert len(items) == 20 and not any("zebra" in it["query"] or "zebra" in it["choices"] for it in items)
    bad = write_suite(tmp_path, "generator: cloze\nsource: nope\ntasks: [c]\n")
    with pytest.raises(TestbedError, match="source='nope': unknown data source"):
        task_dir(load_suite(bad), world_seed=0)
    with pytest.raises(TestbedError, match="a cloze suite names a data source"):
        load_suite(write_suite(tmp_path, "generator: cloze\ntasks: [c]\n"))


def test_a_synthetic_suite_may_ask_about_another_world(tmp_path, monkeypatch):
    """`world:` writes the tasks about that world, in a cache dir of its own (the default world's knobs spelled
    out share the default's); bad knobs are one-line errors."""
    monkeypatch.setattr(suite_module, "cache_root", lambda: tmp_path / "cache")
    z15, uniform = load_suite("synthetic_z15"), load_suite("synthetic_uniform")
    assert z15.world == {"persons": 30000, "zipf": 1.5} and uniform.world == {}
    assert [t.name for t in z15.tasks] == [t.name for t in uniform.tasks]
    path = write_suite(tmp_path, "items: 20\nworld: {persons: 30000, zipf: 1.5}\ntasks: [home_city]\n")
    out = task_dir(load_suite(path), world_seed=0)
    default = task_dir(load_suite(write_suite(tmp_path, "items: 20\ntasks: [home_city]\n")), 0)
    assert out != default
    spelled = write_suite(tmp_path, "items: 20\nworld: {persons: 3000, zipf: 1}\ntasks: [home_city]\n")
    assert task_dir(load_suite(spelled), 0) == default  # the default world's knobs spelled out: the same items
    written = [json.loads(line) for line in (out / "home_city.jsonl").read_text().splitlines()]
    assert written == task_items("home_city", 20, world=z15.world) != task_items("home_city", 20)
    for body, message in (
        ("world: {zipf: 0}\ntasks: [smooth]\n", "world.zipf=0: an exponent in (0, 10]"),
        ("world: {people: 5}\ntasks: [smooth]\n", "world.people=5: unknown world knob"),
        ("generator: none\nworld: {zipf: 1.5}\ntasks: [smooth]\n", "world={'zipf': 1.5}: a synthetic suite's"),
    ):
        with pytest.raises(TestbedError) as caught:
            load_suite(write_suite(tmp_path, body))
        assert str(caught.value).startswith(str(tmp_path / "suite.yaml")) and message in str(caught.value)
