"""T5: span corruption's sentinel structure, sentinels in the tokenizer, a falling loss, exact resume, reload."""

import numpy as np
import pytest
import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from testbed.checkpoint import list_steps, step_dir
from testbed.data.span_corruption import (
    SENTINEL,
    SpanCorruption,
    add_sentinels,
    corrupt_rows,
    noise_layout,
    noise_masks,
)
from testbed.data.tokenizer import load_tokenizer
from testbed.ladder import plan_run
from testbed.preempt import Preempted
from testbed.resolve import load_run_config
from testbed.results import read_rows
from testbed.train import train


def noise_mask(length: int, rng: np.random.Generator) -> np.ndarray:
    """The noise mask of one row."""
    return noise_masks(1, length, rng)[0]


def corrupt(tokens: np.ndarray, mask: np.ndarray, sentinels: list[int], eos: int) -> tuple[np.ndarray, np.ndarray]:
    """(encoder input, target) of one row given its noise mask (which starts with non-noise, as drawn)."""
    encoder, target = corrupt_rows(tokens[None], mask[None], sentinels, eos)
    return encoder[0], target[0]


T5 = ["model.arch=t5", "model.size=s1", "train.multiplier=2", "data.validation=[syn_en]", "data.val_tokens=1024"]


@pytest.mark.parametrize("length", [128, 40, 7])
def test_span_corruption_has_t5s_sentinel_structure(length):
    sentinels = list(range(1000, 1064))
    tokens = np.arange(10, 10 + length)
    for seed in range(20):
        mask = noise_mask(length, np.random.default_rng(seed))
        noise, spans = noise_layout(length)
        assert mask.sum() == noise == round(0.15 * length) or length == 7
        assert not mask[0]  # non-noise first, as T5 draws it
        starts = np.flatnonzero(mask & ~np.r_[False, mask[:-1]])
        assert len(starts) == spans
        encoder, target = corrupt(tokens, mask, sentinels, eos=0)
        assert encoder[-1] == 0 and target[-1] == 0
        # each span is replaced by the next sentinel in the encoder, and the target lists the sentinels in
        # the same order, each followed by the tokens it hides
        assert [t for t in encoder if t >= 1000] == [t for t in target if t >= 1000] == sentinels[:spans]
        assert len(encoder) == length - noise + spans + 1 and len(target) == noise + spans + 1
        hidden = {}
        for piece in np.split(target[:-1], np.flatnonzero(target[:-1] >= 1000))[1:]:
            hidden[int(piece[0])] = list(piece[1:])
        restored = [t for tok in encoder[:-1] for t in (hidden[int(tok)] if tok >= 1000 else [int(tok)])]
        assert restored == list(tokens)
    if length == 128:  # spans of mean length 3
        assert noise_layout(128) == (19, 6)
    masks = noise_masks(200, length, np.random.default_rng(0))  # a batch's rows are drawn together
    noise, spans = noise_layout(length)
    assert (masks.sum(axis=1) == noise).all() and not masks[:, 0].any()
    assert ((masks & ~np.pad(masks[:, :-1], ((0, 0), (1, 0)))).sum(axis=1) == spans).all()
    assert len({row.tobytes() for row in masks}) > 100 or length == 7  # each row its own layout


def test_batches_pad_short_rows_and_shift_the_decoder_input():
    spans = SpanCorruption(sentinels=[500, 501, 502, 503, 504, 505], eos=0, pad=0)
    inputs = torch.randint(1, 400, (3, 128))
    labels = inputs.clone()
    labels[-1, 60:] = -100  # the budget's last row holds only 60 tokens
    batch = spans.batch(inputs, labels, np.random.default_rng(0))
    assert batch["input_ids"].shape == (3, 128 - 19 + 6 + 1) and batch["labels"].shape == (3, 19 + 6 + 1)
    assert batch["attention_mask"][-1].sum() == 60 - 9 + 3 + 1 and batch["attention_mask"][0].all()
    assert (batch["labels"][-1] == -100).sum() == 26 - (9 + 3 + 1)
    labelled = batch["labels"] != -100
    assert torch.equal(batch["decoder_input_ids"][:, 1:][labelled[:, 1:]], batch["labels"][:, :-1][labelled[:, 1:]])
    assert (batch["decoder_input_ids"][:, 0] == 0).all()
    again = spans.batch(inputs, labels, np.random.default_rng(0))
    assert all(torch.equal(batch[k], again[k]) for k in batch)  # the seed alone decides the layout


def test_sentinels_extend_the_tokenizer_once():
    tokenizer = load_tokenizer(512, 0)
    base = len(tokenizer)
    ids = add_sentinels(tokenizer, 6)
    assert ids == list(range(base, base + 6)) and add_sentinels(tokenizer, 6) == ids and len(tokenizer) == base + 6
    assert tokenizer.convert_ids_to_tokens(ids[2]) == SENTINEL.format(2)
    assert tokenizer(f"a{SENTINEL.format(3)}b").input_ids.count(ids[3]) == 1


def test_t5_learns_reloads_and_resumes_exactly(runs_dir, monkeypatch):
    config = load_run_config(None, [*T5, f"out_dir={runs_dir / 'a'}"])
    plan = plan_run(config)
    run_dir = train(config, progress=False)
    rows = read_rows(run_dir)
    val = {r["step"]: r["value"] for r in rows if r["kind"] == "val_loss"}
    assert val[plan.steps] < val[plan.checkpoint_steps[0]] - 0.5  # span-corruption loss falls
    assert val[plan.checkpoint_steps[0]] < np.log(512) + 1  # from ~ln(vocab): the head's init is fixed
    assert sum(r["value"] for r in rows if r["metric"] == "tokens" and r["final"]) == plan.tokens

    # The export reloads through the Auto classes with identical logits, and its tokenizer has the sentinels.
    hf = step_dir(run_dir / "hf", plan.steps)
    model = AutoModelForSeq2SeqLM.from_pretrained(hf).eval()
    tokenizer = AutoTokenizer.from_pretrained(hf)
    assert len(tokenizer) <= model.config.vocab_size and SENTINEL.format(5) in tokenizer.get_vocab()
    assert model.lm_head.weight is not model.shared.weight  # v1.1: untied
    state = torch.load(step_dir(run_dir / "ckpt", plan.steps) / "state.pt", weights_only=False)
    reference = type(model)(model.config).eval()
    reference.lm_head.weight = torch.nn.Parameter(reference.lm_head.weight.detach().clone())
    reference.load_state_dict(state["model"])
    ids = tokenizer(f"Ana lives {SENTINEL.format(0)} city.", return_tensors="pt").input_ids
    decoder = torch.tensor([[0, tokenizer.convert_tokens_to_ids(SENTINEL.format(0))]])
    with torch.no_grad():
        assert torch.equal(
            model(input_ids=ids, decoder_input_ids=decoder).logits,
            reference(input_ids=ids, decoder_input_ids=decoder).logits,
        )

    # SIGTERM mid-run: a checkpoint at that step, then a resume that ends where the straight run did.
    other = load_run_config(None, [*T5, f"out_dir={runs_dir / 'b'}"])
    monkeypatch.setenv("TESTBED_INJECT_SIGTERM", f"{run_dir.name}@7")
    with pytest.raises(Preempted, match="step 7"):
        train(other, progress=False)
    resumed_dir = runs_dir / "b" / "adhoc" / run_dir.name
    assert list_steps(resumed_dir / "ckpt") == [7] and not (resumed_dir / "DONE").exists()
    train(other, progress=False)
    resumed = torch.load(step_dir(resumed_dir / "ckpt", plan.steps) / "state.pt", weights_only=False)
    for name, tensor in state["model"].items():
        assert torch.equal(tensor, resumed["model"][name]), name
