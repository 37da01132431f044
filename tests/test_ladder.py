"""Ladder accounting: exact parameter counts, derived values in one place, stable run ids, the LR schedule."""

import math

import pytest

from testbed.config import load_run_config
from testbed.ladder import load_ladder, model_config, plan_run, run_id
from testbed.models import build_decoder
from testbed.train import lr_factor


@pytest.mark.parametrize("size", ["s1", "s3", "s6"])
def test_param_counts_equal_the_built_model(size):
    config = load_run_config(None, [f"model.size={size}"])
    plan = plan_run(config)
    model = build_decoder(model_config(config))
    total = sum(p.numel() for p in model.parameters())
    assert plan.params == total
    assert plan.params_nonembed == total - model.model.embed_tokens.weight.numel()


def test_reduced_ladder_counts_match_the_meta_build():
    ladder = load_ladder("reduced")
    config = load_run_config(None, ["model.ladder=reduced", "model.size=r1"])
    plan = plan_run(config)
    rung = ladder.sizes["r1"]
    embed = ladder.vocab_size * rung.d_model
    assert plan.params_nonembed == plan.params - embed and plan.seq_len == 1024


def test_budget_flops_and_steps():
    config = load_run_config(None, ["model.size=s2", "train.multiplier=7"])
    plan = plan_run(config)
    assert plan.tokens == round(7 * plan.params)
    assert plan.flops == 6.0 * plan.params * plan.tokens
    assert plan.steps == math.ceil(plan.tokens / (plan.batch_size * plan.seq_len))
    assert plan.tokens_before(plan.steps) == plan.tokens
    assert plan.checkpoint_steps == (2, 4, 8, 15, 30, 60, 121) and plan.steps == 121  # steps / 2^k
    assert plan.warmup_steps == min(20, plan.steps // 5)


def test_run_ids_are_readable_and_stable():
    a = load_run_config(None, ["model.size=s3", "train.multiplier=20"])
    b = load_run_config(None, ["train.multiplier=20.0", "model.size=s3"])
    assert run_id(a) == run_id(b) == "dec-s3-syn_en-m20-seed0"
    assert run_id(load_run_config(None, ["train.multiplier=2.5"])) == "dec-s1-syn_en-m2.5-seed0"


def test_cosine_schedule_values():
    plan = plan_run(load_run_config(None, ["model.size=s2", "train.multiplier=10", "train.warmup_steps=10"]))
    assert lr_factor(0, plan) == pytest.approx(0.1)
    assert lr_factor(9, plan) == pytest.approx(1.0)
    assert lr_factor(10, plan) == pytest.approx(1.0)
    middle = 10 + (plan.steps - 11) / 2
    assert lr_factor(middle, plan) == pytest.approx((1 + 0.01) / 2)
    assert lr_factor(plan.steps - 1, plan) == pytest.approx(0.01)
