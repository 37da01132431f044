"""Suites: the Gadre mapping covers all 46 tasks; local stand-ins go through the same code path as hub
tasks; a failing task is recorded while the others run; a second call re-evaluates nothing; alignment."""

from __future__ import annotations

import json

import pytest

from testbed.checkpoint import list_steps
from testbed.cli import main
from testbed.errors import TestbedError
from testbed.evaluate.suite import FAILURES_FILE, evaluate_run, load_suite
from testbed.evaluate.tasks import write_mc_task
from testbed.resolve import load_run_config
from testbed.results import read_rows
from testbed.rundir import RunDir
from testbed.sweep.stages import FAILED, OK, StageSpec, run_outcome, run_stages
from testbed.train import train
from testbed.translation.alignment import alignment_score, mixture_alignment

GADRE46 = [
    "agi_eval_lsat_ar",
    "agi_eval_lsat_rc",
    "agi_eval_lsat_lr",
    "agi_eval_sat_en",
    "arc_easy",
    "arc_challenge",
    "bbq",
    "bigbench_conceptual_combinations",
    "bigbench_conlang_translation",
    "bigbench_cs_algorithms",
    "bigbench_dyck_languages",
    "bigbench_elementary_math_qa",
    "bigbench_misconceptions",
    "bigbench_language_identification",
    "bigbench_logical_deduction",
    "bigbench_novel_concepts",
    "bigbench_operators",
    "bigbench_repeat_copy_logic",
    "bigbench_qa_wikidata",
    "bigbench_strange_stories",
    "bigbench_strategy_qa",
    "bigbench_understanding_fables",
    "boolq",
    "commonsense_qa",
    "copa",
    "coqa",
    "enterprise_pii_classification",
    "hellaswag",
    "hellaswag_zeroshot",
    "jeopardy",
    "lambada_openai",
    "logi_qa",
    "math_qa",
    "mmlu",
    "mmlu_zeroshot",
    "openbook_qa",
    "piqa",
    "pubmed_qa_labeled",
    "simple_arithmetic_nospaces",
    "simple_arithmetic_withspaces",
    "siqa",
    "squad",
    "winogender_mc_female",
    "winogender_mc_male",
    "winograd",
    "winogrande",
]


def test_alignment_score_paper_values():
    languages = {"syn_en": "syn_en", "syn_fr": "syn_fr", "syn_de": "syn_de", "en": "en", "fr": "fr"}
    assert mixture_alignment({"syn_en": 0.5, "syn_fr": 0.5}, "syn_en", "syn_fr", languages) == pytest.approx(1.0)
    assert mixture_alignment({"syn_en": 1.0}, "syn_en", "syn_fr", languages) == pytest.approx(0.7)
    assert mixture_alignment({"syn_fr": 1.0}, "syn_en", "syn_fr", languages) == pytest.approx(0.8)
    assert mixture_alignment({"syn_de": 1.0}, "syn_en", "syn_fr", languages) == 0.0
    assert mixture_alignment({"en": 0.5, "fr": 0.5}, "syn_en", "syn_fr", languages) == pytest.approx(1.0)  # same roles
    assert mixture_alignment({"syn_en": 0.3, "syn_fr": 0.7}, "syn_en", "syn_fr") == pytest.approx(
        0.3 * 0.7 + 0.7 * 0.3 + 0.8 * 0.7
    )  # the registry's languages
    with pytest.raises(TestbedError, match="P_src"):
        alignment_score(1.5, 0.0)


def test_gadre_suites_cover_every_task_with_the_papers_shots():
    from analysis.gadre2024 import SUBSET17

    suite = load_suite("gadre46")
    assert suite.generator == "none"
    assert sorted(t.name for t in suite.tasks) == sorted(GADRE46)
    for task in suite.tasks:  # mapped to an lm-eval task, or unmapped with a reason
        assert (task.lm_eval is None) != (task.unmapped is None) and (task.lm_eval or task.unmapped.strip())
    assert {t.name for t in suite.unmapped} == {
        "enterprise_pii_classification",
        "jeopardy",
        "simple_arithmetic_nospaces",
        "simple_arithmetic_withspaces",
    }
    shots = {t.name: t.num_fewshot for t in suite.tasks}
    assert shots["hellaswag"] == 10 and shots["hellaswag_zeroshot"] == 0 and shots["mmlu"] == 5
    assert shots["agi_eval_lsat_ar"] == 3 and shots["copa"] == 0 and shots["arc_easy"] == 10
    try:
        from analysis.gadre2024 import task_metadata

        meta = task_metadata()
    except Exception:  # the released data is not shipped in every checkout
        meta = {}
    for name, m in meta.items():
        if name in shots:
            assert shots[name] == m["num_fewshot"], name
    subset = load_suite("gadre17")
    assert sorted(t.name for t in subset.tasks) == sorted(SUBSET17)
    full = {t.name: t for t in suite.tasks}
    assert all(full[t.name] == t for t in subset.tasks)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    config = load_run_config(
        None,
        [
            f"out_dir={out}",
            "sweep=evalsuite",
            "train.multiplier=2",
            "track=none",
            "data.val_tokens=1024",
            "data.validation=[syn_en]",
            "train.log_spaced_checkpoints=1",
        ],
    )
    return train(config, progress=False)


def stand_in_suite(tmp_path, gadre_names: list[str]):
    """The Gadre suite restricted to some tasks, each with a local jsonl task of its lm-eval name."""
    tasks_dir = tmp_path / "tasks"
    items = [
        {"query": f"Syn is a city in {c}. Is Syn in {c}?", "choices": ["yes", "no"], "gold": i % 2}
        for i, c in enumerate(["Alpha", "Beta", "Gamma", "Delta", "Epsilon", "Zeta"])
    ]
    entries = {t.name: t for t in load_suite("gadre46").tasks}
    lines = []
    for name in gadre_names:
        entry = entries[name]
        write_mc_task(entry.lm_eval, items, tasks_dir)
        lines.append(f"  - {{name: {name}, lm_eval: {entry.lm_eval}, num_fewshot: {min(entry.num_fewshot, 2)}}}")
    path = tmp_path / "standin.yaml"
    path.write_text(
        f"generator: none\ninclude_path: {tasks_dir}\nbatch_size: 8\ntasks:\n"
        + "\n".join(lines)
        + "\n  - {name: jeopardy, unmapped: no counterpart}\n"
    )
    return path, tasks_dir


def test_stand_ins_failures_recorded_and_skip(run_dir, tmp_path):
    suite, tasks_dir = stand_in_suite(tmp_path, ["copa", "boolq"])
    (tasks_dir / "boolq.jsonl").write_text("")  # an empty reference file: boolq fails, copa still runs
    report = evaluate_run(run_dir, suite, steps="all")
    assert report.unmapped == ["jeopardy"]
    rows = [r for r in read_rows(run_dir) if r["kind"] == "task"]
    assert {r["name"] for r in rows} == {"copa"}
    steps = list_steps(run_dir / "hf")
    assert len(steps) == 2
    assert {(r["step"], r["metric"]) for r in rows} == {(s, m) for s in steps for m in ("acc", "acc_norm", "p_correct")}
    assert all(r["num_fewshot"] == 0 and r["harness"].startswith("lm_eval==") for r in rows)
    failures = RunDir(run_dir).failures("eval")
    assert len(failures) == 2 and all(f["task"] == "boolq" and "is empty" in f["reason"] for f in failures.values())
    # A second call re-evaluates nothing that is done (only the failing task is tried again).
    again = evaluate_run(run_dir, suite, steps="all")
    assert again.written == 0 and again.attempted == 2 and len(again.failed) == 2
    assert len([r for r in read_rows(run_dir) if r["kind"] == "task"]) == len(rows)
    # As a sweep stage: a failed task leaves the stage FAILED with its reason, and the run short of DONE.
    spec = StageSpec(str(suite))
    assert run_stages(run_dir, ["eval"], spec) == FAILED
    state, detail = run_outcome(run_dir, spec)
    assert state == "FAILED" and "boolq" in detail and "is empty" in detail
    # Fixed data: boolq runs, its failure records go away.
    write_mc_task("boolq", [{"query": "Is it?", "choices": ["yes", "no"], "gold": 0}] * 3, tasks_dir)
    fixed = evaluate_run(run_dir, suite, steps="final")
    assert fixed.written == 3 and fixed.failed == []
    assert len(RunDir(run_dir).failures("eval")) == 1  # the non-final step's failure is still on record
    assert run_stages(run_dir, ["eval"], spec) == OK and run_outcome(run_dir, spec) == ("DONE", "")
    assert (run_dir / FAILURES_FILE).is_file()


def test_eval_bad_inputs_exit_2(run_dir, tmp_path, capsys):
    empty_run = tmp_path / "empty_run"
    empty_run.mkdir()
    (empty_run / "config.yaml").write_text((run_dir / "config.yaml").read_text())
    assert main(["eval", str(empty_run)]) == 2
    assert "no checkpoints" in capsys.readouterr().err
    assert main(["eval", str(run_dir), "--suite", "no_such_suite"]) == 2
    assert "unknown suite" in capsys.readouterr().err
    suite, tasks_dir = stand_in_suite(tmp_path, ["piqa"])
    (tasks_dir / "piqa.jsonl").write_text("")
    assert main(["eval", str(run_dir), "--suite", str(suite)]) == 2  # every task failed on bad input
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "piqa" in err[0] and "empty" in err[0]
    assert json.loads((run_dir / FAILURES_FILE).read_text())
