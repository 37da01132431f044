"""Token streams over cached blocks, and the mixture batcher with an exact, resumable cursor.

A source's split is one long stream: documents joined by EOS, tokenized block by block and cached
as .npy files. Training rows are windows of seq_len + 1 tokens taken at stride seq_len, so every
stream token is predicted once. Rows come from the mixture's sources by largest deficit, which is
deterministic and keeps the realised shares within one row of the weights; the cursor is just the
number of rows drawn from each source.
"""

from __future__ import annotations

import math
import os
import tempfile

import numpy as np
import torch

from testbed.data.sources import Source, block_documents
from testbed.data.tokenizer import cache_root


class TokenStream:
    """The tokens of one source's split, grown on demand from cached blocks."""

    def __init__(self, source: Source, split: str, tokenizer, tokenizer_key: str, world_seed: int):
        self.source, self.split, self.tokenizer, self.world_seed = source, split, tokenizer, world_seed
        self.dir = cache_root() / "tokens" / tokenizer_key / source.name
        self.blocks: list[np.ndarray] = []

    def __len__(self) -> int:
        return sum(len(b) for b in self.blocks)

    def _block(self, index: int) -> np.ndarray:
        path = self.dir / f"{self.split}-{self.world_seed}-{index:05d}.npy"
        if not path.is_file():
            docs = block_documents(self.source, self.split, index, self.world_seed)
            eos = self.tokenizer.eos_token_id
            ids = [tok for doc in self.tokenizer(docs)["input_ids"] for tok in (*doc, eos)]
            self.dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.dir, suffix=".npy")
            with os.fdopen(fd, "wb") as handle:
                np.save(handle, np.asarray(ids, dtype=np.uint16 if len(self.tokenizer) < 2**16 else np.uint32))
            os.replace(tmp, path)
        return np.load(path, mmap_mode="r")

    def ensure(self, n_tokens: int) -> None:
        while len(self) < n_tokens:
            self.blocks.append(self._block(len(self.blocks)))

    def window(self, start: int, length: int) -> np.ndarray:
        self.ensure(start + length)
        out, offset = [], 0
        for block in self.blocks:
            lo, hi = max(start - offset, 0), min(start + length - offset, len(block))
            if lo < hi:
                out.append(block[lo:hi])
            offset += len(block)
            if offset >= start + length:
                break
        return np.concatenate(out).astype(np.int64)


def rows_tensor(stream: TokenStream, first_row: int, n_rows: int, seq_len: int) -> torch.Tensor:
    """Rows [first_row, first_row + n_rows) of a stream as (n_rows, seq_len + 1) token ids."""
    flat = stream.window(first_row * seq_len, n_rows * seq_len + 1)
    rows = np.lib.stride_tricks.sliding_window_view(flat, seq_len + 1)[::seq_len]
    return torch.from_numpy(rows.copy())


class MixtureBatcher:
    """Batches of a token budget drawn from weighted sources; `state_dict` is the data cursor."""

    def __init__(self, streams: dict[str, TokenStream], weights: dict[str, float], seq_len: int,
                 batch_size: int, total_tokens: int):
        self.streams, self.weights = streams, weights
        self.seq_len, self.batch_size, self.total_tokens = seq_len, batch_size, total_tokens
        self.total_rows = math.ceil(total_tokens / seq_len)
        self.rows_drawn = {name: 0 for name in weights}
        self.last_source: str | None = None

    def prefetch(self) -> None:
        """Tokenize (or read from the cache) everything the budget needs, before training starts."""
        for name, weight in self.weights.items():
            if weight > 0:
                self.streams[name].ensure((math.ceil(weight * self.total_rows) + 2) * self.seq_len + 1)

    def _next_source(self, drawn_total: int) -> str:
        return max(self.weights, key=lambda n: self.weights[n] * (drawn_total + 1) - self.rows_drawn[n])

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_ids, labels) for the next step; labels past the budget are -100 (ignored)."""
        drawn_total = sum(self.rows_drawn.values())
        n_rows = min(self.batch_size, self.total_rows - drawn_total)
        if n_rows <= 0:
            raise StopIteration("token budget exhausted")
        rows = []
        for i in range(n_rows):
            name = self._next_source(drawn_total + i)
            rows.append(rows_tensor(self.streams[name], self.rows_drawn[name], 1, self.seq_len))
            self.rows_drawn[name] += 1
            self.last_source = name
        batch = torch.cat(rows)
        inputs, labels = batch[:, :-1], batch[:, 1:].clone()
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
            counts[self.last_source] -= overflow
        return counts
