"""Multiple-choice cloze items from held-out real text: which word comes next?

An item is a prefix of a test-split document cut before one of its words, the true word, and three
distractor words of about the same frequency drawn from the same text (within FREQUENCY_WINDOW places
of its frequency rank, as many above as below it on average: the true word is the most frequent of
the four in a quarter of the items), so guessing by word frequency stays near chance (1/4) and only a
model of the context gets above it:

    {"query": "Distance in pixels before movement will be", "choices": ["shown", "recognized", ...], "gold": 1}

Targets are lower-case alphabetic words of at least MIN_LETTERS letters, other than the three most
frequent ones (which would be the most frequent choice of every item), with at least MIN_CONTEXT
words before them; the query keeps at most MAX_CONTEXT words of the prefix. Items are spread over
documents (every document's first item before any document's second) and drawn with a seeded
generator, so the same text and seed give the same items. Only the split given (the test split) is
read: no item can come from training text.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

from testbed.data.synthetic_world import shuffled, stream
from testbed.errors import TestbedError

CHOICES = 4
MIN_LETTERS = 3
MIN_CONTEXT = 4  # words before the target
MAX_CONTEXT = 20  # words of the prefix kept in the query (the CPU ladder reads 64 tokens)
FREQUENCY_WINDOW = 20  # distractors come from this many words on either side of the target's frequency rank
TARGET = re.compile(rf"[a-z]{{{MIN_LETTERS},}}")
WORD = re.compile(r"\S+")


def cloze_items(texts: Iterable[str], n_items: int, seed: int = 0, where: str = "text") -> list[dict]:
    """`n_items` items {"query", "choices", "gold"} from `texts`, deterministic in (texts, n_items, seed)."""
    texts = list(texts)
    docs = [[(m.start(), m.group()) for m in WORD.finditer(text)] for text in texts]
    counts = Counter(word for doc in docs for _, word in doc if TARGET.fullmatch(word))
    vocabulary = sorted(counts, key=lambda w: (-counts[w], w))
    rank = {word: i for i, word in enumerate(vocabulary)}
    rng = stream(seed, "cloze")
    positions = [
        shuffled(rng, [i for i in range(MIN_CONTEXT, len(doc)) if rank.get(doc[i][1], -1) >= CHOICES - 1])
        for doc in docs
    ]
    order = shuffled(rng, list(range(len(docs))))
    deepest = max(map(len, positions), default=0)
    candidates = [(d, positions[d][k]) for k in range(deepest) for d in order if k < len(positions[d])]
    if len(vocabulary) < CHOICES or len(candidates) < n_items:
        raise TestbedError(
            f"{where}: {len(candidates)} cloze targets in {len(docs)} documents, {n_items} items wanted "
            f"(targets: lower-case words of {MIN_LETTERS}+ letters after {MIN_CONTEXT}+ words)"
        )
    items, seen = [], set()
    for d, i in candidates:
        start = docs[d][max(0, i - MAX_CONTEXT)][0]
        gold_at, word = docs[d][i]
        query = texts[d][start:gold_at].rstrip()
        if (query, word) in seen:
            continue
        seen.add((query, word))
        # the gold's place in the choices' frequency order is uniform: p distractors a little more frequent, the
        # rest a little less (fewer more frequent ones exist near the top of the vocabulary)
        r = rank[word]
        above, below = vocabulary[max(0, r - FREQUENCY_WINDOW) : r], vocabulary[r + 1 : r + 1 + FREQUENCY_WINDOW]
        p = min(int(rng.random() * CHOICES), len(above), CHOICES - 1)
        p = max(p, CHOICES - 1 - len(below))
        distractors = shuffled(rng, above)[:p] + shuffled(rng, below)[: CHOICES - 1 - p]
        choices = shuffled(rng, [word, *distractors])
        items.append({"query": query, "choices": choices, "gold": choices.index(word)})
        if len(items) == n_items:
            return items
    raise TestbedError(f"{where}: only {len(items)} distinct cloze items, {n_items} wanted")
