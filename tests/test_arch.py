"""Architectures are registry entries: an unknown one is refused, and one entry is all a new one needs."""

import dataclasses
from pathlib import Path

import pytest

from analysis.registry import Registry
from testbed import arch
from testbed.errors import TestbedError
from testbed.evaluate.harness import detect_backend
from testbed.ladder import model_config, plan_run, run_id
from testbed.resolve import load_run_config
from testbed.sweep.plan import expected_mfu
from testbed.trunk import trunk_dir


def test_an_unknown_architecture_is_refused_with_a_did_you_mean():
    with pytest.raises(
        TestbedError,
        match=r"^unknown architecture 't55' \(did you mean 't5'\?\); known architectures: "
        r"decoder, t5$",
    ):
        arch.get_arch("t55")
    with pytest.raises(
        TestbedError,
        match=r"^defaults \+ command line: model.arch='rnn': known architectures: "
        r"decoder, t5$",
    ):
        load_run_config(None, ["model.arch=rnn"])
    with pytest.raises(TestbedError, match=r"model.qk_norm=True: qk-norm is a decoder option$"):
        load_run_config(None, ["model.arch=t5", "model.qk_norm=true"])
    with pytest.raises(TestbedError, match="already registered"):
        arch.register(arch.get_arch("t5"))
    with pytest.raises(TestbedError, match="finetune_format='prefix'"):
        dataclasses.replace(arch.get_arch("decoder"), finetune_format="prefix")


def test_a_checkpoint_reads_as_the_architecture_that_loads_it():
    t5, decoder = arch.checkpoint_arch({"is_encoder_decoder": True}), arch.checkpoint_arch({"model_type": "gpt2"})
    assert (t5.name, decoder.name) == ("t5", "decoder")
    assert (detect_backend({"is_encoder_decoder": True}), detect_backend({})) == ("seq2seq", "causal")
    assert (t5.auto_model().__name__, decoder.auto_model().__name__) == (
        "AutoModelForSeq2SeqLM",
        "AutoModelForCausalLM",
    )
    assert (t5.finetune_format, decoder.finetune_format) == ("seq2seq", "concat")


def test_one_registry_entry_is_all_a_new_architecture_needs(monkeypatch, tmp_path):
    archs = Registry("architecture", error=TestbedError)
    for name, spec in arch.ARCHS.items():
        archs.register(name, spec)
    monkeypatch.setattr(arch, "ARCHS", archs)  # a private copy: the real registry is left as it was

    arch.register(dataclasses.replace(arch.get_arch("decoder"), name="toy", run_prefix="toy"))

    config = load_run_config(None, ["model.arch=toy", "model.size=s2", "model.qk_norm=true", f"out_dir={tmp_path}"])
    decoder = load_run_config(None, ["model.size=s2", "model.qk_norm=true", f"out_dir={tmp_path}"])
    assert plan_run(config) == plan_run(decoder)
    assert model_config(config).to_dict() == model_config(decoder).to_dict()
    assert run_id(config) == "toy-s2-syn_en-m20-seed0"
    wsd = load_run_config(None, ["model.arch=toy", "model.size=s2", "train.schedule=wsd", f"out_dir={tmp_path}"])
    assert trunk_dir(wsd, plan_run(wsd), tmp_path / "adhoc" / run_id(wsd)).name.startswith("toy-s2-syn_en-seed0-")
    assert expected_mfu("h100", config) == 0.40  # nothing measured for it: the assumed share
    with pytest.raises(TestbedError, match=r"known architectures: decoder, t5, toy$"):
        load_run_config(None, ["model.arch=toyy"])
    assert Path(tmp_path).is_dir() and not any(tmp_path.iterdir())  # planning wrote nothing
