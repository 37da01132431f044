"""Pre-tokenized shards: each (source split, tokenizer) is tokenized once and shared by every run.

A cache entry is the directory `<cache_root>/tokens/<key>/`, where the key hashes the split's content
definition (`readers.definition`: file digests, or a hub dataset id and revision, or a synthetic
language and seed) together with the tokenizer's key, so renaming a source keeps its cache and editing a
file invalidates it. Inside:

    00000.npy, 00001.npy, ...  token ids of BLOCK_DOCS documents each, every document followed by EOS
                               (documents are packed back to back with a separator), memory-mapped on read
    index.json                 per shard its documents and tokens, and whether the source has ended

Shards are written under a temporary name and renamed, so a killed process never leaves half a shard
and concurrent writers (pytest workers, runs of a sweep) produce the same files. The index is a summary
for people and tools, rebuilt from the shards as they are read; a shard with fewer than BLOCK_DOCS
documents is the last one.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterator

import numpy as np

from testbed.data import readers
from testbed.data.sources import BLOCK_DOCS, Source
from testbed.errors import TestbedError
from testbed.io import atomic_write
from testbed.paths import cache_root

FORMAT = 1  # bump when the shard layout changes: part of the key


class ShardCache:
    """The token shards of one source split under one tokenizer, tokenized on first use."""

    def __init__(self, source: Source, split: str, tokenizer, tokenizer_key: str, world_seed: int):
        self.source, self.split, self.tokenizer, self.world_seed = source, split, tokenizer, world_seed
        self.definition = readers.definition(source, split, world_seed)
        spec = {"format": FORMAT, "source": self.definition, "tokenizer": tokenizer_key, "docs": BLOCK_DOCS}
        self.key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
        self.dir = cache_root() / "tokens" / self.key
        self.tokenizer_key = tokenizer_key
        self.eos = tokenizer.eos_token_id
        self.dtype = np.uint16 if len(tokenizer) <= 2**16 else np.uint32
        self.entries: list[dict] = []  # {"docs", "tokens"} of shards 0, 1, ... read so far
        # an open document iterator (local and hub sources are read sequentially)
        self._docs: Iterator[str] | None = None
        self._next_doc = 0

    @property
    def complete(self) -> bool:
        return bool(self.entries) and self.entries[-1]["docs"] < BLOCK_DOCS

    def shard(self, index: int) -> np.ndarray | None:
        """Shard `index` (read in order from 0), memory-mapped; None past the end of a finite source."""
        if index != len(self.entries):
            raise ValueError(f"shards are read in order: asked for {index}, next is {len(self.entries)}")
        if self.complete:
            return None
        path = self.dir / f"{index:05d}.npy"
        if path.is_file():
            tokens = np.load(path, mmap_mode="r")
            self.entries.append({"docs": int(np.count_nonzero(tokens == self.eos)), "tokens": len(tokens)})
            return tokens
        tokens, n_docs = self._tokenize(index)
        atomic_write(path, lambda handle: np.save(handle, tokens), binary=True)
        self.entries.append({"docs": n_docs, "tokens": len(tokens)})
        self._write_index()
        return np.load(path, mmap_mode="r")

    def _tokenize(self, index: int) -> tuple[np.ndarray, int]:
        first = index * BLOCK_DOCS
        if self._docs is None or self._next_doc != first:
            self._docs = readers.documents(self.source, self.split, self.world_seed, start=first)
            self._next_doc = first
        docs = list(itertools.islice(self._docs, BLOCK_DOCS))
        self._next_doc += len(docs)
        if not docs and index == 0:
            raise TestbedError(
                f"{self.source.where}: the {self.split} split has no documents{_files_note(self.source, self.split)}"
            )
        # split_special_tokens: a literal "<|endoftext|>" in a text stays text, so EOS only separates.
        ids = self.tokenizer(docs, split_special_tokens=True)["input_ids"] if docs else []
        tokens = np.fromiter(
            itertools.chain.from_iterable((*doc, self.eos) for doc in ids),
            dtype=self.dtype,
            count=sum(len(doc) + 1 for doc in ids),
        )
        return tokens, len(docs)

    def _write_index(self) -> None:
        index_path = self.dir / "index.json"
        try:
            known = len(json.loads(index_path.read_text())["shards"])
        except (OSError, ValueError, KeyError):
            known = 0
        if known > len(self.entries):  # another process has seen further: keep its summary
            return
        index = {
            "format": FORMAT,
            "source": self.source.name,
            "definition": self.definition,
            "split": self.split,
            "tokenizer": self.tokenizer_key,
            "dtype": np.dtype(self.dtype).name,
            "eos": self.eos,
            "docs_per_shard": BLOCK_DOCS,
            "shards": [{"file": f"{i:05d}.npy", **entry} for i, entry in enumerate(self.entries)],
            "complete": self.complete,
        }
        if self.complete:
            index.update(documents=sum(e["docs"] for e in self.entries), tokens=sum(e["tokens"] for e in self.entries))
        atomic_write(index_path, lambda handle: handle.write(json.dumps(index, indent=1).encode()), binary=True)

    def documents(self) -> int:
        return sum(e["docs"] for e in self.entries)


def _files_note(source: Source, split: str) -> str:
    if source.kind != "local":
        return ""
    return f" ({', '.join(str(p) for p in readers.local_files(source, split))})"
