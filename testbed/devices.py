"""The one table of devices: peak FLOP/s (for MFU), memory (for packing runs onto one device) and the MFU a run
is assumed or measured to reach (for planning and Slurm time limits). Dense, no sparsity: bf16 tensor-core
peaks and memory from the vendors' data sheets.

A device the driver reports by name (`torch.cuda.get_device_name`) matches the longest `match` it contains.
Planning names a device by its `key` (`slurm.device`, the columns of `testbed sweep plan`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Device:
    key: str  # how a sweep names it (slurm.device)
    match: str  # a substring of the driver's device name
    peak_flops: float
    assumed_mfu: float = 0.40  # planning: the share of the peak a run is assumed to reach where not measured
    plan: bool = False  # one of the devices `testbed sweep plan` estimates hours for
    memory_gb: float = 0.0  # device memory (GB, as data sheets count); 0: unknown, runs are never packed
    # a device whose measured MFU stands in where this one has none (labelled so in plans): the same compute
    like: str = ""


DEVICES: tuple[Device, ...] = (
    # The CPU line is the measured fp32 rate of the micro ladder on 2 cores (planning only; no MFU in runs).
    Device("cpu-2core", "", 5.0e10, 1.0, plan=True),
    Device("a100", "A100", 312e12, plan=True, memory_gb=80),
    Device("h100", "H100", 989e12, plan=True, memory_gb=80),  # SXM
    Device("h100-pcie", "H100 PCIe", 756e12, memory_gb=80),
    Device("h100-nvl", "H100 NVL", 835e12, memory_gb=94),
    Device("h200", "H200", 989e12, plan=True, memory_gb=141, like="h100"),  # an H100 with more, faster memory
    Device("gh200", "GH200", 989e12, memory_gb=96),
    Device("b200", "B200", 2250e12, memory_gb=180),
    Device("l40s", "L40S", 362e12, memory_gb=48),
    Device("l4", "L4", 121e12, memory_gb=24),
    Device("rtx4090", "RTX 4090", 165e12, memory_gb=24),
    Device("mi300x", "MI300X", 1307e12, memory_gb=192),
)
BY_KEY = {device.key: device for device in DEVICES}
PLANNED = tuple(device for device in DEVICES if device.plan)

# MFU measured with testbed's own loop (benchmarks/gpu/README.md: bf16, SDPA, fused AdamW, the ladder's
# batches), per (device, architecture, ladder, size, compiled, runs packed on the device). With k runs packed,
# the value is the device's MFU summed over the k runs (each run then reaches about a k-th of it). Small rungs
# are launch-bound and reach a small share of the assumed MFU alone, so where a rung was measured, estimates
# and Slurm time limits use it. Only numbers from benchmarks/gpu/ go here: nothing packed is measured yet,
# nor anything on an H200 (scripts/gpu_check.sh measures both).
MEASURED_MFU: dict[tuple[str, str, str, str, bool, int], float] = {
    ("h100", "decoder", "reduced", "r1", False, 1): 0.020,
    ("h100", "decoder", "reduced", "r2", False, 1): 0.071,
    ("h100", "decoder", "reduced", "r3", False, 1): 0.098,
    ("h100", "decoder", "reduced", "r4", False, 1): 0.121,
    ("h100", "decoder", "reduced", "r5", False, 1): 0.170,
    ("h100", "decoder", "reduced", "r6", False, 1): 0.194,
    ("h100", "decoder", "reduced", "r6", True, 1): 0.368,
}


def by_name(name: str) -> Device | None:
    """The device whose `match` is the longest substring of a driver-reported name, or None."""
    matches = [device for device in DEVICES if device.match and device.match in name]
    return max(matches, key=lambda device: len(device.match)) if matches else None
