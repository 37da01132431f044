"""A sweep's grid -> the run configs it stands for (one per size x dataset x multiplier x seed)."""

from __future__ import annotations

import copy

from testbed.config import RunConfig, SweepConfig, validate_run
from testbed.data.sources import mixture
from testbed.errors import TestbedError
from testbed.ladder import run_id


def expand(sweep: SweepConfig, source: str = "sweep") -> list[RunConfig]:
    runs: dict[str, RunConfig] = {}
    for i, block in enumerate(sweep.grid):
        for size in block.sizes:
            for dataset in block.datasets:
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
