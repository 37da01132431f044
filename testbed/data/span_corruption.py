"""T5's span-corruption objective over rows of raw tokens (Raffel et al. 2020, section 3.1.4).

15% of a row's tokens, in spans of mean length 3, are dropped from the encoder input; each span is replaced
by one sentinel token, and the target lists the sentinels each followed by the tokens it hides, then EOS:

    raw      a b c d e f g h          (noise: c d, g)
    encoder  a b <X0> e f <X1> h EOS
    target   <X0> c d <X1> g EOS

The noise layout follows T5's `random_spans_noise_mask`: the noise and the non-noise tokens are each cut
into the same number of random non-empty segments and interleaved, non-noise first. Layouts are drawn from
a generator seeded by (seed, step), never from global RNG state, so a resumed run corrupts exactly as an
uninterrupted one.
"""

from __future__ import annotations

import numpy as np
import torch

SENTINEL = "<extra_id_{}>"
NOISE_DENSITY = 0.15
MEAN_SPAN = 3.0
VALID_SEED = 1234  # validation rows are corrupted the same way for every run


def noise_layout(length: int, density: float = NOISE_DENSITY, mean_span: float = MEAN_SPAN) -> tuple[int, int]:
    """(noise tokens, noise spans) of a row of `length` tokens."""
    noise = min(max(round(length * density), 1), length - 1)
    return noise, max(round(noise / mean_span), 1)


def sentinel_count(context: int) -> int:
    """Sentinels needed by the longest row: one per noise span."""
    return noise_layout(context)[1]


def add_sentinels(tokenizer, count: int) -> list[int]:
    """Add <extra_id_0> ... as special tokens (idempotent) and return their ids, in span order.

    The tokenizer is extended in memory and saved with every checkpoint, so the exported tokenizer and the
    model's vocabulary agree: sentinel ids lie below the model's vocab_size (the ladder leaves room).
    """
    names = [SENTINEL.format(i) for i in range(count)]
    tokenizer.add_special_tokens({"additional_special_tokens": names}, replace_extra_special_tokens=False)
    return tokenizer.convert_tokens_to_ids(names)


def _segments(n_items: int, n_segments: int, rng: np.random.Generator) -> np.ndarray:
    """Lengths of a random partition of n_items into n_segments non-empty segments."""
    first = np.concatenate([[False], rng.permutation(n_items - 1) < n_segments - 1])
    return np.bincount(np.cumsum(first), minlength=n_segments)


def noise_mask(length: int, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask of the noise tokens of a row, as T5's random_spans_noise_mask draws it."""
    noise, spans = noise_layout(length)
    lengths = np.stack([_segments(length - noise, spans, rng), _segments(noise, spans, rng)], axis=1).ravel()
    return np.repeat(np.tile([False, True], spans), lengths)


def _squeeze(tokens: np.ndarray, hidden: np.ndarray, sentinels: list[int], eos: int) -> np.ndarray:
    """The tokens not hidden, each run of hidden tokens replaced by the next sentinel, then EOS."""
    starts = hidden & ~np.concatenate([[False], hidden[:-1]])
    sentinel = np.asarray(sentinels)[np.maximum(np.cumsum(starts) - 1, 0)]
    return np.append(np.where(starts, sentinel, tokens)[starts | ~hidden], eos)


def corrupt(tokens: np.ndarray, mask: np.ndarray, sentinels: list[int], eos: int) -> tuple[np.ndarray, np.ndarray]:
    """(encoder input, target) of one row given its noise mask (which starts with non-noise, as drawn)."""
    return _squeeze(tokens, mask, sentinels, eos), _squeeze(tokens, ~mask, sentinels, eos)


class SpanCorruption:
    """Turns decoder-style (inputs, labels) rows into T5 batches: the raw tokens are the labelled inputs."""

    def __init__(self, sentinels: list[int], eos: int, pad: int = 0):
        self.sentinels, self.eos, self.pad = sentinels, eos, pad

    def batch(self, inputs: torch.Tensor, labels: torch.Tensor, rng: np.random.Generator) -> dict:
        """Model keyword arguments plus labels for the rows; rows cut short by the budget are padded."""
        valid = (labels != -100).sum(dim=1).tolist()
        raw = inputs.numpy()
        pairs = []
        for row, n in zip(raw, valid, strict=True):
            pairs.append(corrupt(row[:n], noise_mask(n, rng), self.sentinels, self.eos) if n >= 2 else
                         (np.array([self.eos]), np.array([self.eos])))
        return self.collate(pairs)

    def collate(self, pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict:
        n = len(pairs)
        enc_len, dec_len = max(len(e) for e, _ in pairs), max(len(t) for _, t in pairs)
        input_ids = torch.full((n, enc_len), self.pad, dtype=torch.long)
        attention_mask = torch.zeros((n, enc_len), dtype=torch.long)
        decoder_input_ids = torch.full((n, dec_len), self.pad, dtype=torch.long)
        labels = torch.full((n, dec_len), -100, dtype=torch.long)
        for i, (enc, tgt) in enumerate(pairs):
            input_ids[i, : len(enc)] = torch.from_numpy(enc)
            attention_mask[i, : len(enc)] = 1
            labels[i, : len(tgt)] = torch.from_numpy(tgt)
            decoder_input_ids[i, 1 : len(tgt)] = labels[i, : len(tgt) - 1]  # shifted right; starts with pad
        return {"input_ids": input_ids, "attention_mask": attention_mask, "decoder_input_ids": decoder_input_ids,
                "labels": labels}
