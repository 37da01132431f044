"""Where a synthetic-world model's reducible loss lives (benchmarks/replication/, session 18): on each
validation document, the model's loss beyond the generator's exact one, by how often the corpus talks about
the document's person (rank 0 most, rank 2999 least; docs/synthetic_world.md).

For each run's final checkpoint and each of the first --docs documents of its dataset's valid split: the
document's first sentences that fit the run's context (its seq_len) after the EOS that precedes every document in the
stream; the model's nats on their tokens; the generator's nats for the same text
(synthetic_entropy.prefix_log_prob, exact). Their difference, the excess, is what the model has still to
learn there (>= 0 in expectation; it is the whole of the reducible loss, measured with the document's start
in view). Printed per band of person ranks, with each band's share of the documents and of the excess:

    python scripts/excess_by_rank.py RUN_DIR [RUN_DIR ...] [--docs 2000]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from testbed.checkpoint import list_steps, step_dir
from testbed.data.sources import known_sources, resolve_tokenizer
from testbed.data.stream import TokenStream, rows_tensor
from testbed.data.synthetic_entropy import prefix_log_prob, sentence_prob
from testbed.data.synthetic_language import build_language, resolve
from testbed.data.synthetic_world import (
    RELATIONS,
    CityFact,
    Encounter,
    Event,
    Fact,
    build_world,
    document_meanings,
    stream,
)
from testbed.data.tokenizer import tokenizer_key
from testbed.ladder import plan_run
from testbed.resolve import load_run_config
from testbed.rundir import RunDir

BANDS = ((0, 10), (10, 100), (100, 1000), (1000, 3000), (3000, 10**9))  # the last: a world's extra people
BATCH = 64


def kind(meaning) -> str:
    if isinstance(meaning, Fact):
        return f"fact: {meaning.relation}"
    return {CityFact: "a city's country", Event: "event", Encounter: "encounter"}[type(meaning)]


def prefixes(language: str, seed: int, n_docs: int, tokenizer, context: int, knobs: dict):
    """Per document: (person rank, token ids with the leading EOS, its sentences as (kind, first token, end
    token, the generator's nats)). The first sentence (who, and where they live) carries the person's draw
    and the chance that the document is at least this long."""
    realise = build_language(resolve(language), seed, **knobs).realise
    world = build_world(seed, **knobs)  # the source's world knobs (more people, another tail)
    for index in range(n_docs):
        meanings = document_meanings(world, stream(seed, "document", language, "valid", index))
        sentences = [realise(m) for m in meanings]
        ends = [len(tokenizer(" ".join(sentences[: j + 1]))["input_ids"]) for j in range(len(sentences))]
        k = max(j for j in range(1, len(meanings) + 1) if ends[j - 1] + 1 <= context)
        ids = tokenizer(" ".join(sentences[:k]), split_special_tokens=True)["input_ids"]
        assert len(ids) == ends[k - 1], "a sentence boundary splits a token"
        later, untold = [], len(RELATIONS) - 1
        for j in range(1, k):
            nats = -math.log(sentence_prob(world, meanings[j], untold))
            untold -= isinstance(meanings[j], Fact)
            later.append((kind(meanings[j]), ends[j - 1], ends[j], nats))
        first = -prefix_log_prob(world, meanings[:k]) - sum(p[3] for p in later)
        yield meanings[0].person, [tokenizer.eos_token_id, *ids], [("who and where (first)", 0, ends[0], first), *later]


@torch.no_grad()
def token_nats(model, batch: list[list[int]]) -> list[np.ndarray]:
    """Each sequence's next-token losses on its tokens after the first."""
    width = max(len(ids) for ids in batch)
    ids = torch.zeros(len(batch), width, dtype=torch.long)
    mask = torch.zeros(len(batch), width, dtype=torch.bool)
    for row, seq in enumerate(batch):
        ids[row, : len(seq)], mask[row, : len(seq)] = torch.tensor(seq), True
    logits = model(ids, attention_mask=mask.long()).logits[:, :-1].float()
    nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none").numpy()
    return [nll[row, : len(seq) - 1] for row, seq in enumerate(batch)]


def _line(label: str, share: float, tokens: float, model: float, truth: float, total: float) -> str:
    return (f"  {label:<22} {share:>6.1%} {tokens:>8.0f} {model / tokens:>6.3f} {truth / tokens:>9.3f} "
            f"{(model - truth) / tokens:>8.4f} {(model - truth) / total:>8.1%}")  # fmt: skip


def excess(run: Path, n_docs: int) -> str:
    config = load_run_config(run / RunDir.CONFIG)
    plan, seed = plan_run(config), config.data.world_seed
    hf = step_dir(run / "hf", list_steps(run / "hf")[-1])
    model, tokenizer = AutoModelForCausalLM.from_pretrained(hf).eval(), AutoTokenizer.from_pretrained(hf)
    (name,) = config.data.mixture  # one synthetic source: its language's documents
    source = known_sources()[name]
    docs = list(prefixes(source.language, seed, n_docs, tokenizer, plan.seq_len, dict(source.world)))
    nll = [n for i in range(0, len(docs), BATCH) for n in token_nats(model, [d[1] for d in docs[i : i + BATCH]])]
    # one record per sentence: (rank, kind, tokens, model nats, generator nats)
    records = [
        (rank, label, end - begin, float(losses[begin:end].sum()), truth)
        for (rank, _, parts), losses in zip(docs, nll, strict=True)
        for label, begin, end, truth in parts
    ]
    ranks = np.array([r[0] for r in records])
    kinds = np.array([r[1] for r in records])
    tokens, model_sum, truth_sum = (np.array([r[i] for r in records], dtype=float) for i in (2, 3, 4))
    total = model_sum.sum() - truth_sum.sum()
    lines = [f"{run.name} ({hf.name}): {len(docs)} document starts, {tokens.sum():.0f} tokens; model "
             f"{model_sum.sum() / tokens.sum():.4f}, generator {truth_sum.sum() / tokens.sum():.4f}, excess "
             f"{total / tokens.sum():.4f} nats per token",
             f"  {'':<22} {'tokens':>6} {'':>8} {'model':>6} {'generator':>9} {'excess':>8} {'of all':>8}"]  # fmt: skip
    for low, high in BANDS:
        band = (ranks >= low) & (ranks < high)
        if not band.any():
            continue
        label = f"person rank {low}-{high - 1}" if high < 10**9 else f"person rank {low}-"
        lines.append(_line(label, tokens[band].sum() / tokens.sum(), tokens[band].sum(), model_sum[band].sum(),
                           truth_sum[band].sum(), total))  # fmt: skip
    for label in sorted(set(kinds)):
        mine = kinds == label
        lines.append(_line(label, tokens[mine].sum() / tokens.sum(), tokens[mine].sum(), model_sum[mine].sum(),
                           truth_sum[mine].sum(), total))  # fmt: skip
    lines.append(windows(model, tokenizer, config, plan, source))
    return "\n".join(lines)


def windows(model, tokenizer, config, plan, source) -> str:
    """The run's validation windows, read as training reads them (TokenStream, rows_tensor), each token's loss
    split by whether its document began inside the window (an EOS earlier in it: the model sees who the
    document is about) or before it."""
    corpus = resolve_tokenizer(config.data.tokenizer, config.data.mixture)
    key = tokenizer_key(plan.vocab_size, config.data.world_seed, corpus)
    stream = TokenStream(source, "valid", tokenizer, key, config.data.world_seed)
    n_rows, seq_len = max(1, config.data.val_tokens // plan.seq_len), plan.seq_len
    rows = rows_tensor(stream, 0, n_rows, seq_len).numpy()
    losses = np.concatenate(
        [np.stack(token_nats(model, rows[i : i + BATCH].tolist())) for i in range(0, len(rows), BATCH)]
    )
    seen = np.maximum.accumulate(rows[:, :-1] == tokenizer.eos_token_id, axis=1)  # an EOS at or before the input
    return (f"  validation windows ({len(rows)} of {seq_len}): loss {losses.mean():.4f}; tokens whose document began "
            f"in the window {seen.mean():.1%}, loss {losses[seen].mean():.4f}; before it {1 - seen.mean():.1%}, "
            f"loss {losses[~seen].mean():.4f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--docs", type=int, default=2000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for run in args.runs:
        print(excess(run, args.docs))


if __name__ == "__main__":
    main()
