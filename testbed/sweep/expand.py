"""A sweep's grid -> the run configs it stands for (one per size x dataset x multiplier x seed).

A grid may name its datasets by role (`c4`, `rpj`, `rw`) and let `corpora[data]` say which mixture plays
each role, so one grid runs on the hub corpora or, with `data=synthetic`, on the embedded ones.
"""

from __future__ import annotations

import copy

from testbed.config import RunConfig, SweepConfig
from testbed.data.sources import mixture
from testbed.errors import TestbedError
from testbed.ladder import run_id
from testbed.resolve import validate_run


def expand(sweep: SweepConfig, source: str = "sweep") -> list[RunConfig]:
    runs: dict[str, RunConfig] = {}
    for i, block in enumerate(sweep.grid):
        for size in block.sizes:
            for role in block.datasets:
                dataset = _resolve(sweep, role, f"{source}: grid[{i}].datasets")
                weights = mixture(dataset, f"{source}: grid[{i}].datasets")
                for multiplier in block.multipliers:
                    for seed in block.seeds:
                        config = copy.deepcopy(sweep.defaults)
                        config.sweep, config.out_dir = sweep.name, sweep.out_dir
                        config.model.size = size
                        config.data.name, config.data.mixture = dataset, weights
                        config.train.multiplier, config.train.seed = float(multiplier), seed
                        validate_run(config, f"{source}: grid[{i}]")
                        rid = run_id(config)
                        if rid in runs:
                            raise TestbedError(f"{source}: grid[{i}]: run {rid} appears twice in the grid")
                        runs[rid] = config
    return list(runs.values())


def _resolve(sweep: SweepConfig, role: str, where: str) -> str:
    """The mixture that plays `role` under the sweep's corpus set (the role itself when none is set)."""
    if sweep.data is None:
        return role
    roles = sweep.corpora[sweep.data]
    if role not in roles:
        raise TestbedError(f"{where}: dataset={role!r}: no such role in corpora.{sweep.data} ({', '.join(roles)})")
    return roles[role]
