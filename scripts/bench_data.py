#!/usr/bin/env python
"""Benchmark the data layer: tokenization throughput, and the share of a training step spent on data.

    python scripts/bench_data.py [--out benchmarks/data.md] [--steps 30]

1. Tokenization into shards from a cold cache (a temporary TESTBED_CACHE): the real corpus's four train
   splits (`make real-data` first) and a synthetic language, with the micro (512) and reduced (16384)
   vocabularies; text generation/reading, BPE and shard writing all counted.
2. Data wait: a micro-ladder training step (forward, backward, AdamW) with batches from MixtureBatcher
   over cached shards, timing `next_batch` apart from the rest; and `next_batch` alone at the reduced
   ladder's shape (64 x 1024) to compare with a GPU step time.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TESTBED_CACHE", tempfile.mkdtemp(prefix="bench-data-"))  # cold cache unless set

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

from testbed.data import real, synthetic  # noqa: E402
from testbed.data.shards import ShardCache  # noqa: E402
from testbed.data.sources import known_sources  # noqa: E402
from testbed.data.stream import MixtureBatcher, TokenStream  # noqa: E402
from testbed.data.tokenizer import load_tokenizer, tokenizer_key  # noqa: E402
from testbed.ladder import model_config, plan_run  # noqa: E402
from testbed.resolve import load_run_config  # noqa: E402


def tokenize_all(name: str, corpus: str, vocab: int, max_shards: int | None = None) -> dict:
    tokenizer, key = load_tokenizer(vocab, 0, corpus), tokenizer_key(vocab, 0, corpus)
    cache = ShardCache(known_sources()[name], "train", tokenizer, key, 0)
    start, cpu, tokens, shards = time.perf_counter(), time.process_time(), 0, 0
    while max_shards is None or shards < max_shards:
        shard = cache.shard(shards)
        if shard is None:
            break
        tokens, shards = tokens + len(shard), shards + 1
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"source": name, "vocab": vocab, "docs": cache.documents(), "tokens": tokens, "seconds": seconds, "cpu": cpu}


def tokenization_row(label: str, result: dict, mb: float) -> str:
    return (
        f"| {label} | {result['vocab']} | {result['docs']:,} | {mb:.1f} | {result['tokens']:,} | "
        f"{result['seconds']:.2f} | {result['cpu']:.2f} | {result['tokens'] / result['seconds']:,.0f} | "
        f"{result['tokens'] / result['cpu']:,.0f} | {mb / result['seconds']:.2f} |"
    )


def text_bytes(name: str, docs: int) -> int:
    from testbed.data import readers

    stream = readers.documents(known_sources()[name], "train")
    return sum(len(doc.encode()) for _, doc in zip(range(docs), stream, strict=False))


def tokenization_rows() -> list[str]:
    rows = []
    for vocab in (512, 16384):
        for name in ("real_en", "real_de", "real_fr", "real_ro"):
            result = tokenize_all(name, "real", vocab)
            rows.append(tokenization_row(name, result, text_bytes(name, result["docs"]) / 1e6))
        result = tokenize_all("syn_en", "synthetic", vocab, max_shards=5)
        generate = time.perf_counter()
        synthetic.documents("syn_en", "train", 5000, seed=0, start=0)
        generate = time.perf_counter() - generate
        rows.append(
            tokenization_row(
                f"syn_en (5 shards; generating the text: {generate:.2f} s)",
                result,
                text_bytes("syn_en", result["docs"]) / 1e6,
            )
        )
    return rows


def step_rows(sizes: list[str], mixture: str, steps: int) -> list[str]:
    rows = []
    for size in sizes:
        config = load_run_config(None, [f"model.size={size}", f"data.name={mixture}", "train.multiplier=20"])
        plan = plan_run(config)
        from testbed.data.sources import resolve_tokenizer

        corpus = resolve_tokenizer("", config.data.mixture)
        tokenizer, key = load_tokenizer(plan.vocab_size, 0, corpus), tokenizer_key(plan.vocab_size, 0, corpus)
        streams = {n: TokenStream(known_sources()[n], "train", tokenizer, key, 0) for n in config.data.mixture}
        budget = plan.batch_size * plan.seq_len * (steps + 3)  # only the steps timed, not the run's budget
        batcher = MixtureBatcher(streams, config.data.mixture, plan.seq_len, plan.batch_size, budget)
        batcher.prefetch()
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(model_config(config))
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        data_s, step_s = [], []
        for step in range(steps + 3):
            t0 = time.perf_counter()
            inputs, labels = batcher.next_batch()
            t1 = time.perf_counter()
            logits = model(input_ids=inputs, use_cache=False).logits
            loss = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            t2 = time.perf_counter()
            if step >= 3:  # warm-up steps excluded
                data_s.append(t1 - t0)
                step_s.append(t2 - t0)
        data, total = statistics.median(data_s), statistics.median(step_s)
        params = sum(p.numel() for p in model.parameters())
        rows.append(
            f"| micro {size} ({params / 1e6:.2f}M) | {mixture} | {plan.batch_size} x {plan.seq_len} | "
            f"{total * 1e3:.1f} | {data * 1e3:.2f} | {100 * data / total:.2f}% | "
            f"{100 * max(d / t for d, t in zip(data_s, step_s, strict=True)):.2f}% |"
        )
    return rows


def gpu_shape_row(steps: int) -> str:
    """next_batch alone at the reduced ladder's shape, from real-text shards (vocab 16384)."""
    weights = {"real_en": 0.5, "real_fr": 0.5}
    tokenizer, key = load_tokenizer(16384, 0, "real"), tokenizer_key(16384, 0, "real")
    streams = {n: TokenStream(known_sources()[n], "train", tokenizer, key, 0) for n in weights}
    batcher = MixtureBatcher(streams, weights, 1024, 64, 64 * 1024 * (steps + 3))
    batcher.prefetch()
    times = []
    for step in range(steps + 3):
        t0 = time.perf_counter()
        batcher.next_batch()
        if step >= 3:
            times.append(time.perf_counter() - t0)
    ms = statistics.median(times) * 1e3
    return (
        f"| reduced shape (no model) | real_en 0.5 + real_fr 0.5 | 64 x 1024 | - | {ms:.2f} | "
        f"under 5% for any step slower than {ms * 20:.0f} ms | |"
    )


NOTES = """## Reading it

- Tokenization is the Rust BPE (`tokenizers`, all cores) plus reading, EOS packing and the shard write;
  CPU seconds are summed over threads, so tokens per CPU-second is the figure that does not depend on
  what else the machine runs. Compare vocabularies by MB/s: a larger vocabulary makes fewer tokens of
  the same text. Every (source split, tokenizer) is tokenized once per machine and cache; every later run
  of a sweep reads the memory-mapped shards.
- `next_batch` (choosing sources, slicing shards, one copy into the batch) is the only data work inside
  the training loop: everything a run needs is tokenized by `prefetch()` before step one. Its cost does not
  grow with the model, so its share shrinks as models grow; at the reduced ladder's shape it stays under 5%
  of any step slower than the last row says; the GPU step of a reduced rung on 64 x 1024 tokens was not
  measured here (no GPU for this benchmark). It runs in the training process, not in a prefetching worker.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="write the markdown here (default: print)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--sizes", default="s1,s3,s5")
    args = parser.parse_args(argv)
    real.ensure_corpus()
    started = time.strftime("%Y-%m-%d %H:%M")
    command = "python scripts/bench_data.py " + " ".join(argv if argv is not None else sys.argv[1:])
    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
        f"{torch.__version__} ({torch.get_num_threads()} threads), load average "
        f"{os.getloadavg()[0]:.1f} at start"
    )
    lines = [
        "# Data layer benchmark",
        "",
        f"Command: `{command.strip()}` ({started}, cold token cache in a temporary directory).",
        f"Machine: {machine}.",
        "",
        "## Tokenization into shards (cold cache, all train shards)",
        "",
        "| source | vocab | documents | text MB | tokens | wall s | CPU s | tokens/s | tokens/CPU-s | MB/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *tokenization_rows(),
        "",
        "## Share of a training step spent waiting for data (cached shards, CPU)",
        "",
        "Medians over the timed steps (3 warm-up steps excluded); the last column is the worst single step.",
        "",
        "| model | mixture | batch | step ms | next_batch ms | data share | worst step |",
        "|---|---|---|---|---|---|---|",
        *step_rows(args.sizes.split(","), "real_en_de", args.steps),
        *step_rows(args.sizes.split(",")[:1], "syn_en_fr", args.steps),
        gpu_shape_row(args.steps),
        "",
        NOTES,
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
