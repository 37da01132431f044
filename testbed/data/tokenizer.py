"""A byte-level BPE tokenizer trained locally with `tokenizers`, shared by every run of a world.

It is trained once per (sources, vocabulary size, world seed) on a sample of every registered source,
so validation losses of different mixtures are measured in the same units, and cached on disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from testbed.data.sources import block_documents, known_sources

EOS = "<|endoftext|>"
TRAINING_BLOCKS = 1  # blocks of documents per source used to learn the merges


def cache_root() -> Path:
    return Path(os.environ.get("TESTBED_CACHE", Path(__file__).resolve().parents[2] / ".cache" / "testbed"))


def tokenizer_key(vocab_size: int, world_seed: int) -> str:
    spec = {"sources": sorted(known_sources()), "vocab": vocab_size, "seed": world_seed, "blocks": TRAINING_BLOCKS}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def train_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],  # id 0: also the model's eos and pad id
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=EOS, pad_token=EOS)


def load_tokenizer(vocab_size: int, world_seed: int) -> PreTrainedTokenizerFast:
    """The world's tokenizer, trained on first use and then read from the cache."""
    target = cache_root() / "tokenizers" / tokenizer_key(vocab_size, world_seed)
    if not (target / "tokenizer.json").is_file():
        texts = [
            doc
            for source in known_sources().values()
            for block in range(TRAINING_BLOCKS)
            for doc in block_documents(source, "train", block, world_seed)
        ]
        tokenizer = train_tokenizer(texts, vocab_size)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=target.parent))
        tokenizer.save_pretrained(staging)
        try:
            staging.rename(target)
        except OSError:  # another process finished first: theirs is identical
            shutil.rmtree(staging)
    return PreTrainedTokenizerFast.from_pretrained(target)
