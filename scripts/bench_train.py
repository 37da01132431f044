"""Training throughput three ways, on the same model and the same batches: testbed's loop (`testbed.train`),
a minimal hand-written PyTorch loop, and the Hugging Face Trainer. Prints tokens/s of each and the ratios.

    python scripts/bench_train.py --sizes s1,s3,s5 --steps 40 --repeats 5 --out benchmarks/train.md
    python scripts/bench_train.py --arch t5 --sizes s1,s3,s5 --out benchmarks/train_t5.md

T5 trains on span corruption: the three ways get the same corrupted batches, and tokens/s counts the tokens of
the text stream (batch x seq_len per step) as testbed's rows do.

Each repeat runs the three ways back to back (in a rotating order) and the table reports medians over
repeats, of the rates and of the per-repeat ratios: on a shared machine the load drifts, and a ratio taken
within one repeat cancels most of it. Every way skips its first step (allocator warm-up, compilation).
testbed's rate is the one it records in meta.json: every step's wall time, data included, checkpoints and
validation excluded (it runs with the final checkpoint only).

All three ways run in one process, with glibc told to keep freed memory (testbed.train.keep_freed_memory,
which testbed's loop sets for itself on the CPU): with glibc's defaults each step's activations page-fault
back in, which cost all three ways about a third of their speed on the micro ladder.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TESTBED_TRACK", "none")
for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(key, "1")

import json  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from testbed.ladder import model_config, plan_run  # noqa: E402
from testbed.models import build_model  # noqa: E402
from testbed.resolve import load_run_config  # noqa: E402
from testbed.schedule import lr_factor  # noqa: E402
from testbed.train import train  # noqa: E402
from testbed.training_run import keep_freed_memory, training_data  # noqa: E402


def run_config(args, size: str, out: Path, steps: int):
    """A run of exactly `steps` full batches, with the final checkpoint only."""
    base = [
        f"model.arch={args.arch}",
        f"model.ladder={args.ladder}",
        f"model.size={size}",
        f"train.device={args.device}",
        "train.log_spaced_checkpoints=0",
        "data.validation=[syn_en]",
        "data.val_tokens=2048",
        f"out_dir={out}",
        f"train.compile={args.compile}",
    ]
    if args.micro_batch:
        base.append(f"train.micro_batch_size={args.micro_batch}")
    probe = plan_run(load_run_config(None, base))
    multiplier = steps * probe.batch_size * probe.seq_len / probe.params
    return load_run_config(None, [*base, f"train.multiplier={multiplier!r}"])


def batches(config, plan) -> list[dict[str, torch.Tensor]]:
    """The batches testbed's loop will draw, drawn the same way (model keyword arguments plus labels)."""
    _, _, objective, batcher = training_data(config, plan)
    return [objective(*batcher.next_batch(), (config.train.seed, step)) for step in range(plan.steps)]


def optimizer_for(model, config, plan):
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.train.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=plan.lr,
        betas=(0.9, config.train.beta2),
        eps=1e-8,
        fused=True,
    )  # as testbed (and the Trainer)


def args_device(config) -> str:
    return "cuda" if config.train.device != "cpu" and torch.cuda.is_available() else "cpu"


MFU: list[float] = []  # testbed's, per run, where the device's peak is known (GPUs in testbed.throughput)


def way_testbed(config, plan, data) -> tuple[float, float]:
    run_dir = train(config, progress=False)
    meta = json.loads((run_dir / "meta.json").read_text())
    if meta["mfu"] is not None:
        MFU.append(meta["mfu"])
    return meta["tokens_per_second"], meta["tokens_per_cpu_second"]


def way_minimal(config, plan, data) -> tuple[float, float]:
    """What one would write by hand: forward, loss, backward (in micro-batches if the batch needs them),
    clip, step, schedule."""
    device = args_device(config)
    micro = plan.micro_batch(1)
    model = build_model(model_config(config), seed=config.train.seed).to(device)
    optimizer = optimizer_for(model, config, plan)
    forward = torch.compile(model) if config.train.compile else model
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, plan))
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda")
    tokens_per_step = plan.batch_size * plan.seq_len
    for i, batch in enumerate(data):
        if i == 1:
            began, cpu = time.perf_counter(), time.process_time()
        batch = {name: value.to(device) for name, value in batch.items()}
        labelled = (batch["labels"] != -100).sum()
        for part in zip(*(value.split(micro) for value in batch.values()), strict=True):
            inputs = dict(zip(batch, part, strict=True))
            labels = inputs.pop("labels")
            with autocast:
                logits = forward(**inputs, use_cache=False).logits
            loss = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), reduction="sum") / labelled
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.train.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()
    tokens = (len(data) - 1) * tokens_per_step
    return tokens / (time.perf_counter() - began), tokens / (time.process_time() - cpu)


def pad_rows(rows: list[dict]) -> dict[str, torch.Tensor]:
    """The Trainer's micro-batch: rows padded to the longest (span-corrupted rows differ in length) with -100
    for labels and 0 elsewhere (the pad id of testbed's tokenizers and an attention mask's zero)."""
    return {
        name: torch.nn.utils.rnn.pad_sequence(
            [row[name] for row in rows], batch_first=True, padding_value=-100 if name == "labels" else 0
        )
        for name in rows[0]
    }


def way_trainer(config, plan, data) -> tuple[float, float]:
    from transformers import Trainer, TrainerCallback, TrainingArguments

    device = args_device(config)
    model = build_model(model_config(config), seed=config.train.seed)
    if model.config.is_encoder_decoder:
        rows = [
            {name: value[j] for name, value in batch.items()} for batch in data for j in range(len(batch["labels"]))
        ]
    else:  # the model shifts labels
        rows = [{"input_ids": x, "labels": x} for batch in data for x in batch["input_ids"]]
    stamps = []

    class Clock(TrainerCallback):
        def on_step_end(self, *_, **__):
            if device == "cuda":
                torch.cuda.synchronize()
            stamps.append((time.perf_counter(), time.process_time()))

    with tempfile.TemporaryDirectory() as out:
        arguments = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=plan.micro_batch(1),
            gradient_accumulation_steps=plan.batch_size // plan.micro_batch(1),
            max_steps=plan.steps,
            learning_rate=plan.lr,
            weight_decay=config.train.weight_decay,
            adam_beta2=config.train.beta2,
            max_grad_norm=config.train.grad_clip,
            lr_scheduler_type="cosine",
            warmup_steps=plan.warmup_steps,
            logging_strategy="no",
            save_strategy="no",
            eval_strategy="no",
            report_to="none",
            use_cpu=device == "cpu",
            bf16=device == "cuda",
            dataloader_num_workers=0,
            disable_tqdm=True,
            seed=config.train.seed,
            data_seed=config.train.seed,
            torch_compile=config.train.compile,
        )
        trainer = Trainer(model=model, args=arguments, train_dataset=rows, callbacks=[Clock()], data_collator=pad_rows)
        trainer.train()
    tokens = (len(stamps) - 1) * plan.batch_size * plan.seq_len
    return tokens / (stamps[-1][0] - stamps[0][0]), tokens / (stamps[-1][1] - stamps[0][1])


WAYS = {"testbed": way_testbed, "minimal": way_minimal, "trainer": way_trainer}


def table_cells(rates: dict, clock: str) -> list[str]:
    """Median rate of each way, the medians of the per-repeat ratios to the minimal loop (with their range),
    and the ratios of the fastest repeats; n/a for a way not run."""

    def run(way):
        return rates.get((clock, way), [])

    cells = [f"{statistics.median(run(way)):,.0f}" if run(way) else "n/a" for way in WAYS]
    pairs = [(run(way), run("minimal")) for way in ("testbed", "trainer")]
    for mine, base in pairs:  # ratios within each repeat, then their median and range
        ratios = [a / b for a, b in zip(mine, base, strict=True)] if mine and base else []
        cells.append(f"{statistics.median(ratios):.3f} ({min(ratios):.2f}-{max(ratios):.2f})" if ratios else "n/a")
    for mine, base in pairs:  # noise only slows a run down: the fastest repeat is the cleanest
        cells.append(f"{max(mine) / max(base):.3f}" if mine and base else "n/a")
    return cells


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return (
        f"{cpu}, {os.cpu_count()} cores{gpu}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"load average at start {os.getloadavg()[0]:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="decoder", choices=["decoder", "t5"])
    parser.add_argument("--ladder", default="micro")
    parser.add_argument("--sizes", default="s1,s3,s5")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    parser.add_argument("--compile", action="store_true", help="torch.compile the model in all three ways")
    parser.add_argument("--ways", default=",".join(WAYS), help="which of testbed,minimal,trainer to run")
    parser.add_argument("--micro-batch", type=int, help="sequences per forward (default: the ladder's)")
    parser.add_argument("--out", type=Path, help="write the table and its provenance as markdown")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # testbed's train() sets it for its process (on the CPU): the same for the other two ways
    header = machine()
    clocks = {"wall": "wall-clock", "cpu": "process CPU time"}
    lines = {
        clock: [
            "| size | params | batch (micro) | testbed tok/s | minimal tok/s | Trainer tok/s | testbed / minimal | "
            "Trainer / minimal | best testbed / best minimal | best Trainer / best minimal | testbed MFU |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for clock in clocks
    }
    ways = args.ways.split(",")
    for size in args.sizes.split(","):
        rates = {(clock, way): [] for clock in clocks for way in ways}
        MFU.clear()
        with tempfile.TemporaryDirectory() as tmp:
            probe = run_config(args, size, Path(tmp), args.steps)
            plan = plan_run(probe)
            data = batches(probe, plan)
            for repeat in range(args.repeats):
                order = ways[repeat % len(ways) :] + ways[: repeat % len(ways)]
                for way in order:
                    config = run_config(args, size, Path(tmp) / f"{way}{repeat}", args.steps)
                    try:
                        measured = WAYS[way](config, plan, data)
                    except Exception as err:  # one way failing (a NaN, out of memory) leaves the others' numbers
                        print(f"{size} {way}: {type(err).__name__}: {err}", file=sys.stderr, flush=True)
                        measured = (float("nan"), float("nan"))
                    for clock, rate in zip(clocks, measured, strict=True):
                        rates[clock, way].append(rate)
                print(
                    f"{size} repeat {repeat}: "
                    + ", ".join(
                        f"{w} {rates['wall', w][-1]:,.0f} ({rates['cpu', w][-1]:,.0f} per CPU s)" for w in order
                    ),
                    file=sys.stderr,
                    flush=True,
                )
        for clock in clocks:
            lines[clock].append(
                f"| {size} | {plan.params:,} | {plan.batch_size} ({plan.micro_batch(1)}) | "
                f"{' | '.join(table_cells(rates, clock))} | "
                f"{f'{statistics.median(MFU):.1%}' if MFU else 'n/a'} |"
            )
            print(clock, lines[clock][-1], flush=True)
    table = "\n\n".join(f"Tokens per second of {name}:\n\n" + "\n".join(lines[clock]) for clock, name in clocks.items())
    print(table)
    if args.out:
        command = "python scripts/bench_train.py " + " ".join(sys.argv[1:])
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        precision = "bf16 autocast" if torch.cuda.is_available() and args.device != "cpu" else "fp32"
        args.out.write_text(
            f"# Training throughput: testbed vs a minimal loop vs the HF Trainer\n\n"
            f"Command: `{command}` (git {sha}, {time.strftime('%Y-%m-%d')})\n\n"
            f"Machine: {header}\n\n"
            f"{args.steps} steps of batch x {plan.seq_len} tokens per way and repeat (micro-batches of the "
            f"batch in parentheses), precision {precision}, "
            f"torch.compile {'on' if args.compile else 'off'}, {args.repeats} "
            f"repeats; medians, and for the ratios the range over repeats (each ratio is taken within a repeat); "
            f"the last two columns divide the fastest repeats.\n\n"
            f"{table}\n"
        )


if __name__ == "__main__":
    main()
