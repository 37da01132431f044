"""The token counts of the docs_en corpus, recorded in its manifest.

Every split of the registered source `docs_en` is tokenized with the tokenizer a run on it gets (the
`docs` corpus of configs/data/real.yaml, at the micro ladder's vocabulary, 512, by default) into the shared shard
cache, so that training runs later read the same shards. Counted: tokens per split (with the EOS after each
document, as a run sees them), and the distinct token ids used. A manifest that already holds the counts of
this corpus and tokenizer is left alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from testbed.data.docs import DEFAULT_OUT
from testbed.data.real import SPLITS
from testbed.errors import TestbedError
from testbed.io import write_json

SOURCE, TOKENIZER = "docs_en", "docs"
MICRO_VOCAB = 512  # configs/ladders/micro.yaml's vocab_size (read here without importing the ladder's torch)


def count_tokens(out_dir: Path = DEFAULT_OUT, vocab: int = MICRO_VOCAB, world_seed: int = 0) -> dict:
    """Tokenize every split of docs_en (cached) and write the counts into its manifest; returns it.

    Up to date, it returns at once: torch and transformers are imported only to count."""
    from testbed.data.sources import known_sources, tokenizer_corpus

    source = known_sources()[SOURCE]
    files = {Path(f).parent.resolve() for spec in source.splits.values() for f in spec.files}
    if files != {Path(out_dir).resolve()}:
        raise TestbedError(f"--out {out_dir}: token counts are for the registered docs_en, whose files are in {files}")
    manifest_path = Path(out_dir) / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    # what the counts depend on, cheap to compare (the tokenizer's key hashes every file of the corpus)
    basis = [manifest["fingerprint"], vocab, world_seed, tokenizer_corpus(TOKENIZER).docs_per_source]
    if manifest.get("tokens", {}).get("basis") == basis:
        return manifest
    from testbed.data.stream import TokenStream
    from testbed.data.tokenizer import load_tokenizer, tokenizer_key

    key = tokenizer_key(vocab, world_seed, TOKENIZER)
    tokenizer = load_tokenizer(vocab, world_seed, TOKENIZER)
    splits, used = {}, np.zeros(len(tokenizer), dtype=bool)
    for split in SPLITS:
        stream = TokenStream(source, split, tokenizer, key, world_seed)
        tokens = stream.total()
        for block in stream.blocks:
            used[np.unique(block)] = True
        splits[split] = {"tokens": tokens, "documents": stream.shards.documents()}
    manifest["tokens"] = {
        "tokenizer": f"{TOKENIZER} (byte-level BPE, vocabulary {vocab})",
        "tokenizer_key": key,
        "basis": basis,  # corpus fingerprint, vocabulary, world seed, tokenizer documents per source
        "splits": splits,
        "total": sum(s["tokens"] for s in splits.values()),
        "distinct_token_ids": int(used.sum()),
    }
    write_json(manifest_path, manifest)
    return manifest
