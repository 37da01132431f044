"""What a sweep will cost before it runs: N, D, FLOPs and estimated device-hours per run.

On the CPU the estimate comes from measured rates (testbed/sweep/cpu_rates.py, written by
scripts/measure_cpu_rates.py from finished runs): training tokens per second per ladder rung, and, when the
sweep has those stages, the eval seconds per (task, scored checkpoint) and the seconds per translation
finetuning. On GPUs, training from the devices' peaks and the MFU measured or assumed (testbed/devices.py),
with runs packed onto one device as `gpu.runs_per_device` says (testbed/sweep/packing.py); each row names
where its MFU comes from, and the summary gives the grid-weighted MFU and how much of it was measured.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

from testbed.config import GpuConfig, RunConfig
from testbed.devices import PLANNED, Device
from testbed.ladder import plan_run, run_columns, run_id
from testbed.progress import format_duration
from testbed.sweep.cpu_rates import EVAL_SECONDS_PER_TASK_CHECKPOINT, FINETUNE_SECONDS, TRAIN_TOKENS_PER_SECOND
from testbed.sweep.packing import mfu_estimate, runs_per_device
from testbed.trunk import trunk_dir

__all__ = ["format_duration", "format_plan", "plan_rows"]
CPU = "cpu-2core"  # the device whose column comes from measured rates


def expected_mfu(device: str, config: RunConfig, pack: int = 1) -> float | None:
    """The MFU `pack` runs of `config` reach together on `device` (a key of testbed/devices.py): measured if
    known, else assumed (None for an unknown device); testbed.sweep.packing.mfu_estimate says which."""
    return mfu_estimate(device, config, pack)[0]


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


def _nearest(table: dict, config: RunConfig, params: int) -> tuple[tuple, float]:
    """The entry of a rate table for the run's rung, else for the measured rung nearest in N (log scale); with
    the run's N over the measured rung's N (1 for the rung itself)."""
    rung = f"{config.model.ladder}/{config.model.size}"
    if rung in table:
        return table[rung], 1.0
    sizes = {name: TRAIN_TOKENS_PER_SECOND[name][2] for name in table if name in TRAIN_TOKENS_PER_SECOND}
    name = min(sizes, key=lambda name: abs(math.log(params / sizes[name])))
    return table[name], params / sizes[name]


def cpu_train_seconds(config: RunConfig, params: int, tokens: float) -> float:
    """Seconds of wall-clock to train `tokens` on the 2-core CPU at the rung's measured rate (an unmeasured
    rung: the nearest measured one's, slowed in proportion to N when larger)."""
    (rate, _, _), ratio = _nearest(TRAIN_TOKENS_PER_SECOND, config, params)
    return tokens / rate * max(ratio, 1.0)


def cpu_eval_seconds(config: RunConfig, params: int, tasks: int, checkpoints: int) -> float:
    """Seconds of wall-clock to score `tasks` tasks at `checkpoints` checkpoints on the 2-core CPU."""
    (seconds, _), ratio = _nearest(EVAL_SECONDS_PER_TASK_CHECKPOINT, config, params)
    return seconds * tasks * checkpoints * max(ratio, 1.0)


def cpu_finetune_seconds(config: RunConfig, params: int, finetunings: int, work: int) -> float:
    """Seconds of wall-clock for `finetunings` finetunings of `work` = steps x batch_size x max_len each."""
    (seconds, _, measured_work), ratio = _nearest(FINETUNE_SECONDS, config, params)
    return seconds * finetunings * work / measured_work * max(ratio, 1.0)


def stage_counts(config: RunConfig, spec, checkpoints: int) -> tuple[int, int, int, int]:
    """(eval tasks, eval checkpoints, finetunings, work per finetuning) of one run under `spec` (a
    testbed.sweep.stages.StageSpec, or None: training alone)."""
    tasks = scored = finetunings = work = 0
    if spec is None:
        return tasks, scored, finetunings, work
    spec = spec.for_run(config)
    if spec.eval_suite:
        from testbed.evaluate.suite import load_suite

        tasks = len(load_suite(spec.eval_suite).tasks)
        scored = checkpoints if spec.eval_steps == "all" else 1
    if spec.finetune_tasks:
        from testbed.translation.protocol import load_protocol, parse_sizes

        protocol = load_protocol(spec.finetune_protocol)
        points = (checkpoints if spec.finetune_steps == "all" else 1) + protocol.baseline
        finetunings = (
            len(spec.finetune_tasks) * len(spec.finetune_sizes) * points * (len(protocol.lrs) + len(protocol.seeds) - 1)
        )
        # an epochs protocol's steps grow with the set: its pairs estimated as half-filled max_len windows
        steps = [
            protocol.train_steps(max(1, 2 * size // protocol.max_len)) for size in parse_sizes(spec.finetune_sizes)
        ]
        work = round(sum(steps) / len(steps)) * protocol.batch_size * protocol.max_len
    return tasks, scored, finetunings, work


def plan_rows(runs: list[RunConfig], spec=None, gpu: GpuConfig | None = None) -> list[dict]:
    """One row per run: its sizes, FLOPs and the device-hours it is estimated to take per planned device
    (training; shared trunks counted once), with the runs packed per device (`gpu`: the sweep's
    gpu.runs_per_device, default auto) and the MFU used and where it comes from (pack_, mfu_, mfu_source_
    per device). `spec` (the sweep's StageSpec) adds the CPU hours of its eval and finetuning stages
    (eval_hours, finetune_hours)."""
    gpu = gpu or GpuConfig()
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
            if device.key == CPU:
                row[f"hours_{device.key}"] = cpu_train_seconds(config, plan.params, computed) / 3600
                continue
            pack = runs_per_device(config, gpu, device.key)
            mfu, source = mfu_estimate(device.key, config, pack)
            assert mfu is not None  # a device of DEVICES has an assumed MFU
            # device-hours: k packed runs share the device, each taking k times its hours alone at that MFU
            row[f"hours_{device.key}"] = computed_flops / (device.peak_flops * mfu) / 3600
            row.update({f"pack_{device.key}": pack, f"mfu_{device.key}": mfu, f"mfu_source_{device.key}": source})
        tasks, scored, finetunings, work = stage_counts(config, spec, len(plan.checkpoint_steps))
        row["eval_hours"] = cpu_eval_seconds(config, plan.params, tasks, scored) / 3600 if tasks else 0.0
        row["finetune_hours"] = (
            cpu_finetune_seconds(config, plan.params, finetunings, work) / 3600 if finetunings else 0.0
        )
        rows.append(row)
    return rows


def format_plan(rows: list[dict], workers: int = 1) -> str:
    """The plan as a table and a summary; durations in words. `workers`: the sweep's CPU workers, side by side
    (the measured CPU rates already had two workers share the machine)."""
    stages = any(r.get("eval_hours") or r.get("finetune_hours") for r in rows)
    extra = f" {'eval@cpu':>10} {'ft@cpu':>10}" if stages else ""
    hours = "".join(f" {d.key:>10}" for d in PLANNED)
    width = max([34, *(len(r["run_id"]) for r in rows)])
    header = f"{'run_id':<{width}} {'size':>5} {'N':>12} {'D':>15} {'FLOPs':>9} {'steps':>7}{hours}{extra}"
    lines = [header, "-" * len(header)]
    for r in rows:
        cells = "".join(f" {format_duration(r[f'hours_{d.key}'] * 3600):>10}" for d in PLANNED)
        if stages:
            cells += f" {format_duration(r['eval_hours'] * 3600):>10} {format_duration(r['finetune_hours'] * 3600):>10}"
        lines.append(
            f"{r['run_id']:<{width}} {r['size']:>5} {r['params']:>12,} {r['tokens']:>15,} {r['flops']:>9.2e} "
            f"{r['steps']:>7}{cells}"
        )
    flops, tokens = sum(r["flops"] for r in rows), sum(r["tokens"] for r in rows)
    computed = sum(r["computed_flops"] for r in rows)
    shared = f" ({computed:.3e} computed: WSD runs share their trunks)" if computed < flops else ""
    train = sum(r[f"hours_{CPU}"] for r in rows) * 3600
    evaluation = sum(r.get("eval_hours", 0.0) for r in rows) * 3600
    finetune = sum(r.get("finetune_hours", 0.0) for r in rows) * 3600
    total = train + evaluation + finetune
    parts = [f"training {format_duration(train)}"]
    parts += [f"eval {format_duration(evaluation)}"] * bool(evaluation)
    parts += [f"finetuning {format_duration(finetune)}"] * bool(finetune)
    wall = f"; with {workers} workers side by side about {format_duration(total / workers)} of wall-clock"
    lines.append(
        f"on {CPU}, every stage: {' + '.join(parts)}"
        + (f" = {format_duration(total)}" if len(parts) > 1 else "")
        + " of worker time"
        + (wall if workers > 1 else "")
        + " (measured rates: testbed/sweep/cpu_rates.py)"
    )
    lines.append(
        f"{len(rows)} runs, {tokens:.3e} tokens, {flops:.3e} FLOPs{shared}; training: "
        + ", ".join(
            f"{format_duration(sum(r[f'hours_{d.key}'] for r in rows) * 3600)} on {d.key} ({_mfu_note(d, rows)})"
            for d in PLANNED
        )
    )
    return "\n".join(lines)


def grid_mfu(rows: list[dict], device: Device) -> float:
    """The grid-weighted MFU on `device`: all computed FLOPs over all device-hours at its peak."""
    hours = sum(r[f"hours_{device.key}"] for r in rows)
    return sum(r["computed_flops"] for r in rows) / (device.peak_flops * hours * 3600) if hours else float("nan")


def _mfu_note(device: Device, rows: list[dict]) -> str:
    if device.key == CPU:
        return "measured tokens/s per rung"
    sources = [r[f"mfu_source_{device.key}"] for r in rows]
    measured = sum(s.startswith("measured") for s in sources)
    exact = sum(s == "measured" for s in sources)
    packs = sorted({r[f"pack_{device.key}"] for r in rows})
    if not measured:
        return f"MFU {device.assumed_mfu:.0%} assumed, none measured"
    where = f"measured for {measured}/{len(rows)} runs ({exact} exactly, the others eager, alone or on a like device)"
    if measured < len(rows):
        where += f", {device.assumed_mfu:.0%} assumed for {len(rows) - measured}"
    return (
        f"MFU {grid_mfu(rows, device):.0%} grid-weighted, {where}; "
        f"{'-'.join(str(k) for k in dict.fromkeys((packs[0], packs[-1])))} runs a device"
    )
