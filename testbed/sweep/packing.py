"""Several runs on one GPU: how many a device takes, and the MFU they reach together.

A small rung cannot fill a large GPU alone: on an H100 the 4M-parameter r1 reached 2% MFU eager and r4 12%
(benchmarks/gpu/README.md), the GPU waiting on kernel launches. Runs packed k to a device (each its own
process, own run dir, own checkpoints: a packed run is exactly the run it would be alone) overlap those
gaps. `gpu.runs_per_device` says how many: a number forces it; `auto` sizes it per run from the device's
memory over the run's estimated memory, and from the measured packing gain (testbed/devices.py
MEASURED_MFU, keyed by k): the k that measured best, or, where no k > 1 is measured for the rung, up to
`gpu.max_runs_per_device` for a launch-bound rung (expected MFU alone under LAUNCH_BOUND_MFU) and 1 for any
other. The planner never assumes a gain that was not measured: unmeasured, k packed runs reach together
the MFU one reaches alone, so each takes k times as long (device-hours unchanged, time limits long).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from testbed.config import GpuConfig, RunConfig
from testbed.devices import BY_KEY, MEASURED_MFU, by_name
from testbed.ladder import load_ladder, plan_run

LAUNCH_BOUND_MFU = 0.25  # alone below this, a rung leaves the GPU idle enough that `auto` packs it
USABLE_MEMORY = 0.85  # of the device's memory: the rest for fragmentation and the allocator's caches
STATE_BYTES_PER_PARAM = 18  # fp32 weights, gradients, AdamW's two moments, and autocast's bf16 copy
ACTIVATION_BYTES = 34  # per token, per d_model, per layer: bf16 without recomputation, flash attention
LOGIT_BYTES = 10  # per token, per vocabulary entry: bf16 logits, their fp32 copy for the loss, its gradient
PROCESS_GB = 1.5  # per process: the CUDA context, cuBLAS workspaces, compiled kernels


def _measured(device: str, config: RunConfig, compiled: bool) -> tuple[dict[int, float], str]:
    """{runs packed: MFU} measured for `config`'s rung on `device` (or, where it has none, on the device it
    is `like`), and where: "" for the device itself, " on h100" for a stand-in."""
    for where in dict.fromkeys((device, BY_KEY[device].like if device in BY_KEY else "")):
        key = (where, config.model.arch, config.model.ladder, config.model.size, compiled)
        found = {k[-1]: mfu for k, mfu in MEASURED_MFU.items() if k[:-1] == key}
        if found:
            return found, "" if where == device else f" on {where}"
    return {}, ""


def mfu_estimate(device: str, config: RunConfig, pack: int = 1) -> tuple[float | None, str]:
    """(MFU, where it comes from) of `pack` runs like `config` together on `device` (a key of
    testbed/devices.py). Measured if known, else the nearest measured (a compiled run of a size measured only
    eager gets the eager number; packed runs measured only alone get the number alone: no gain assumed; a
    device with no measurement of the rung, its `like` device's), else the device's assumed MFU; (None,
    "unknown device") for a device not in the table."""
    compiled = bool(config.train.compile)
    for mode in dict.fromkeys((compiled, False)):
        measured, where = _measured(device, config, mode)
        for k in dict.fromkeys((pack, 1)):
            if k in measured:
                notes = [" eager"] * (mode != compiled) + [" alone"] * (k != pack)
                return measured[k], "measured" + "".join(notes) + where
    if device not in BY_KEY:
        return None, "unknown device"
    return BY_KEY[device].assumed_mfu, "assumed"


def run_memory_gb(config: RunConfig) -> float:
    """An estimate of the device memory one training process of `config` needs (GB), from its parameters,
    micro-batch and shape; errs high (no activation recomputation counted)."""
    plan = plan_run(config)
    rung = load_ladder(config.model.ladder).rungs(config.model.arch)[config.model.size]
    layers = rung.layers * (2 if config.model.arch == "t5" else 1)  # t5: `layers` is each stack's depth
    tokens = plan.micro_batch(1) * plan.seq_len
    activations = tokens * (ACTIVATION_BYTES * rung.d_model * layers + LOGIT_BYTES * plan.vocab_size)
    return (STATE_BYTES_PER_PARAM * plan.params + activations) / 1e9 + PROCESS_GB


def runs_per_device(config: RunConfig, gpu: GpuConfig, device: str | None, memory_gb: float | None = None) -> int:
    """How many runs like `config` share one device (a key of testbed/devices.py, or None: not in the table)
    of `memory_gb` (default: the table's). A forced number as is; `auto` as the module says."""
    if gpu.runs_per_device != "auto":
        return int(gpu.runs_per_device)
    memory = memory_gb or (BY_KEY[device].memory_gb if device in BY_KEY else 0.0)
    if not memory or device is None:
        return 1
    fits = int(memory * USABLE_MEMORY // run_memory_gb(config))
    measured, _ = _measured(device, config, bool(config.train.compile))
    if any(k > 1 for k in measured):
        best = max(measured, key=lambda k: (measured[k], -k))
    else:
        alone, _ = mfu_estimate(device, config)
        best = gpu.max_runs_per_device if alone is not None and alone < LAUNCH_BOUND_MFU else 1
    return max(1, min(fits, best))


def local_device() -> tuple[str | None, float | None]:
    """(device key, memory in GB) of this machine's first visible GPU; (None, None) without one."""
    try:
        import torch

        if not torch.cuda.is_available():
            return None, None
        found = by_name(torch.cuda.get_device_name(0))
        return (found.key if found else None), torch.cuda.get_device_properties(0).total_memory / 1e9
    except Exception:
        return None, None


@contextmanager
def mps_daemon(wanted: bool, directory: Path) -> Iterator[dict[str, str]]:
    """CUDA MPS for packed processes, where asked for and `nvidia-cuda-mps-control` exists: its kernels then
    run side by side instead of time-sliced. Yields the environment the workers need (empty: no MPS)."""
    control = shutil.which("nvidia-cuda-mps-control")
    if not wanted or control is None:
        if wanted:
            sys.stderr.write("gpu.mps: nvidia-cuda-mps-control not found; packed runs time-share the GPU\n")
        yield {}
        return
    env = {"CUDA_MPS_PIPE_DIRECTORY": str(directory / "pipe"), "CUDA_MPS_LOG_DIRECTORY": str(directory / "log")}
    for path in env.values():
        Path(path).mkdir(parents=True, exist_ok=True)
    subprocess.run([control, "-d"], env={**os.environ, **env}, check=True)
    try:
        yield env
    finally:
        subprocess.run([control], input="quit\n", text=True, env={**os.environ, **env}, check=False)
