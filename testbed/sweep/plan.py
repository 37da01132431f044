"""What a sweep will cost before it runs: N, D, FLOPs and estimated device-hours per run."""

from __future__ import annotations

from testbed.config import RunConfig
from testbed.ladder import plan_run, run_id

# Dense peak FLOP/s of the devices a sweep may run on (bf16 tensor cores for GPUs), and the share of
# it a run is assumed to reach. The CPU line is the measured fp32 rate of the micro ladder on 2 cores.
DEVICES: dict[str, tuple[float, float]] = {
    "cpu-2core": (5.0e10, 1.0),
    "a100": (312e12, 0.40),
    "h100": (989e12, 0.40),
}


def plan_rows(runs: list[RunConfig]) -> list[dict]:
    rows = []
    for config in runs:
        plan = plan_run(config)
        row = {
            "run_id": run_id(config), "size": config.model.size, "params": plan.params,
            "params_nonembed": plan.params_nonembed, "dataset": config.data.name,
            "multiplier": config.train.multiplier, "seed": config.train.seed, "tokens": plan.tokens,
            "flops": plan.flops, "steps": plan.steps, "batch_size": plan.batch_size, "lr": plan.lr,
        }
        for device, (peak, utilisation) in DEVICES.items():
            row[f"hours_{device}"] = plan.flops / (peak * utilisation) / 3600
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
    lines.append(f"{len(rows)} runs, {tokens:.3e} tokens, {flops:.3e} FLOPs; device-hours: " + ", ".join(
        f"{sum(r[f'hours_{d}'] for r in rows):,.4g} on {d} (MFU {DEVICES[d][1]:.0%})" for d in DEVICES))
    return "\n".join(lines)
