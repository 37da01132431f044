"""Every extension point is a Registry: one `register` call adds a working launch backend, stage, source kind
or task generator, and an unknown name is refused with one line that says what was probably meant."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest

from testbed.cli import main
from testbed.data import readers, sources, synthetic_tasks
from testbed.data.readers import SourceKind
from testbed.data.synthetic_tasks import TaskGenerator, task_items, write_task_suite
from testbed.errors import TestbedError
from testbed.ladder import run_id
from testbed.resolve import load_run_config
from testbed.rundir import RunDir
from testbed.sweep import launch, stages
from testbed.sweep.stages import OK, TRAIN_ONLY, run_stages

SWEEP = {
    "name": "toy",
    "defaults": {"model": {"arch": "decoder", "ladder": "micro"}},
    "grid": [{"sizes": ["s1"], "datasets": ["syn_en"], "multipliers": [1, 2]}],
}  # JSON is YAML


def scratch(monkeypatch, name: str, *modules):
    """A copy of the registry `name` in place of every module's global for this test, so what a test
    registers does not outlive it."""
    registry = copy.deepcopy(getattr(modules[0], name))
    for module in modules:
        monkeypatch.setattr(module, name, registry)
    return registry


def test_a_backend_is_one_register_call(tmp_path, monkeypatch, capsys):
    sweep = tmp_path / "toy.yaml"
    sweep.write_text(json.dumps(SWEEP))
    got = []

    def record(sweep, runs, progress, wait):
        got.extend(run_id(run) for run in runs)
        return {run_id(run): "DONE" for run in runs[1:]} | {run_id(runs[0]): "FAILED: toy"}

    scratch(monkeypatch, "BACKENDS", launch).register("record", record)
    assert main(["sweep", "run", str(sweep), f"out_dir={tmp_path}", "--backend", "record"]) == 1
    assert got == ["dec-s1-syn_en-m1-seed0", "dec-s1-syn_en-m2-seed0"]
    assert "1/2 runs DONE" in capsys.readouterr().out

    assert main(["sweep", "run", str(sweep), f"out_dir={tmp_path}", "--backend", "slurn"]) == 2
    assert capsys.readouterr().err == (
        "testbed: error: unknown backend 'slurn' (did you mean 'slurm'?); known backends: local, slurm, record\n"
    )


def test_a_stage_is_one_register_call(tmp_path, monkeypatch):
    config = load_run_config(None, [f"out_dir={tmp_path}", "sweep=toy"])
    run_dir = RunDir.of(config).prepare(config).path
    got = []
    scratch(monkeypatch, "STAGES", stages).register("count", lambda *args, **kwargs: got.append((args, kwargs)))
    assert run_stages(run_dir, ["count"], TRAIN_ONLY) == OK
    (where, config, spec), kwargs = got[0]
    assert where == run_dir and config.sweep == "toy" and spec is TRAIN_ONLY and kwargs == {"progress": False}
    assert not (run_dir / "DONE").exists()  # train was not asked for

    done = subprocess.run(
        [sys.executable, "-m", "testbed.sweep.stages", str(run_dir), "--stages", "evl"], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1].endswith(
        "error: --stages: unknown stage 'evl' (did you mean 'eval'?); known stages: train, eval, finetune"
    )


class Memory(SourceKind):
    """Documents from a list in memory."""

    DOCS = {"train": ["first", "", "second", "third"]}

    def rows(self, source, split):
        return (({"text": text}, f"memory[{i}]") for i, text in enumerate(self.DOCS[split]))

    def content(self, source, split):
        return {"docs": self.DOCS[split]}


def test_a_source_kind_is_one_register_call(tmp_path, monkeypatch):
    scratch(monkeypatch, "KINDS", sources, readers).register("memory", Memory())
    path = tmp_path / "memory.yaml"
    path.write_text(
        json.dumps(
            {"sources": {"m": {"kind": "memory", "language": "en", "splits": {"train": {"split": "train", "skip": 1}}}}}
        )
    )
    source = sources.load_registry([path]).sources["m"]
    assert list(readers.documents(source, "train")) == ["second", "third"]  # the empty one dropped, one skipped
    assert list(readers.documents(source, "train", start=1)) == ["third"]
    assert readers.definition(source, "train", 0)["docs"] == Memory.DOCS["train"]

    path.write_text(json.dumps({"sources": {"m": {"kind": "lcoal", "language": "en"}}}))
    with pytest.raises(TestbedError) as err:
        sources.load_registry([path])
    assert str(err.value).endswith(
        "sources.m.kind: unknown source kind 'lcoal' (did you mean 'local'?); "
        "known source kinds: synthetic, local, hub, memory"
    )


def test_a_task_generator_is_one_register_call(tmp_path, monkeypatch):
    def first_city(world, english, rng, n):
        return [{"query": "The first city is", "choices": [world.cities[0], world.cities[1]], "gold": 0}] * n

    tasks = scratch(monkeypatch, "TASKS", synthetic_tasks)
    tasks.register("first_city", TaskGenerator("The first city of the world: a toy.", first_city, 3))
    assert len(task_items("first_city")) == 3 and task_items("first_city", 1)[0]["gold"] == 0
    assert set(write_task_suite(tmp_path)) == {
        "smooth",
        "tense",
        "breakthrough",
        "inverse",
        "random_label",
        "tiny",
        "occupation",
        "home_city",
        "long_tail",
        "agreement",
        "stereotype",
        "possessive",
        "first_city",
    }
    with pytest.raises(TestbedError, match=r"^unknown task 'smoth' \(did you mean 'smooth'\?\); known tasks: "):
        task_items("smoth")
