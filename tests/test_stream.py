"""Mixture batches: exact token budget, realised shares, and a cursor that resumes the same stream."""

import json

import torch

from testbed.data.sources import known_sources
from testbed.data.stream import MixtureBatcher, TokenStream
from testbed.data.tokenizer import load_tokenizer, tokenizer_key


def _batcher(weights, total_tokens, seq_len=32, batch_size=8):
    tokenizer = load_tokenizer(512, 0)
    key = tokenizer_key(512, 0)
    streams = {n: TokenStream(known_sources()[n], "train", tokenizer, key, 0) for n in weights}
    return MixtureBatcher(streams, weights, seq_len, batch_size, total_tokens)


def test_budget_is_exact_and_shares_match_weights():
    weights = {"syn_en": 0.7, "syn_fr": 0.3}
    batcher = _batcher(weights, total_tokens=10_001)
    counted = 0
    while True:
        try:
            _, labels = batcher.next_batch()
        except StopIteration:
            break
        counted += int((labels != -100).sum())
    assert counted == 10_001
    seen = batcher.tokens_by_source()
    assert sum(seen.values()) == 10_001
    rows = batcher.rows_drawn
    assert abs(rows["syn_en"] - 0.7 * sum(rows.values())) <= 1


def test_realised_shares_stay_within_one_row_of_the_weights_at_every_step():
    weights = {"syn_en": 0.5, "syn_fr": 0.3, "syn_de": 0.2}
    batcher = _batcher(weights, total_tokens=32 * 7 * 20 + 5, batch_size=7)
    for _ in range(20):
        batcher.next_batch()
        drawn = sum(batcher.rows_drawn.values())
        assert all(abs(batcher.rows_drawn[n] - w * drawn) < 1 for n, w in weights.items())
    seen = batcher.tokens_by_source()
    assert all(abs(seen[n] / sum(seen.values()) - w) <= 32 / sum(seen.values()) for n, w in weights.items())


def test_cursor_resumes_the_same_batches():
    weights = {"syn_en": 0.5, "syn_de": 0.5}
    straight = _batcher(weights, 20_000)
    batches = [straight.next_batch()[0] for _ in range(6)]
    first = _batcher(weights, 20_000)
    for _ in range(3):
        first.next_batch()
    resumed = _batcher(weights, 20_000)
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))  # the cursor is plain data
    for expected in batches[3:]:
        assert torch.equal(resumed.next_batch()[0], expected)


def test_rows_follow_the_text():
    tokenizer = load_tokenizer(512, 0)
    stream = TokenStream(known_sources()["syn_en"], "valid", tokenizer, tokenizer_key(512, 0), 0)
    text = tokenizer.decode(stream.window(0, 200).tolist())
    from testbed.data.synthetic import documents

    assert text.startswith(documents("syn_en", "valid", 1)[0][:50])
