"""Packing runs onto one device: how many `auto` packs, what the planner assumes of them, and, on "one device"
of the CPU, that packed runs train exactly as they do alone and that a killed packed run resumes to the same
result while the run beside it finishes."""

from __future__ import annotations

import threading
import time

import pytest

from testbed.checkpoint import list_steps, step_dir
from testbed.config import GpuConfig, load_sweep_config
from testbed.devices import BY_KEY
from testbed.errors import TestbedError
from testbed.ladder import plan_run
from testbed.resolve import load_run_config
from testbed.results import read_rows
from testbed.rundir import owner
from testbed.sweep.expand import expand
from testbed.sweep.local import DeviceShare, run_local
from testbed.sweep.packing import mfu_estimate, run_memory_gb, runs_per_device
from testbed.sweep.plan import format_plan, grid_mfu, plan_rows

AUTO = GpuConfig()


def reduced(size: str, *extra: str):
    return load_run_config(None, ["model.ladder=reduced", f"model.size={size}", "train.compile=true", *extra])


def test_auto_packs_launch_bound_rungs_by_memory_and_never_a_large_one():
    assert runs_per_device(reduced("r1"), AUTO, "h100") == AUTO.max_runs_per_device  # 2% MFU alone
    assert runs_per_device(reduced("r6"), AUTO, "h100") == 1  # 37% compiled: it fills the GPU itself
    assert runs_per_device(reduced("r1"), AUTO, "h100", memory_gb=2 * run_memory_gb(reduced("r1"))) == 1
    assert runs_per_device(reduced("r1"), AUTO, None, memory_gb=80) == 1  # a device not in the table
    assert runs_per_device(reduced("r1"), AUTO, "cpu-2core") == 1  # no device memory: never packed
    assert runs_per_device(reduced("r6"), GpuConfig(runs_per_device="3"), "cpu-2core") == 3  # forced
    assert run_memory_gb(reduced("r1")) < run_memory_gb(reduced("r4")) < run_memory_gb(reduced("r6"))


def test_packed_mfu_is_measured_or_no_gain_and_the_h200_says_it_borrows_the_h100s():
    assert mfu_estimate("h100", reduced("r6")) == (0.368, "measured")
    assert mfu_estimate("h100", reduced("r3")) == (0.098, "measured eager")
    assert mfu_estimate("h100", reduced("r1"), pack=4) == (0.020, "measured eager alone")  # no gain assumed
    assert mfu_estimate("h200", reduced("r6")) == (0.368, "measured on h100")
    assert mfu_estimate("a100", reduced("r1")) == (0.40, "assumed")
    assert mfu_estimate("tpu", reduced("r1")) == (None, "unknown device")


def test_the_plan_gives_packing_sources_and_the_grid_weighted_mfu():
    runs = expand(load_sweep_config("configs/sweeps/overtrain_grid.yaml"))
    rows = plan_rows(runs)
    r1 = next(r for r in rows if r["size"] == "r1")
    assert r1["pack_h100"] == 4 and r1["mfu_source_h100"] == "measured eager alone"
    # unmeasured packing changes no device-hours: the grid's cost stays what was measured alone
    alone = plan_rows(runs, gpu=GpuConfig(runs_per_device="1"))
    assert [r["hours_h100"] for r in rows] == [r["hours_h100"] for r in alone]
    assert 0.10 < grid_mfu(rows, BY_KEY["h100"]) < 0.20  # the issue's ~15%
    summary = format_plan(rows).splitlines()[-1]
    assert "on h100 (MFU 15% grid-weighted, measured for 104/104 runs" in summary and "1-4 runs a device" in summary
    assert "on a100 (MFU 40% assumed, none measured" in summary


def test_runs_per_device_must_be_auto_or_a_count():
    with pytest.raises(TestbedError, match=r"gpu.runs_per_device='0': must be auto or a positive integer"):
        load_sweep_config("configs/sweeps/tiny.yaml", ["gpu.runs_per_device=0"])


def test_a_device_share_admits_k_runs_of_a_kth_and_serves_in_order():
    share, stop, log = DeviceShare(), threading.Event(), []

    def hold(name: str, k: int, seconds: float) -> None:
        with share.hold(k, stop) as held:
            assert held
            log.append(f"+{name}")
            time.sleep(seconds)
            log.append(f"-{name}")

    threads = [threading.Thread(target=hold, args=a) for a in (("a", 2, 0.3), ("b", 2, 0.3), ("big", 1, 0.0))]
    for thread in threads:
        thread.start()
        time.sleep(0.05)  # tickets in this order
    for thread in threads:
        thread.join()
    assert log[:2] == ["+a", "+b"] and log[-2:] == ["+big", "-big"]  # a and b side by side, then big alone


SWEEP = """
name: packed
defaults:
  model: {arch: decoder, ladder: micro}
  data: {validation: [syn_en], val_tokens: 1024}
  train: {log_spaced_checkpoints: 2}
grid:
  - {sizes: [s1], datasets: [syn_en], multipliers: [2]}
  - {sizes: [s2], datasets: [syn_en], multipliers: [4]}
"""
SMALL, KILLED = "dec-s1-syn_en-m2-seed0", "dec-s2-syn_en-m4-seed0"


def _watch(sweep_dir, seen: dict) -> None:
    """Note when both runs are trained at once; SIGKILL KILLED's worker once it has a checkpoint short of
    the end."""
    import os
    import signal

    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (sweep_dir / KILLED / "DONE").exists():
        if owner(sweep_dir / SMALL) and owner(sweep_dir / KILLED):
            seen["together"] = True
        steps, holder = list_steps(sweep_dir / KILLED / "ckpt"), owner(sweep_dir / KILLED)
        if steps and holder and seen.get("together"):
            os.kill(int(holder.split()[1]), signal.SIGKILL)
            seen["step"] = steps[-1]
            return
        time.sleep(0.01)


def _result(run_dir) -> tuple[list, bytes]:
    """What a run computed: its loss rows (no timings) and its final weights."""
    rows = [
        (r["kind"], r["name"], r["metric"], r["step"], r["value"])
        for r in read_rows(run_dir)
        if r["kind"] in ("train_loss", "val_loss")
    ]
    config = load_run_config(run_dir / "config.yaml", [])
    weights = (step_dir(run_dir / "hf", plan_run(config).steps) / "model.safetensors").read_bytes()
    return sorted(rows), weights


def test_packed_runs_equal_runs_alone_and_a_killed_one_resumes_to_the_same(tmp_path):
    sweep = tmp_path / "packed.yaml"
    sweep.write_text(SWEEP)
    alone = expand(load_sweep_config(sweep, [f"out_dir={tmp_path / 'alone'}"]))
    assert run_local(alone, progress=False) == {SMALL: "DONE", KILLED: "DONE"}

    # Both on one device (CUDA_VISIBLE_DEVICES="": the CPU), two workers sharing it
    packed = expand(load_sweep_config(sweep, [f"out_dir={tmp_path / 'packed'}"]))
    sweep_dir, two = tmp_path / "packed" / "packed", GpuConfig(runs_per_device="2")
    seen: dict = {}
    watcher = threading.Thread(target=_watch, args=(sweep_dir, seen))
    watcher.start()
    outcomes = run_local(packed, progress=False, gpus=[""], gpu=two)
    watcher.join()
    assert seen.get("together"), "the packed runs never trained side by side"
    assert outcomes[SMALL] == "DONE" and outcomes[KILLED].startswith("KILLED (SIGKILL)"), outcomes
    assert run_local(packed, progress=False, gpus=[""], gpu=two) == {SMALL: "DONE", KILLED: "DONE"}
    resumed = [r for r in read_rows(sweep_dir / KILLED) if r["kind"] == "val_loss"]
    assert min(r["step"] for r in resumed) <= seen["step"] and len({r["step"] for r in resumed}) == len(resumed)
    for rid in (SMALL, KILLED):
        assert _result(sweep_dir / rid) == _result(tmp_path / "alone" / "packed" / rid), rid
