"""The alignment replication's design (configs/sweeps/alignment_cpu.yaml): what `make replicate-translation`
trains and finetunes, checked without training anything."""

from testbed.config import load_sweep_config
from testbed.ladder import plan_run
from testbed.paths import CONFIG_ROOT
from testbed.schedule import lr_factor
from testbed.sweep.expand import expand
from testbed.translation.alignment import mixture_alignment
from testbed.translation.protocol import load_protocol

SWEEP = CONFIG_ROOT / "sweeps" / "alignment_cpu.yaml"


def test_four_mixtures_span_the_alignment_scores_for_both_pairs_and_both_archs():
    runs = expand(load_sweep_config(SWEEP), str(SWEEP))
    assert sorted((r.model.arch, r.data.name) for r in runs) == sorted(
        (arch, data) for arch in ("decoder", "t5") for data in ("syn_en_fr", "syn_fr", "syn_en", "syn_de")
    )
    scores = {
        task: sorted(mixture_alignment(r.data.mixture, *task) for r in runs if r.model.arch == "decoder")
        for task in (("syn_en", "syn_fr"), ("syn_fr", "syn_en"))
    }
    assert scores == {("syn_en", "syn_fr"): [0.0, 0.7, 0.8, 1.0], ("syn_fr", "syn_en"): [0.0, 0.7, 0.8, 1.0]}


def test_checkpoints_are_comparable_five_or_more_pretraining_token_counts_at_one_constant_lr():
    for run in expand(load_sweep_config(SWEEP), str(SWEEP)):
        plan = plan_run(run)
        assert len(plan.checkpoint_steps) >= 5
        factors = {round(lr_factor(step - 1, plan), 12) for step in plan.checkpoint_steps}
        assert factors == {1.0}, (run.model.arch, run.data.name, factors)  # none taken in warmup or annealed


def test_protocol_has_three_finetuning_seeds_two_sizes_and_the_baseline():
    sweep = load_sweep_config(SWEEP)
    protocol = load_protocol(sweep.finetune.protocol)
    assert sweep.finetune.tasks == ["syn_en-syn_fr"] and sweep.finetune.sizes == [20000, 100000]
    assert protocol.seeds == [0, 1, 2] and protocol.baseline and len(protocol.lrs) >= 2


REAL = CONFIG_ROOT / "sweeps" / "alignment_real_cpu.yaml"


def test_real_arm_spans_the_alignment_scores_at_one_constant_lr():
    """The real-text arm (configs/sweeps/alignment_real_cpu.yaml): en -> fr and en -> de on the gettext pairs,
    decoder and T5, four real mixtures whose A spans 0 ... 1 for each pair, log-spaced checkpoints all taken
    at the constant LR."""
    sweep = load_sweep_config(REAL)
    runs = expand(sweep, str(REAL))
    mixtures = ["real_de", "real_en", "real_en_fr", "real_fr"]
    assert sorted((r.model.arch, r.data.name) for r in runs) == [(a, m) for a in ("decoder", "t5") for m in mixtures]
    scores = {r.data.name: mixture_alignment(r.data.mixture, "en", "fr") for r in runs}
    assert scores == {"real_en_fr": 1.0, "real_fr": 0.8, "real_en": 0.7, "real_de": 0.0}
    scores = {r.data.name: mixture_alignment(r.data.mixture, "en", "de") for r in runs}
    assert scores == {"real_de": 0.8, "real_en": 0.7, "real_en_fr": 0.35, "real_fr": 0.0}
    for run in runs:
        plan = plan_run(run)
        assert len(plan.checkpoint_steps) >= 5
        assert {round(lr_factor(step - 1, plan), 12) for step in plan.checkpoint_steps} == {1.0}
    protocol = load_protocol(sweep.finetune.protocol)
    assert sweep.finetune.tasks == ["real_en_fr", "real_en_de"] and protocol.baseline and len(protocol.seeds) >= 2
