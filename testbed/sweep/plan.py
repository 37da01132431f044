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
    header = f"{'run_id':<34} {'size':>5} {'N':>10} {'D':>12} {'FLOPs':>9} {'steps':>6} {'h@cpu':>7} {'h@h100':>8}"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(f"{r['run_id']:<34} {r['size']:>5} {r['params']:>10,} {r['tokens']:>12,} {r['flops']:>9.2e} "
                     f"{r['steps']:>6} {r['hours_cpu-2core']:>7.3f} {r['hours_h100']:>8.5f}")
    total = sum(r["flops"] for r in rows)
    lines.append(f"{len(rows)} runs, {total:.3e} FLOPs; " + ", ".join(
        f"{sum(r[f'hours_{d}'] for r in rows):.3g} h on {d}" for d in DEVICES))
    return "\n".join(lines)
