"""What a sweep will cost before it runs: N, D, FLOPs and estimated device-hours per run."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from testbed.config import RunConfig
from testbed.ladder import plan_run, run_id
from testbed.trunk import trunk_dir

# Dense peak FLOP/s of the devices a sweep may run on (bf16 tensor cores for GPUs), and the share of
# it a run is assumed to reach. The CPU line is the measured fp32 rate of the micro ladder on 2 cores.
DEVICES: dict[str, tuple[float, float]] = {
    "cpu-2core": (5.0e10, 1.0),
    "a100": (312e12, 0.40),
    "h100": (989e12, 0.40),
}

# MFU measured with testbed's own loop on one H100 (benchmarks/gpu/README.md: bf16, SDPA, fused AdamW, the
# ladder's batches). Small rungs are launch-bound and reach a small share of the assumed MFU above, so
# where a (device, architecture, ladder, size, compile) was measured, estimates and Slurm time limits use it. A compiled
# run of a size measured only eager gets the eager number (compiling is faster, so the limit errs long).
MEASURED_MFU: dict[tuple[str, str, str, str, bool], float] = {
    ("h100", "decoder", "reduced", "r1", False): 0.020,
    ("h100", "decoder", "reduced", "r2", False): 0.071,
    ("h100", "decoder", "reduced", "r3", False): 0.098,
    ("h100", "decoder", "reduced", "r4", False): 0.121,
    ("h100", "decoder", "reduced", "r5", False): 0.170,
    ("h100", "decoder", "reduced", "r6", False): 0.194,
    ("h100", "decoder", "reduced", "r6", True): 0.368,
}


def expected_mfu(device: str, config: RunConfig) -> float | None:
    """The MFU a run of `config` is expected to reach on `device`: measured if known, else assumed (None for a
    device not in DEVICES)."""
    key = (device, config.model.arch, config.model.ladder, config.model.size)
    for compiled in dict.fromkeys((config.train.compile, False)):
        if (*key, compiled) in MEASURED_MFU:
            return MEASURED_MFU[(*key, compiled)]
    return DEVICES[device][1] if device in DEVICES else None


def computed_tokens(runs: list[RunConfig], plans: list | None = None) -> list[int]:
    """Tokens each run will actually train on. Cosine runs: their budget. WSD runs that share a trunk
    (testbed/trunk.py): the trunk is trained once, so in ascending order of branch point each run is charged
    its stretch of the trunk beyond the previous run's branch point, plus its own cooldown. `plans`: the runs'
    plan_run results, if the caller has them."""
    plans = plans or [plan_run(config) for config in runs]
    computed = [plan.tokens for plan in plans]
    trunks: dict[Path, list[int]] = defaultdict(list)
    for i, (config, plan) in enumerate(zip(runs, plans, strict=True)):
        if plan.schedule == "wsd":
            trunks[trunk_dir(config, plan, Path(config.out_dir) / config.sweep / run_id(config))].append(i)
    for members in trunks.values():
        reached = 0  # tokens of the trunk already charged to an earlier run
        for i in sorted(members, key=lambda i: plans[i].cooldown_start):
            branch = plans[i].tokens_before(plans[i].cooldown_start)
            computed[i] = max(branch - reached, 0) + plans[i].tokens - branch
            reached = max(reached, branch)
    return computed


def plan_rows(runs: list[RunConfig]) -> list[dict]:
    rows = []
    plans = [plan_run(config) for config in runs]
    for config, plan, computed in zip(runs, plans, computed_tokens(runs, plans), strict=True):
        row = {
            "run_id": run_id(config), "size": config.model.size, "params": plan.params,
            "params_nonembed": plan.params_nonembed, "dataset": config.data.name,
            "multiplier": config.train.multiplier, "seed": config.train.seed, "tokens": plan.tokens,
            "flops": plan.flops, "computed_flops": 6.0 * plan.params * computed, "steps": plan.steps,
            "batch_size": plan.batch_size, "lr": plan.lr, "schedule": plan.schedule,
        }
        for device, (peak, _) in DEVICES.items():  # what the run costs: shared trunks counted once
            row[f"hours_{device}"] = row["computed_flops"] / (peak * expected_mfu(device, config)) / 3600
        rows.append(row)
    return rows


def format_plan(rows: list[dict]) -> str:
    hours = "".join(f" {'h@' + d:>10}" for d in DEVICES)
    header = f"{'run_id':<34} {'size':>5} {'N':>12} {'D':>15} {'FLOPs':>9} {'steps':>7}{hours}"
    lines = [header, "-" * len(header)]
    for r in rows:
        cells = "".join(f" {r[f'hours_{d}']:>10.4g}" for d in DEVICES)
        lines.append(f"{r['run_id']:<34} {r['size']:>5} {r['params']:>12,} {r['tokens']:>15,} {r['flops']:>9.2e} "
                     f"{r['steps']:>7}{cells}")
    flops, tokens = sum(r["flops"] for r in rows), sum(r["tokens"] for r in rows)
    computed = sum(r["computed_flops"] for r in rows)
    shared = f" ({computed:.3e} computed: WSD runs share their trunks)" if computed < flops else ""
    lines.append(f"{len(rows)} runs, {tokens:.3e} tokens, {flops:.3e} FLOPs{shared}; device-hours: " + ", ".join(
        f"{sum(r[f'hours_{d}'] for r in rows):,.4g} on {d} ({_mfu_note(d)})" for d in DEVICES))
    return "\n".join(lines)


def _mfu_note(device: str) -> str:
    measured = any(key[0] == device for key in MEASURED_MFU)
    return f"MFU measured per size where known, else {DEVICES[device][1]:.0%}" if measured \
        else f"MFU {DEVICES[device][1]:.0%}"
