"""A byte-level BPE tokenizer trained locally with `tokenizers`, shared by every run of a sweep.

It is learned from a named tokenizer corpus (configs/data: `tokenizers:`, e.g. the four synthetic
languages, or the four real ones) once per (corpus content, vocabulary size, world seed), so the
validation losses of different mixtures are measured in the same units, and cached on disk.
"""

from __future__ import annotations

import hashlib
import itertools
import json

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from testbed.io import atomic_dir
from testbed.paths import cache_root

EOS = "<|endoftext|>"


def tokenizer_key(vocab_size: int, world_seed: int, corpus: str = "synthetic") -> str:
    """A hash of what the tokenizer is learned from: the corpus's content, the vocabulary, the seed."""
    from testbed.data import readers
    from testbed.data.sources import known_sources, tokenizer_corpus

    spec = tokenizer_corpus(corpus)
    sources = known_sources()
    content = {name: readers.definition(sources[name], "train", world_seed) for name in spec.sources}
    key = {"sources": content, "docs": spec.docs_per_source, "vocab": vocab_size, "seed": world_seed}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


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


def load_tokenizer(vocab_size: int, world_seed: int, corpus: str = "synthetic") -> PreTrainedTokenizerFast:
    """The tokenizer of a corpus, trained on first use and then read from the cache."""
    from testbed.data import readers
    from testbed.data.sources import known_sources, tokenizer_corpus

    target = cache_root() / "tokenizers" / tokenizer_key(vocab_size, world_seed, corpus)
    if not (target / "tokenizer.json").is_file():
        spec = tokenizer_corpus(corpus)
        texts = [
            doc
            for name in spec.sources
            for doc in itertools.islice(
                readers.documents(known_sources()[name], "train", world_seed), spec.docs_per_source
            )
        ]
        tokenizer = train_tokenizer(texts, vocab_size)
        atomic_dir(target, tokenizer.save_pretrained, replace=False)  # another process's, if first: identical
    return PreTrainedTokenizerFast.from_pretrained(target)
