"""Warmup-stable-decay: cooldown branches off a shared trunk equal independent runs, bit for bit, with less
compute; preemption in the trunk or in a cooldown resumes exactly."""

import json

import pytest
import torch

from testbed.checkpoint import list_steps, step_dir
from testbed.ladder import plan_run
from testbed.preempt import Preempted
from testbed.resolve import load_run_config
from testbed.results import read_rows
from testbed.sweep.plan import computed_tokens
from testbed.train import train

WSD = [
    "model.size=s1",
    "train.schedule=wsd",
    "train.warmup_steps=5",
    "data.validation=[syn_en]",
    "data.val_tokens=1024",
]


def run(out, multiplier, **env):
    return load_run_config(None, [*WSD, f"train.multiplier={multiplier}", f"out_dir={out}"])


def final_state(run_dir):
    steps = list_steps(run_dir / "ckpt")
    return torch.load(step_dir(run_dir / "ckpt", steps[-1]) / "state.pt", weights_only=False)


def measured(run_dir):
    return sorted(
        (r["step"], r["kind"], r["name"], r["metric"], r["value"])
        for r in read_rows(run_dir)
        if r["name"] != "throughput"
    )


def assert_same_weights(a, b):
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name


def test_branches_share_the_trunk_and_equal_independent_runs(runs_dir):
    short, long = run(runs_dir / "shared", 2), run(runs_dir / "shared", 4)
    p_short, p_long = plan_run(short), plan_run(long)
    assert p_short.cooldown_start < p_long.cooldown_start
    train(short, progress=False)
    shared = train(long, progress=False)
    alone = train(run(runs_dir / "alone", 4), progress=False)

    assert_same_weights(final_state(shared), final_state(alone))
    assert measured(shared) == measured(alone)
    rows = read_rows(shared)
    assert {r["step"] for r in rows if r["kind"] == "val_loss"} == {p_long.cooldown_start, p_long.steps}
    branch = [r["value"] for r in rows if r["kind"] == "val_loss" and r["step"] == p_long.cooldown_start]
    final = [r["value"] for r in rows if r["kind"] == "val_loss" and r["final"]]
    assert final[0] < branch[0]  # the cooldown pays

    # The long run trained only the trunk's extension and its cooldown.
    computed = json.loads((shared / "meta.json").read_text())["steps_computed"]
    assert computed == p_long.steps - p_short.cooldown_start
    assert json.loads((alone / "meta.json").read_text())["steps_computed"] == p_long.steps
    # The sweep planner charges the same: the trunk once, then each branch's extension and cooldown.
    assert computed_tokens([long, short]) == [
        p_long.tokens - p_short.tokens_before(p_short.cooldown_start),
        p_short.tokens,
    ]
    assert computed_tokens([long, run(runs_dir / "alone", 4)]) == [p_long.tokens] * 2  # other sweep dirs: no sharing
    trunks = list((runs_dir / "shared" / "adhoc" / "_trunks").iterdir())
    assert len(trunks) == 1 and list_steps(trunks[0] / "ckpt") == [p_short.cooldown_start, p_long.cooldown_start]


def test_preemption_in_the_trunk_and_in_the_cooldown_resumes_exactly(runs_dir, monkeypatch):
    config = run(runs_dir / "preempted", 4)
    plan = plan_run(config)
    rid = "dec-s1-syn_en-m4-wsd-seed0"
    monkeypatch.setenv("TESTBED_INJECT_SIGTERM", f"{rid}@{plan.cooldown_start - 10}")
    with pytest.raises(Preempted, match="trunk checkpointed"):
        train(config, progress=False)
    monkeypatch.setenv("TESTBED_INJECT_SIGTERM", f"{rid}@{plan.cooldown_start + 2}")
    with pytest.raises(Preempted, match=f"checkpointed at step {plan.cooldown_start + 2}"):
        train(config, progress=False)
    monkeypatch.delenv("TESTBED_INJECT_SIGTERM")
    resumed = train(config, progress=False)
    alone = train(run(runs_dir / "alone", 4), progress=False)
    assert_same_weights(final_state(resumed), final_state(alone))
    assert measured(resumed) == measured(alone)
