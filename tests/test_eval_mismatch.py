"""A suite in a language the model never saw is scored, with one warning on stderr and in the eval's records."""

from __future__ import annotations

import json

import pytest

from testbed.data.sources import mixture
from testbed.evaluate.mismatch import language_mismatch, world_mismatch
from testbed.evaluate.suite import evaluate_run, load_suite
from testbed.evaluate.tasks import write_mc_task
from testbed.resolve import load_run_config
from testbed.train import train


def test_a_real_text_model_on_the_synthetic_suite_is_a_mismatch():
    synthetic = "synthetic", load_suite("synthetic").language
    warning = language_mismatch(*synthetic, "real_en", mixture("real_en"))
    assert warning == (
        "suite synthetic is in syn_en, but the model was trained on real_en (en): "
        "its scores are not what the suite measures"
    )
    assert language_mismatch(*synthetic, "syn_en_fr", mixture("syn_en_fr")) is None  # syn_en is among them
    assert (
        language_mismatch("docs_cloze", load_suite("docs_cloze").language, "docs_en", {}) is None
    )  # weights from the registry
    assert "is in en" in str(language_mismatch("gadre17", load_suite("gadre17").language, "syn_en", {}))
    assert "is in syn_en" in str(language_mismatch(*synthetic, "syn_fr", {}))


def test_a_synthetic_suite_about_another_world_is_a_mismatch():
    """syn_en_z15's models read about 30,000 people with a steeper tail: the default world's tasks weigh its
    people otherwise, and the other way round; a real-text model is language_mismatch's."""
    z15 = load_suite("synthetic_z15").world
    assert world_mismatch("synthetic_uniform", {}, "syn_en_z15", {}) == (
        "suite synthetic_uniform asks about the world persons 3000, zipf 1.0, but the model was trained on "
        "syn_en_z15 (persons 30000, zipf 1.5): its people are talked about differently"
    )
    assert "trained on syn_en (persons 3000, zipf 1.0)" in str(world_mismatch("synthetic_z15", z15, "syn_en", {}))
    assert world_mismatch("synthetic_z15", z15, "syn_en_z15", mixture("syn_en_z15")) is None
    assert world_mismatch("synthetic", {}, "syn_en_fr", {}) is None  # every source of it is the default world
    assert world_mismatch("synthetic", {"persons": 3000}, "syn_en", {}) is None  # the defaults spelled out
    assert world_mismatch("synthetic_z15", z15, "real_en", {}) is None


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    overrides = [f"out_dir={out}", "sweep=mismatch", "train.multiplier=2", "track=none", "data.val_tokens=1024"]
    return train(load_run_config(None, [*overrides, "data.validation=[syn_en]", "train.log_spaced_checkpoints=0"]))


def suite_file(tmp_path, language: str | None) -> str:
    """A one-task suite of local items (no generator), in `language`."""
    items = [{"query": f"Is {n} even?", "choices": ["yes", "no"], "gold": n % 2} for n in range(6)]
    write_mc_task("parity", items, tmp_path / "tasks")
    path = tmp_path / f"parity_{language}.yaml"
    said = f"language: {language}\n" if language else ""
    path.write_text(f"generator: none\n{said}include_path: {tmp_path / 'tasks'}\nbatch_size: 8\ntasks: [parity]\n")
    return str(path)


def test_eval_of_a_syn_en_model_on_an_english_suite_warns_and_records_it(run_dir, tmp_path, capsys):
    report = evaluate_run(run_dir, suite_file(tmp_path, "en"))
    assert report.written > 0  # still scored
    err = capsys.readouterr().err.strip().splitlines()
    mine = [line for line in err if line.startswith("testbed: warning:")]
    assert mine == [f"testbed: warning: {run_dir}: {report.warnings[0]}"]
    assert "is in en, but the model was trained on syn_en (syn_en)" in mine[0]
    (meta,) = (run_dir / "eval_samples").glob("step_*/parity-0shot.json")
    assert json.loads(meta.read_text())["notes"] == report.warnings


def test_no_warning_when_the_language_matches_or_is_not_known(run_dir, tmp_path, capsys):
    for language in ("syn_en", None):
        (tmp_path / str(language)).mkdir()
        report = evaluate_run(run_dir, suite_file(tmp_path / str(language), language))
        assert report.warnings == []
        assert "warning" not in capsys.readouterr().err
