"""Cosine per multiplier vs warmup-stable-decay with cooldown branches: loss at each multiplier and the
compute each way needs for the whole set of multipliers.

    python scripts/bench_schedules.py --sizes s1,s2,s3 --multipliers 5,10,20,40 --out benchmarks/schedules.md

Cosine trains one run per multiplier, each with its horizon matched. WSD trains the multipliers in ascending
order in one sweep directory: the first run trains the stable trunk up to its cooldown start, every later one
extends the trunk and branches its own cooldown (a share `--cooldown` of its steps), linear and 1-sqrt
branches off the same trunk. Compute is counted from the steps each run actually computed (meta.json),
as 6 N D.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TESTBED_TRACK", "none")
for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(key, "1")

import torch  # noqa: E402

from testbed.ladder import plan_run  # noqa: E402
from testbed.resolve import load_run_config  # noqa: E402
from testbed.results import read_rows  # noqa: E402
from testbed.train import train  # noqa: E402

SCHEDULES = {
    "cosine": ["train.schedule=cosine"],
    "wsd": ["train.schedule=wsd", "train.cooldown_shape=linear"],
    "wsd 1-sqrt": ["train.schedule=wsd", "train.cooldown_shape=1-sqrt"],
}


def run(args, out: Path, sweep: str, size: str, multiplier: float, schedule: str) -> dict:
    config = load_run_config(
        None,
        [
            f"model.size={size}",
            f"train.multiplier={multiplier}",
            f"train.warmup_steps={args.warmup}",
            f"train.cooldown_fraction={args.cooldown}",
            *SCHEDULES[schedule],
            "data.validation=[syn_en]",
            "train.log_spaced_checkpoints=0",
            f"out_dir={out}",
            f"sweep={sweep}",
        ],
    )
    plan = plan_run(config)
    began = time.perf_counter()
    run_dir = train(config, progress=False)
    meta = json.loads((run_dir / "meta.json").read_text())
    loss = next(r["value"] for r in read_rows(run_dir) if r["kind"] == "val_loss" and r["final"])
    return {
        "loss": loss,
        "flops": 6.0 * plan.params * meta["tokens_computed"],
        "seconds": time.perf_counter() - began,
        "planned_flops": plan.flops,
        "params": plan.params,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="s1,s2,s3")
    parser.add_argument("--multipliers", default="5,10,20,40")
    parser.add_argument("--cooldown", type=float, default=0.2)
    parser.add_argument("--warmup", type=int, default=10, help="the same warmup for every schedule")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    multipliers = sorted(float(m) for m in args.multipliers.split(","))
    sections = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes.split(","):
            results = {}
            for schedule in SCHEDULES:
                sweep = "cosine" if schedule == "cosine" else "wsd"  # both cooldown shapes share one trunk
                for m in multipliers:
                    results[schedule, m] = run(args, Path(tmp), sweep, size, m, schedule)
                    print(
                        f"{size} {schedule} M={m:g}: loss {results[schedule, m]['loss']:.4f}",
                        file=sys.stderr,
                        flush=True,
                    )
            params = results["cosine", multipliers[0]]["params"]
            lines = [
                f"### {size} ({params:,} parameters)",
                "",
                "| M | cosine loss | WSD loss (linear) | WSD loss (1-sqrt) | linear - cosine | 1-sqrt - cosine |",
                "|---|---|---|---|---|---|",
            ]
            for m in multipliers:
                c, w, s = (results[k, m]["loss"] for k in SCHEDULES)
                lines.append(f"| {m:g} | {c:.4f} | {w:.4f} | {s:.4f} | {w - c:+.4f} | {s - c:+.4f} |")
            total = {k: sum(results[k, m]["flops"] for m in multipliers) for k in SCHEDULES}
            seconds = {k: sum(results[k, m]["seconds"] for m in multipliers) for k in SCHEDULES}
            both = total["wsd"] + total["wsd 1-sqrt"]  # the 1-sqrt runs find the trunk trained: cooldowns only
            lines += [
                "",
                "| compute for all multipliers | FLOPs | vs cosine | wall-clock s |",
                "|---|---|---|---|",
                f"| cosine, one run per M | {total['cosine']:.3e} | 1.00 | {seconds['cosine']:.0f} |",
                f"| WSD, one shape: the trunk + a cooldown per M | {total['wsd']:.3e} | "
                f"{total['wsd'] / total['cosine']:.2f} | {seconds['wsd']:.0f} |",
                f"| WSD, both shapes off the same trunk | {both:.3e} | {both / total['cosine']:.2f} | "
                f"{seconds['wsd'] + seconds['wsd 1-sqrt']:.0f} |",
                "",
            ]
            sections.append("\n".join(lines))
            print(sections[-1], flush=True)
    if args.out:
        cpu = platform.machine()
        try:
            cpu = next(
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            )
        except (OSError, StopIteration):
            pass
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        args.out.write_text(
            "# Schedules: cosine per multiplier vs WSD cooldown branches\n\n"
            f"Command: `python scripts/bench_schedules.py {' '.join(sys.argv[1:])}` (git {sha}, "
            f"{time.strftime('%Y-%m-%d')})\n\n"
            f"Machine: {cpu}, {os.cpu_count()} cores, {args.threads} torch threads, shared with other work "
            "(wall-clock times are indicative only; FLOPs are exact).\n\n"
            f"micro ladder, syn_en, validation loss on syn_en at the end of each run; warmup {args.warmup} steps "
            f"for every schedule, peak LR from the ladder, final LR 1% of the peak; WSD cooldown: the last "
            f"{args.cooldown:.0%} of each run's steps. FLOPs = 6 N x tokens each run computed; a WSD run computes "
            "only the trunk's extension beyond the previous branch point and its own cooldown.\n\n"
            + "\n".join(sections)
        )


if __name__ == "__main__":
    main()
