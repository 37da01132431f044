"""Translation tasks, their (source, reference) pairs, and how a pair becomes a model's tokens."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from testbed.errors import TestbedError


class TaskDataError(TestbedError):
    """The task's data cannot serve the finetuning (an empty split or pair, a train split short of the size):
    every other combination would fail alike, so the run stops with one line instead of recording it."""


@dataclass(frozen=True)
class TranslationTask:
    corpus: str  # the registry's parallel corpus name, or "<src>-<dst>" for built-in synthetic pairs
    src: str
    dst: str

    @property
    def name(self) -> str:
        """The rows' name and the output folder: the corpus, so two corpora of one language pair stay apart."""
        return self.corpus


def known_tasks() -> dict[str, TranslationTask]:
    """Parallel corpora of the data registry (configs/data `parallel:`), plus every synthetic pair."""
    from testbed.data import sources
    from testbed.data.synthetic import LANGUAGES

    tasks = {f"{a}-{b}": TranslationTask(f"{a}-{b}", a, b) for a in LANGUAGES for b in LANGUAGES if a != b}
    for name, corpus in sources.known_parallel().items():
        assert corpus.pair is not None  # every parallel corpus has one
        tasks[name] = TranslationTask(name, *corpus.pair)
    return tasks


def resolve_task(name: str) -> TranslationTask:
    tasks = known_tasks()
    if name not in tasks:
        raise TestbedError(f"--task {name!r}: unknown translation task (known: {', '.join(sorted(tasks))})")
    return tasks[name]


def task_pairs(task: TranslationTask, split: str, n_pairs: int, world_seed: int) -> list[tuple[str, str]]:
    """The first `n_pairs` (source, reference) pairs of a split: the one place pairs come from."""
    from testbed.data import sources

    parallel = sources.known_parallel()
    if task.corpus in parallel:
        from testbed.data.readers import pairs

        return pairs(parallel[task.corpus], split, n_pairs, world_seed)
    from testbed.data.synthetic import parallel_pairs

    return parallel_pairs(task.src, task.dst, split, n_pairs, seed=world_seed)


def checked_pairs(task: TranslationTask, split: str, n_pairs: int, world_seed: int) -> list[tuple[str, str]]:
    got = task_pairs(task, split, n_pairs, world_seed)
    if not got:
        raise TaskDataError(f"task {task.corpus!r}: the {split} split has no pairs (empty reference file?)")
    empty = [i for i, (s, t) in enumerate(got) if not s.strip() or not t.strip()]
    if empty:
        raise TaskDataError(f"task {task.corpus!r}: {split} pair {empty[0]} has an empty source or reference")
    return got


@dataclass
class Encoded:
    prompt: list[int]  # decoder: `<src> =`; T5: `<src><eos>`
    target: list[int]  # ` <tgt><eos>` (decoder) / `<tgt><eos>` (T5)


class Formatter:
    def __init__(self, tokenizer, seq2seq: bool, max_len: int):
        self.tok, self.seq2seq, self.max_len = tokenizer, seq2seq, max_len
        self.eos = tokenizer.eos_token_id
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos

    def ids(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False).input_ids[: self.max_len]

    def encode(self, src: str, tgt: str) -> Encoded:
        if self.seq2seq:
            return Encoded(self.ids(src) + [self.eos], self.ids(tgt) + [self.eos])
        return Encoded(self.ids(src + " ="), self.ids(" " + tgt) + [self.eos])

    def batch(self, items: list[Encoded]) -> tuple[dict, torch.Tensor]:
        """Model kwargs (right-padded) and labels aligned with the logits (-100: not scored)."""
        if self.seq2seq:
            src_len = max(len(e.prompt) for e in items)
            tgt_len = max(len(e.target) for e in items)
            ids = torch.full((len(items), src_len), self.pad)
            mask = torch.zeros((len(items), src_len), dtype=torch.long)
            labels = torch.full((len(items), tgt_len), -100)
            for i, e in enumerate(items):
                ids[i, : len(e.prompt)] = torch.tensor(e.prompt)
                mask[i, : len(e.prompt)] = 1
                labels[i, : len(e.target)] = torch.tensor(e.target)
            decoder_inputs = torch.full_like(labels, self.pad)  # start token = pad = 0, then the target
            decoder_inputs[:, 1:] = labels[:, :-1].masked_fill(labels[:, :-1] == -100, self.pad)
            return {"input_ids": ids, "attention_mask": mask, "decoder_input_ids": decoder_inputs}, labels
        length = max(len(e.prompt) + len(e.target) for e in items) - 1
        ids = torch.full((len(items), length), self.pad)
        mask = torch.zeros((len(items), length), dtype=torch.long)
        labels = torch.full((len(items), length), -100)
        for i, e in enumerate(items):
            seq = e.prompt + e.target
            ids[i, : len(seq) - 1] = torch.tensor(seq[:-1])
            mask[i, : len(seq) - 1] = 1
            labels[i, len(e.prompt) - 1 : len(seq) - 1] = torch.tensor(e.target)
        return {"input_ids": ids, "attention_mask": mask}, labels


def select_train(fmt: Formatter, task: TranslationTask, size: int, world_seed: int) -> list[Encoded]:
    """The first pairs of the train split whose tokens reach `size`."""
    want = 64
    while True:
        pairs = checked_pairs(task, "train", want, world_seed)
        encoded, tokens = [], 0
        for src, tgt in pairs:
            item = fmt.encode(src, tgt)
            encoded.append(item)
            tokens += len(item.prompt) + len(item.target)
            if tokens >= size:
                return encoded
        if len(pairs) < want:
            raise TaskDataError(f"task {task.corpus!r}: the train split holds {tokens} tokens < --size {size}")
        want = max(2 * want, int(1.2 * want * size / max(tokens, 1)))
