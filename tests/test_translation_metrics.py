"""BLEU on the words not copied from the source (bleu_noncopy, bleu2_noncopy) on hand-made sentences, its
paired-bootstrap gain, and the finetuning budget of a protocol: fixed steps, or epochs over the set."""

from __future__ import annotations

import pytest
import sacrebleu
from sacrebleu.metrics import BLEU

from testbed.errors import TestbedError
from testbed.translation.metrics import noncopy_strings, score
from testbed.translation.protocol import load_protocol
from testbed.translation.significance import metric_gain, paired_bleu_gain

SOURCES = ["Yesterday Nunkos Higes laughed in Penfal.", "Vairrol Gonlai has a goat."]
REFERENCES = ["Té Nunkos Higes laxchèxait mox Penfal.", "Vairrol Gonlai jeauseaurchaue net goat."]
HYPOTHESES = ["Té Nunkos Higes laxchèxait pou Penfal.", "Vairrol Gonlai ratjeaue net goat."]


def test_copied_words_are_dropped_from_both_sides():
    hyps, refs = noncopy_strings(HYPOTHESES, REFERENCES, SOURCES)
    # 13a splits "Penfal." into "Penfal ."; names, the shared "goat" and the source's "." all go
    assert refs == ["Té laxchèxait mox", "jeauseaurchaue net"]
    assert hyps == ["Té laxchèxait pou", "ratjeaue net"]


def test_noncopy_bleu_is_sacrebleu_on_the_stripped_strings():
    scores = score(HYPOTHESES, REFERENCES, SOURCES, None)
    stripped_h = ["Té laxchèxait pou", "ratjeaue net"]
    stripped_r = [["Té laxchèxait mox", "jeauseaurchaue net"]]
    assert scores["bleu_noncopy"][0] == pytest.approx(sacrebleu.corpus_bleu(stripped_h, stripped_r).score)
    bigram = BLEU(tokenize="none", max_ngram_order=2).corpus_score(stripped_h, stripped_r).score
    assert scores["bleu2_noncopy"][0] == pytest.approx(bigram)
    assert scores["bleu"][0] == pytest.approx(sacrebleu.corpus_bleu(HYPOTHESES, [REFERENCES]).score)
    # A model that copies every name and translates nothing gets no noncopy credit at all.
    copier = ["Nunkos Higes Penfal.", "Vairrol Gonlai goat."]
    copied = score(copier, REFERENCES, SOURCES, None, only=["bleu", "bleu2_noncopy"])
    assert copied["bleu2_noncopy"][0] == 0 and copied["bleu"][0] > 0 and set(copied) == {"bleu", "bleu2_noncopy"}


def test_noncopy_gain_is_the_paired_gain_on_the_stripped_strings():
    baseline = ["Té Nunkos Higes pou pou Penfal.", "Vairrol Gonlai x y goat."] * 10
    system, refs, srcs = HYPOTHESES * 10, REFERENCES * 10, SOURCES * 10
    gain = metric_gain("bleu2_noncopy_gain", srcs, refs, system, baseline, 200)
    s_h, s_r = noncopy_strings(system, refs, srcs)
    b_h = noncopy_strings(baseline, refs, srcs)[0]
    assert gain == paired_bleu_gain(s_h, b_h, s_r, 200, tokenize="none", order=2)
    expected = score(system, refs, srcs, None, ["bleu2_noncopy"])["bleu2_noncopy"][0]
    expected -= score(baseline, refs, srcs, None, ["bleu2_noncopy"])["bleu2_noncopy"][0]
    assert gain.value == pytest.approx(expected) and gain.value > 0
    assert metric_gain("bleu_gain", srcs, refs, system, baseline, 200) == paired_bleu_gain(system, baseline, refs, 200)


def test_epochs_give_steps_that_grow_with_the_finetuning_set():
    protocol = load_protocol("finetune_cpu_epochs")
    assert protocol.steps is None and protocol.epochs == 5
    assert protocol.train_steps(450) == 141  # ceil(5 x 450 / 16)
    assert protocol.train_steps(2270) == 710  # five times the set, about five times the steps
    fixed = load_protocol("finetune_cpu")
    assert fixed.train_steps(450) == fixed.train_steps(2270) == 150


@pytest.mark.parametrize(
    "body, message",
    [
        ("steps: 100\nepochs: 2\n", "steps=100, epochs=2.0: set exactly one of steps and epochs"),
        ("batch_size: 8\n", "steps=None, epochs=None: set exactly one of steps and epochs"),
        ("epochs: -1\n", "epochs=-1.0: must be a positive number"),
        ("steps: 0\n", "steps=0: must be a positive integer"),
    ],
)
def test_a_bad_budget_is_one_line_naming_file_key_and_value(tmp_path, body, message):
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    with pytest.raises(TestbedError) as err:
        load_protocol(path)
    assert str(err.value) == f"{path}: {message}"
