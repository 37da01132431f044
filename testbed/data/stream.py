"""Token streams over pre-tokenized shards, and the mixture batcher with an exact, resumable cursor.

A source's split is one long stream: documents joined by EOS, tokenized shard by shard and cached
(shards.py). Training rows are windows of seq_len + 1 tokens taken at stride seq_len, so every
stream token is predicted once and documents are packed across row boundaries. Rows come from the
mixture's sources by largest deficit, which is deterministic and keeps the realised shares within one
row of the weights; the cursor is just the number of rows drawn from each source. A finite source
smaller than what a run needs is an error that says how many epochs it would take (no silent repeats),
unless the run allows repeats (`data.allow_repeat`): then its stream starts over where it ends, and the
run's epochs (passes over its training text) say how often.
"""

from __future__ import annotations

import bisect
import contextlib
import math
import sys

import numpy as np
import torch

from testbed.data.shards import ShardCache
from testbed.data.sources import KINDS, Source
from testbed.errors import TestbedError


class CorpusTooSmall(TestbedError):
    """A finite source ran out before the tokens a run needs from it."""


class TokenStream:
    """The tokens of one source's split, grown on demand from cached shards."""

    def __init__(self, source: Source, split: str, tokenizer, tokenizer_key: str, world_seed: int):
        self.source, self.split, self.tokenizer, self.world_seed = source, split, tokenizer, world_seed
        self.shards = ShardCache(source, split, tokenizer, tokenizer_key, world_seed)
        self.dir = self.shards.dir
        self.blocks: list[np.ndarray] = []
        self.starts: list[int] = []  # stream offset of each block's first token
        self.n_tokens = 0
        self.repeat = False  # set by the batcher when the run allows repeats and the split is too small

    @property
    def finite(self) -> bool:
        """Whether the whole split can be tokenized to count it (files on disk; not generated, not streamed)."""
        return KINDS.get(self.source.kind).finite

    def total(self) -> int:
        """The tokens of the whole split (it is tokenized and cached to the end)."""
        if not self.shards.complete:
            with contextlib.suppress(CorpusTooSmall):
                self.ensure(sys.maxsize)
        return self.n_tokens

    def __len__(self) -> int:
        return self.n_tokens

    def ensure(self, n_tokens: int) -> None:
        """Read (or tokenize) shards until the stream holds `n_tokens`; CorpusTooSmall if it cannot (a
        repeating stream holds any number once it holds the whole split)."""
        while self.n_tokens < n_tokens and not (self.repeat and self.shards.complete):
            block = self.shards.shard(len(self.blocks))
            if block is None:
                raise CorpusTooSmall(
                    f"{self.source.where}: the {self.split} split holds {self.n_tokens:,} tokens "
                    f"({self.shards.documents():,} documents) but {n_tokens:,} are needed: "
                    f"{n_tokens / max(self.n_tokens, 1):.2f} epochs of it; lower the token budget or add text"
                )
            self.blocks.append(block)
            self.starts.append(self.n_tokens)
            self.n_tokens += len(block)

    def window(self, start: int, length: int) -> np.ndarray:
        """Tokens [start, start + length) of the stream, across shard boundaries (and, repeating, around
        the end of the split: token i of the stream is token i mod n_tokens of the split)."""
        self.ensure(start + length)
        if self.repeat and start + length > self.n_tokens:
            pieces = []
            while length > 0:
                offset = start % self.n_tokens
                take = min(length, self.n_tokens - offset)
                pieces.append(self._window(offset, take))
                start, length = start + take, length - take
            return np.concatenate(pieces)
        return self._window(start, length)

    def _window(self, start: int, length: int) -> np.ndarray:
        out = []
        for i in range(bisect.bisect_right(self.starts, start) - 1, len(self.blocks)):
            offset = self.starts[i]
            if offset >= start + length:
                break
            out.append(self.blocks[i][max(start - offset, 0) : start + length - offset])
        return np.concatenate(out).astype(np.int64)


def rows_tensor(stream: TokenStream, first_row: int, n_rows: int, seq_len: int) -> torch.Tensor:
    """Rows [first_row, first_row + n_rows) of a stream as (n_rows, seq_len + 1) token ids."""
    flat = stream.window(first_row * seq_len, n_rows * seq_len + 1)
    rows = np.lib.stride_tricks.sliding_window_view(flat, seq_len + 1)[::seq_len]
    return torch.from_numpy(rows.copy())


class MixtureBatcher:
    """Batches of a token budget drawn from weighted sources; `state_dict` is the data cursor."""

    def __init__(
        self,
        streams: dict[str, TokenStream],
        weights: dict[str, float],
        seq_len: int,
        batch_size: int,
        total_tokens: int,
        allow_repeat: bool = False,
    ):
        self.streams, self.weights = streams, weights
        self.seq_len, self.batch_size, self.total_tokens = seq_len, batch_size, total_tokens
        self.allow_repeat = allow_repeat
        self.total_rows = math.ceil(total_tokens / seq_len)
        self.rows_drawn = {name: 0 for name in weights}
        self.last_source: str | None = None
        self.epochs: float | None = None  # set by prefetch; None when no source is finite

    def prefetch(self) -> None:
        """Tokenize (or read from the cache) everything the budget needs, before training starts, and
        count the run's epochs.

        Largest deficit never draws more than ceil(weight * rows) rows from a source, so this is all
        the run will read; a source that cannot supply it fails here, before any training step, unless
        repeats are allowed. A finite source (files) is tokenized whole to know its size: the run's
        epochs are the most passes it makes over any finite source's train split (weight * budget /
        the split's tokens).
        """
        epochs = []
        for name, weight in self.weights.items():
            if weight > 0:
                stream = self.streams[name]
                need = math.ceil(weight * self.total_rows) * self.seq_len + 1
                try:
                    stream.ensure(need)
                except CorpusTooSmall as err:
                    if not self.allow_repeat:
                        raise CorpusTooSmall(
                            f"data.mixture.{name}={weight:g} of a {self.total_tokens:,}-token budget: {err} "
                            "(or set data.allow_repeat=true)"
                        ) from None
                    stream.repeat = True
                if stream.finite or stream.repeat:
                    epochs.append(weight * self.total_tokens / stream.total())
        self.epochs = max(epochs) if epochs else None

    def _next_source(self, drawn_total: int) -> str:
        return max(self.weights, key=lambda n: self.weights[n] * (drawn_total + 1) - self.rows_drawn[n])

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_ids, labels) for the next step; labels past the budget are -100 (ignored)."""
        drawn_total = sum(self.rows_drawn.values())
        n_rows = min(self.batch_size, self.total_rows - drawn_total)
        if n_rows <= 0:
            raise StopIteration("token budget exhausted")
        order = []
        for i in range(n_rows):
            name = self._next_source(drawn_total + i)
            order.append(name)
            self.rows_drawn[name] += 1
        self.last_source = order[-1]
        batch = np.empty((n_rows, self.seq_len + 1), dtype=np.int64)
        for name in dict.fromkeys(order):  # a source's rows of this batch are consecutive in its stream
            slots = [i for i, n in enumerate(order) if n == name]
            first = self.rows_drawn[name] - len(slots)
            flat = self.streams[name].window(first * self.seq_len, len(slots) * self.seq_len + 1)
            batch[slots] = np.lib.stride_tricks.sliding_window_view(flat, self.seq_len + 1)[:: self.seq_len]
        inputs, labels = torch.from_numpy(batch[:, :-1].copy()), torch.from_numpy(batch[:, 1:].copy())
        overflow = (drawn_total + n_rows) * self.seq_len - self.total_tokens
        if overflow > 0:  # the final row holds only what is left of the budget
            labels[-1, self.seq_len - overflow :] = -100
        return inputs, labels

    def state_dict(self) -> dict:
        return {"rows_drawn": dict(self.rows_drawn), "last_source": self.last_source}

    def load_state_dict(self, state: dict) -> None:
        self.rows_drawn = dict(state["rows_drawn"])
        self.last_source = state["last_source"]

    def tokens_by_source(self) -> dict[str, int]:
        """Training tokens drawn from each source so far (the final row counts only its budgeted part)."""
        counts = {n: r * self.seq_len for n, r in self.rows_drawn.items()}
        overflow = sum(self.rows_drawn.values()) * self.seq_len - self.total_tokens
        if overflow > 0:
            assert self.last_source is not None  # rows were drawn
            counts[self.last_source] -= overflow
        return counts
