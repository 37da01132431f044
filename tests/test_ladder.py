"""Ladder accounting: exact parameter counts, derived values in one place, stable run ids, the LR schedule."""

import math

import pytest

from testbed.errors import TestbedError
from testbed.ladder import load_ladder, model_config, plan_run, run_id
from testbed.models import build_model
from testbed.resolve import load_run_config


@pytest.mark.parametrize("size", ["s1", "s3", "s6"])
def test_param_counts_equal_the_built_model(size):
    config = load_run_config(None, [f"model.size={size}"])
    plan = plan_run(config)
    model = build_model(model_config(config))
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
    dense = plan_run(load_run_config(None, ["model.size=s2", "train.multiplier=7", "train.log_spaced_checkpoints=2",
                                             "train.checkpoints_per_doubling=2"]))  # fmt: skip
    assert dense.checkpoint_steps == (30, 43, 60, 86, 121)  # 121 / sqrt(2)^j, j = 0..4


def test_run_ids_are_readable_and_stable():
    a = load_run_config(None, ["model.size=s3", "train.multiplier=20"])
    b = load_run_config(None, ["train.multiplier=20.0", "model.size=s3"])
    assert run_id(a) == run_id(b) == "dec-s3-syn_en-m20-seed0"
    assert run_id(load_run_config(None, ["train.multiplier=2.5"])) == "dec-s1-syn_en-m2.5-seed0"


@pytest.mark.parametrize(
    "arch,size,extra", [("t5", "s1", []), ("t5", "s6", []), ("decoder", "s3", ["model.qk_norm=true"])]
)
def test_t5_and_qk_norm_counts_equal_the_built_model(arch, size, extra):
    config = load_run_config(None, [f"model.arch={arch}", f"model.size={size}", *extra])
    plan = plan_run(config)
    model = build_model(model_config(config))
    total = sum(p.numel() for p in model.parameters())  # T5's two stacks share one embedding: counted once
    assert plan.params == total
    assert plan.params_nonembed == total - model.get_input_embeddings().weight.numel()
    expected = {"t5": "T5ForConditionalGeneration", "decoder": "Qwen3ForCausalLM"}[arch]
    assert type(model).__name__ == expected
    assert model.get_output_embeddings().weight is not model.get_input_embeddings().weight  # untied


def test_t5_ladders_leave_room_for_the_sentinels():
    micro = model_config(load_run_config(None, ["model.arch=t5", "model.size=s2"]))
    reduced = model_config(load_run_config(None, ["model.arch=t5", "model.ladder=reduced", "model.size=r6"]))
    assert micro.vocab_size == 512 + 6 and reduced.vocab_size == 16384 + 51  # one sentinel per noise span
    assert (micro.feed_forward_proj, micro.scale_decoder_outputs, micro.num_decoder_layers) == ("gated-gelu", False, 2)
    assert reduced.d_ff == 2816 and reduced.num_layers == 24
    assert run_id(load_run_config(None, ["model.arch=t5", "train.schedule=wsd"])) == "t5-s1-syn_en-m20-wsd-seed0"


def test_configs_that_cannot_fit_are_refused_before_training(runs_dir):
    from testbed.train import check_fit, train

    with pytest.raises(TestbedError, match="micro_batch_size=12: does not divide"):
        plan_run(load_run_config(None, ["train.micro_batch_size=12"]))
    with pytest.raises(TestbedError, match="train.seq_len=256: longer than the model's context of 128"):
        plan_run(load_run_config(None, ["train.seq_len=256"]))
    with pytest.raises(TestbedError, match="warmup_steps=20: does not end before the cooldown"):
        plan_run(load_run_config(None, ["train.schedule=wsd", "train.multiplier=1"]))
    config = load_run_config(None, ["train.micro_batch_size=8", f"out_dir={runs_dir}"])
    plan = plan_run(config)
    assert (plan.micro_batch(1), plan.micro_batch(2), plan.micro_batch(8)) == (8, 8, 4)
    check_fit(config, plan, 4)  # 32 = 4 x 8
    with pytest.raises(TestbedError, match="not a multiple of 3 processes"):
        check_fit(config, plan, 3)
    with pytest.raises(TestbedError, match="train.micro_batch_size"):
        train(load_run_config(None, ["model.arch=t5", "train.micro_batch_size=7", f"out_dir={runs_dir}"]))
    assert not runs_dir.exists()  # refused before anything was written
    for bad in (
        "model.arch=rnn",
        "model.qk_norm=true model.arch=t5",
        "train.schedule=linear",
        "train.cooldown_fraction=1.0",
        "train.cooldown_shape=cubic",
        "train.distributed=zero3",
    ):
        with pytest.raises(TestbedError, match=bad.split()[0].split("=")[0].replace("model.qk_norm", "qk_norm")):
            load_run_config(None, bad.split())


def test_cpu_ladder_ties_embeddings_and_follows_its_lr_rule():
    """Tied: one matrix in and out, so non-embedding parameters are the blocks alone; the peak LR is the
    ladder's rule lr * (lr_width / d_model) ** lr_exponent, and train.lr_factor multiplies whatever set it."""
    ladder = load_ladder("cpu")
    for size in ("c1", "c6"):
        config = load_run_config(None, ["model.ladder=cpu", f"model.size={size}"])
        plan = plan_run(config)
        model = build_model(model_config(config))
        assert model.lm_head.weight is model.model.embed_tokens.weight
        assert plan.params == sum(p.numel() for p in model.parameters())
        rung = ladder.sizes[size]
        assert plan.params_nonembed == plan.params - ladder.vocab_size * rung.d_model
        assert ladder.lr_width is not None
        assert plan.lr == pytest.approx(ladder.lr * (ladder.lr_width / rung.d_model) ** ladder.lr_exponent)
    c1 = load_run_config(None, ["model.ladder=cpu", "model.size=c1"])
    assert plan_run(c1).lr == pytest.approx(0.03)  # 0.015 at width 32, twice that at width 16
    doubled = load_run_config(None, ["model.ladder=cpu", "model.size=c1", "train.lr_factor=2"])
    assert plan_run(doubled).lr == pytest.approx(0.06)
    fixed = load_run_config(None, ["model.ladder=cpu", "model.size=c1", "train.lr=0.01", "train.lr_factor=0.5"])
    assert plan_run(fixed).lr == pytest.approx(0.005)
    with pytest.raises(TestbedError, match="lr_factor"):
        load_run_config(None, ["train.lr_factor=0"])


def test_tied_embeddings_give_t5_the_original_tied_head(tmp_path, monkeypatch):
    from testbed import ladder as ladder_module

    monkeypatch.setenv("TESTBED_CONFIG_PATH", str(tmp_path))  # a user's config directory, searched first
    (tmp_path / "ladders").mkdir()
    (tmp_path / "ladders" / "tied.yaml").write_text(
        "tie_embeddings: true\nt5_sizes:\n  a: {d_model: 16, layers: 1, heads: 2}\n"
    )
    load_ladder.cache_clear()
    try:
        config = ladder_module._model_config("tied", "t5", "a", False)
        assert config.tie_word_embeddings and config.scale_decoder_outputs  # v1.0: tied, outputs rescaled
        model = build_model(config, seed=0)
        assert model.lm_head.weight is model.shared.weight
    finally:
        load_ladder.cache_clear()
