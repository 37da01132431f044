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


def _segments(rows: int, n_items: int, n_segments: int, rng: np.random.Generator) -> np.ndarray:
    """(rows, n_segments) lengths: per row, a random partition of n_items into n_segments non-empty segments."""
    cuts = rng.random((rows, n_items - 1)).argsort(axis=1) < n_segments - 1  # a random subset of the cut points
    segment = np.cumsum(np.concatenate([np.zeros((rows, 1), dtype=bool), cuts], axis=1), axis=1, dtype=np.int64)
    segment += np.arange(rows)[:, None] * n_segments  # one bincount for all rows
    return np.bincount(segment.ravel(), minlength=rows * n_segments).reshape(rows, n_segments)


def noise_masks(rows: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """(rows, length) boolean masks of noise tokens, each drawn as T5's random_spans_noise_mask draws one."""
    noise, spans = noise_layout(length)
    lengths = np.stack([_segments(rows, length - noise, spans, rng), _segments(rows, noise, spans, rng)], axis=2)
    return np.repeat(np.tile([False, True], rows * spans), lengths.ravel()).reshape(rows, length)


def _squeeze(tokens: np.ndarray, hidden: np.ndarray, sentinels: list[int], eos: int) -> np.ndarray:
    """Per row, the tokens not hidden, each run of hidden tokens replaced by the next sentinel, then EOS.
    Rows of one call hide the same number of tokens in the same number of runs (one noise layout)."""
    starts = hidden & ~np.pad(hidden[:, :-1], ((0, 0), (1, 0)))
    sentinel = np.asarray(sentinels)[np.maximum(np.cumsum(starts, axis=1) - 1, 0)]
    kept = np.where(starts, sentinel, tokens)[starts | ~hidden].reshape(len(tokens), -1)
    return np.concatenate([kept, np.full((len(tokens), 1), eos, dtype=kept.dtype)], axis=1)


def corrupt_rows(
    tokens: np.ndarray, masks: np.ndarray, sentinels: list[int], eos: int
) -> tuple[np.ndarray, np.ndarray]:
    """(encoder inputs, targets) of rows of equal length given their noise masks (from `noise_masks`)."""
    return _squeeze(tokens, masks, sentinels, eos), _squeeze(tokens, ~masks, sentinels, eos)


class SpanCorruption:
    """Turns decoder-style (inputs, labels) rows into T5 batches: the raw tokens are the labelled inputs."""

    def __init__(self, sentinels: list[int], eos: int, pad: int = 0):
        self.sentinels, self.eos, self.pad = sentinels, eos, pad

    def batch(self, inputs: torch.Tensor, labels: torch.Tensor, rng: np.random.Generator) -> dict:
        """Model keyword arguments plus labels for the rows; rows cut short by the budget are padded."""
        valid = (labels.numpy() != -100).sum(axis=1)
        raw = inputs.numpy()
        groups = []
        for n in np.unique(valid):  # rows of one length share a noise layout: corrupted together
            rows = np.flatnonzero(valid == n)
            if n < 2:
                groups.append((rows, np.full((len(rows), 1), self.eos), np.full((len(rows), 1), self.eos)))
            else:
                masks = noise_masks(len(rows), int(n), rng)
                groups.append((rows, *corrupt_rows(raw[rows, :n], masks, self.sentinels, self.eos)))
        return self.collate(len(raw), groups)

    def collate(self, n: int, groups: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict:
        """One padded batch of `n` rows from groups of (row indices, encoder inputs, targets)."""
        enc_len, dec_len = max(e.shape[1] for _, e, _ in groups), max(t.shape[1] for _, _, t in groups)
        input_ids = np.full((n, enc_len), self.pad, dtype=np.int64)
        attention_mask = np.zeros((n, enc_len), dtype=np.int64)
        decoder_input_ids = np.full((n, dec_len), self.pad, dtype=np.int64)
        labels = np.full((n, dec_len), -100, dtype=np.int64)
        for rows, encoders, targets in groups:
            input_ids[rows, : encoders.shape[1]] = encoders
            attention_mask[rows, : encoders.shape[1]] = 1
            labels[rows, : targets.shape[1]] = targets
            decoder_input_ids[rows, 1 : targets.shape[1]] = targets[:, :-1]  # shifted right; starts with pad
        arrays = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "decoder_input_ids": decoder_input_ids,
            "labels": labels,
        }
        return {name: torch.from_numpy(array) for name, array in arrays.items()}
