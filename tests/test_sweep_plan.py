"""`testbed sweep plan`: CPU hours from measured rates, eval and finetuning stages, durations in words."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from testbed.cli import main
from testbed.config import load_sweep_config
from testbed.sweep.cpu_rates import TRAIN_TOKENS_PER_SECOND
from testbed.sweep.expand import expand
from testbed.sweep.plan import CPU, format_duration, format_plan, plan_rows
from testbed.sweep.stages import StageSpec

REPO = Path(__file__).resolve().parents[1]
DEMO = str(REPO / "configs/sweeps/demo.yaml")


@pytest.mark.parametrize(
    "seconds, text",
    [
        (0, "0 s"),
        (0.3, "< 1 s"),
        (42.4, "42 s"),
        (59.7, "1 min"),
        (60, "1 min"),
        (200, "3 min 20 s"),
        (3599.6, "1.0 h"),
        (2.4 * 3600, "2.4 h"),
        (36 * 3600, "36 h"),
        (1250 * 3600, "1,250 h"),
        (float("nan"), "unknown"),
    ],
)
def test_durations_read_as_words(seconds, text):
    assert format_duration(seconds) == text


@pytest.fixture(scope="module")
def demo():
    sweep = load_sweep_config(DEMO, [])
    return sweep, expand(sweep, DEMO)


def test_cpu_hours_come_from_the_measured_rate_of_the_rung(demo):
    _, runs = demo
    row = plan_rows(runs[:1])[0]
    rate = TRAIN_TOKENS_PER_SECOND[f"{runs[0].model.ladder}/{row['size']}"][0]
    assert row[f"hours_{CPU}"] == pytest.approx(row["tokens"] / rate / 3600)
    assert row["eval_hours"] == row["finetune_hours"] == 0.0  # no stages given: training alone


def test_an_unmeasured_rung_is_slowed_by_its_size(demo):
    _, runs = demo
    config = runs[0]
    bigger = dataclasses.replace(config, model=dataclasses.replace(config.model, ladder="reduced", size="r1"))
    small, large = plan_rows([config])[0], plan_rows([bigger])[0]
    small_rate = small["tokens"] / (small[f"hours_{CPU}"] * 3600)
    large_rate = large["tokens"] / (large[f"hours_{CPU}"] * 3600)
    assert large["params"] > small["params"] and large_rate < small_rate


def test_an_eval_stage_adds_time(demo):
    sweep, runs = demo
    spec = dataclasses.replace(StageSpec.of(sweep), eval_steps="all")  # every saved checkpoint scored
    assert spec.eval_suite == "synthetic_demo"
    alone, evaluated = plan_rows(runs), plan_rows(runs, spec)
    assert all(r["eval_hours"] > 0 for r in evaluated)
    final_only = plan_rows(runs, dataclasses.replace(spec, eval_steps="final"))
    assert all(a["eval_hours"] < b["eval_hours"] for a, b in zip(final_only, evaluated, strict=True))
    text, plain = format_plan(evaluated, workers=2), format_plan(alone)
    assert "eval@cpu" in text and "eval@cpu" not in plain
    summary = text.splitlines()[-2]
    assert " + eval " in summary and "with 2 workers side by side" in summary
    assert "e-0" not in text  # no hours in scientific notation


def test_a_finetune_stage_adds_time(demo):
    sweep, runs = demo
    spec = dataclasses.replace(StageSpec.of(sweep), finetune_tasks=("syn_en-syn_fr",), finetune_sizes=(20000,),
                               finetune_protocol="finetune_cpu")  # fmt: skip
    rows = plan_rows(runs[:2], spec)
    assert all(r["finetune_hours"] > r["eval_hours"] > 0 for r in rows)
    assert "finetuning" in format_plan(rows).splitlines()[-2]


def test_an_epochs_protocol_plans_more_finetuning_for_a_larger_set(demo):
    """finetune_cpu_epochs: steps grow with the set, so 5x the tokens plans about 5x the finetuning time."""
    sweep, runs = demo

    def hours(size: int) -> float:
        spec = dataclasses.replace(StageSpec.of(sweep), finetune_tasks=("syn_en-syn_fr",), finetune_sizes=(size,),
                                   finetune_protocol="finetune_cpu_epochs")  # fmt: skip
        return plan_rows(runs[:1], spec)[0]["finetune_hours"]

    assert hours(100000) / hours(20000) == pytest.approx(5, rel=0.05)


def test_the_plan_command_prints_eval_time(capsys):
    assert main(["sweep", "plan", DEMO]) == 0
    out = capsys.readouterr().out
    assert "eval@cpu" in out and "of wall-clock" in out
