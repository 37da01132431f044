"""Learning-rate schedules: the specified multiplier of the peak LR at chosen steps, cosine and WSD."""

import math

import pytest

from testbed.ladder import plan_run
from testbed.resolve import load_run_config
from testbed.schedule import cooldown_start, lr_factor


def plan_of(*overrides):
    return plan_run(load_run_config(None, ["model.size=s2", "train.multiplier=10", *overrides]))


def test_cosine_schedule_values():
    plan = plan_of("train.warmup_steps=10")
    assert plan.schedule == "cosine" and plan.cooldown_start == plan.steps
    assert lr_factor(0, plan) == pytest.approx(0.1)
    assert lr_factor(9, plan) == pytest.approx(1.0)
    assert lr_factor(10, plan) == pytest.approx(1.0)
    middle = 10 + (plan.steps - 11) / 2
    assert lr_factor(middle, plan) == pytest.approx((1 + 0.01) / 2)
    assert lr_factor(plan.steps - 1, plan) == pytest.approx(0.01)


@pytest.mark.parametrize("shape", ["linear", "1-sqrt"])
def test_wsd_schedule_values(shape):
    plan = plan_of("train.schedule=wsd", f"train.cooldown_shape={shape}", "train.cooldown_fraction=0.25")
    assert plan.steps == 173 and plan.warmup_steps == 20  # wsd: the ladder's warmup, not capped by the horizon
    assert plan.cooldown_start == 173 - 43 == cooldown_start(173, 0.25)
    assert plan.checkpoint_steps == (130, 173)  # the branch point and the end
    assert lr_factor(0, plan) == pytest.approx(1 / 20)
    assert lr_factor(19, plan) == pytest.approx(1.0)
    assert all(lr_factor(s, plan) == 1.0 for s in range(20, 130))  # stable: the same for every horizon
    floor = 0.01
    for step in (130, 151, 172):
        progress = (step - 130 + 1) / 43
        remaining = 1 - progress if shape == "linear" else 1 - math.sqrt(progress)
        assert lr_factor(step, plan) == pytest.approx(floor + (1 - floor) * remaining)
    assert lr_factor(130, plan) < 1.0 and lr_factor(172, plan) == pytest.approx(floor)


def test_wsd_prefix_does_not_depend_on_the_multiplier():
    short, long = plan_of("train.schedule=wsd"), plan_of("train.schedule=wsd", "train.multiplier=40")
    assert short.warmup_steps == long.warmup_steps and short.cooldown_start < long.cooldown_start
    assert [lr_factor(s, short) for s in range(short.cooldown_start)] == [
        lr_factor(s, long) for s in range(short.cooldown_start)
    ]


def test_the_scheduler_applies_the_factors():
    import torch

    plan = plan_of("train.schedule=wsd", "train.cooldown_shape=1-sqrt")
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([param], lr=plan.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, plan))
    seen = []
    for _ in range(plan.steps):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen[0] == pytest.approx(plan.lr / plan.warmup_steps)
    assert seen[plan.cooldown_start - 1] == pytest.approx(plan.lr)
    assert seen[-1] == pytest.approx(plan.final_lr)
