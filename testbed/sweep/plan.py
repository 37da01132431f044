"""What a sweep will cost before it runs: N, D, FLOPs and estimated device-hours per run."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from testbed.config import RunConfig
from testbed.devices import BY_KEY, MEASURED_MFU, PLANNED, Device
from testbed.ladder import plan_run, run_columns, run_id
from testbed.trunk import trunk_dir


def expected_mfu(device: str, config: RunConfig) -> float | None:
    """The MFU a run of `config` is expected to reach on `device` (a key of testbed/devices.py): measured if
    known, else assumed (None for an unknown device). A compiled run of a size measured only eager gets the
    eager number (compiling is faster, so a time limit errs long)."""
    key = (device, config.model.arch, config.model.ladder, config.model.size)
    for compiled in dict.fromkeys((config.train.compile, False)):
        if (*key, compiled) in MEASURED_MFU:
            return MEASURED_MFU[(*key, compiled)]
    return BY_KEY[device].assumed_mfu if device in BY_KEY else None


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
        computed_flops = 6.0 * plan.params * computed
        row: dict[str, object] = {
            **run_columns(config, plan),
            "tokens": plan.tokens,
            "flops": plan.flops,
            "computed_flops": computed_flops,
            "steps": plan.steps,
            "batch_size": plan.batch_size,
            "lr": plan.lr,
            "schedule": plan.schedule,
        }
        for device in PLANNED:  # what the run costs: shared trunks counted once
            mfu = expected_mfu(device.key, config)
            assert mfu is not None  # a device of DEVICES has an assumed MFU
            row[f"hours_{device.key}"] = computed_flops / (device.peak_flops * mfu) / 3600
        rows.append(row)
    return rows


def format_plan(rows: list[dict]) -> str:
    hours = "".join(f" {'h@' + d.key:>10}" for d in PLANNED)
    width = max([34, *(len(r["run_id"]) for r in rows)])
    header = f"{'run_id':<{width}} {'size':>5} {'N':>12} {'D':>15} {'FLOPs':>9} {'steps':>7}{hours}"
    lines = [header, "-" * len(header)]
    for r in rows:
        cells = "".join(f" {r[f'hours_{d.key}']:>10.4g}" for d in PLANNED)
        lines.append(
            f"{r['run_id']:<{width}} {r['size']:>5} {r['params']:>12,} {r['tokens']:>15,} {r['flops']:>9.2e} "
            f"{r['steps']:>7}{cells}"
        )
    flops, tokens = sum(r["flops"] for r in rows), sum(r["tokens"] for r in rows)
    computed = sum(r["computed_flops"] for r in rows)
    shared = f" ({computed:.3e} computed: WSD runs share their trunks)" if computed < flops else ""
    lines.append(
        f"{len(rows)} runs, {tokens:.3e} tokens, {flops:.3e} FLOPs{shared}; device-hours: "
        + ", ".join(f"{sum(r[f'hours_{d.key}'] for r in rows):,.4g} on {d.key} ({_mfu_note(d)})" for d in PLANNED)
    )
    return "\n".join(lines)


def _mfu_note(device: Device) -> str:
    measured = any(key[0] == device.key for key in MEASURED_MFU)
    return (
        f"MFU measured per size where known, else {device.assumed_mfu:.0%}"
        if measured
        else f"MFU {device.assumed_mfu:.0%}"
    )
