"""A sweep's grid -> the run configs it stands for (one per size x dataset x multiplier x seed x axis values).

A block's `axes` map any other run key (`train.lr`) to values; each combination is merged onto the run config
as a command-line override is (so checked the same way), and the keys are recorded in the config's `axes`,
which adds a readable suffix per key to the run id (`...-seed0-lr0.003`).

A grid may name its datasets by role (`c4`, `rpj`, `rw`) and let `corpora[data]` say which mixture plays
each role, so one grid runs on the hub corpora or, with `data=synthetic`, on the embedded ones.
"""

from __future__ import annotations

import copy
import itertools

from testbed.config import RunConfig, SweepConfig
from testbed.config_layers import with_values
from testbed.data.sources import mixture
from testbed.errors import TestbedError
from testbed.ladder import run_id
from testbed.resolve import validate_run


def expand(sweep: SweepConfig, source: str = "sweep") -> list[RunConfig]:
    runs: dict[str, RunConfig] = {}
    for i, block in enumerate(sweep.grid):
        combinations = axis_values(block.axes)
        for size in block.sizes:
            for role in block.datasets:
                dataset = _resolve(sweep, role, f"{source}: grid[{i}].datasets")
                weights = mixture(dataset, f"{source}: grid[{i}].datasets")
                for multiplier, seed, values in itertools.product(block.multipliers, block.seeds, combinations):
                    config = copy.deepcopy(sweep.defaults)
                    config.sweep, config.out_dir = sweep.name, sweep.out_dir
                    config.model.size = size
                    config.data.name, config.data.mixture = dataset, weights
                    config.train.multiplier, config.train.seed = float(multiplier), seed
                    if values:
                        config = with_values(config, values, source, f"grid[{i}].axes.")
                    config.axes = sorted(values)
                    validate_run(config, f"{source}: grid[{i}]")
                    rid = run_id(config)
                    if rid in runs:
                        raise TestbedError(f"{source}: grid[{i}]: run {rid} appears twice in the grid")
                    runs[rid] = config
    return list(runs.values())


def axis_values(axes: dict[str, list]) -> list[dict]:
    """Every combination of a block's axes, as key -> value ([{}] without axes)."""
    keys = list(axes)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(axes[k] for k in keys))]


def _resolve(sweep: SweepConfig, role: str, where: str) -> str:
    """The mixture that plays `role` under the sweep's corpus set (the role itself when none is set)."""
    if sweep.data is None:
        return role
    roles = sweep.corpora[sweep.data]
    if role not in roles:
        raise TestbedError(f"{where}: dataset={role!r}: no such role in corpora.{sweep.data} ({', '.join(roles)})")
    return roles[role]
