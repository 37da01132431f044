"""The one table of devices: peak FLOP/s (for MFU) and the MFU a run is assumed or measured to reach (for
planning and Slurm time limits). Dense, no sparsity: bf16 tensor-core peaks from the vendors' data sheets.

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


DEVICES: tuple[Device, ...] = (
    # The CPU line is the measured fp32 rate of the micro ladder on 2 cores (planning only; no MFU in runs).
    Device("cpu-2core", "", 5.0e10, 1.0, plan=True),
    Device("a100", "A100", 312e12, plan=True),
    Device("h100", "H100", 989e12, plan=True),  # SXM
    Device("h100-pcie", "H100 PCIe", 756e12),
    Device("h100-nvl", "H100 NVL", 835e12),
    Device("h200", "H200", 989e12),
    Device("gh200", "GH200", 989e12),
    Device("b200", "B200", 2250e12),
    Device("l40s", "L40S", 362e12),
    Device("l4", "L4", 121e12),
    Device("rtx4090", "RTX 4090", 165e12),
    Device("mi300x", "MI300X", 1307e12),
)
BY_KEY = {device.key: device for device in DEVICES}
PLANNED = tuple(device for device in DEVICES if device.plan)

# MFU measured with testbed's own loop on one H100 (benchmarks/gpu/README.md: bf16, SDPA, fused AdamW, the
# ladder's batches), per (device, architecture, ladder, size, compiled). Small rungs are launch-bound and
# reach a small share of the assumed MFU, so where a rung was measured, estimates and Slurm time limits use it.
MEASURED_MFU: dict[tuple[str, str, str, str, bool], float] = {
    ("h100", "decoder", "reduced", "r1", False): 0.020,
    ("h100", "decoder", "reduced", "r2", False): 0.071,
    ("h100", "decoder", "reduced", "r3", False): 0.098,
    ("h100", "decoder", "reduced", "r4", False): 0.121,
    ("h100", "decoder", "reduced", "r5", False): 0.170,
    ("h100", "decoder", "reduced", "r6", False): 0.194,
    ("h100", "decoder", "reduced", "r6", True): 0.368,
}


def by_name(name: str) -> Device | None:
    """The device whose `match` is the longest substring of a driver-reported name, or None."""
    matches = [device for device in DEVICES if device.match and device.match in name]
    return max(matches, key=lambda device: len(device.match)) if matches else None
