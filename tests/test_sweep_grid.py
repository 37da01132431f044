"""The over-training grid: exactly the study's 104 cells, datasets by role, and Slurm resources per run."""

import json
from collections import Counter

import pytest

from testbed.cli import main
from testbed.config import SlurmConfig
from testbed.ladder import plan_run
from testbed.resolve import load_run_config
from testbed.sweep.plan import expected_mfu
from testbed.sweep.slurm import RunJob, resources
from testbed.sweep.stages import StageSpec

GRID = "configs/sweeps/overtrain_grid.yaml"
MULTIPLIERS = [5, 10, 20, 40, 80, 160, 320, 640]
HUB = {"c4": "c4", "rpj": "redpajama", "rw": "refinedweb"}  # the default corpora
SYNTHETIC = {"c4": "syn_en", "rpj": "syn_de", "rw": "syn_fr"}  # their stand-ins with data=synthetic


def _expected(roles: dict[str, str]) -> set[tuple[str, str, float]]:
    """Gadre et al. 2024's grid (arXiv 2403.08540, table 1), cell by cell: (size, dataset, multiplier)."""
    cells = {(s, roles[d], m) for s in ("r1", "r2", "r3", "r4") for d in roles for m in MULTIPLIERS}
    cells.remove(("r4", roles["c4"], 640))  # the 0.411B model at M=640 was trained on RPJ and RW only
    cells |= {(s, roles[d], 20) for s in ("r5", "r6") for d in roles}
    cells |= {("r5", roles["c4"], 80), ("r5", roles["rw"], 320), ("r5", roles["rpj"], 640)}
    return cells


def _plan(capsys, *overrides) -> list[dict]:
    capsys.readouterr()
    assert main(["sweep", "plan", GRID, *overrides, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("data, roles", [(None, HUB), ("synthetic", SYNTHETIC)])
def test_grid_is_the_104_cells_of_the_study(capsys, data, roles):
    plan = _plan(capsys, *([f"data={data}"] if data else []))
    cells = [(p["size"], p["dataset"], p["multiplier"]) for p in plan]
    assert len(cells) == 104 and set(cells) == _expected(roles)
    assert Counter(p["size"] for p in plan) == {"r1": 24, "r2": 24, "r3": 24, "r4": 23, "r5": 6, "r6": 3}
    assert len({p["run_id"] for p in plan}) == 104
    for p in plan:
        assert p["tokens"] == round(p["multiplier"] * p["params"]) and p["flops"] == 6.0 * p["params"] * p["tokens"]
    params = {p["size"]: p["params"] for p in plan}
    assert params["r1"] < params["r2"] < params["r3"] < params["r4"] < params["r5"] < params["r6"]

    capsys.readouterr()
    assert main(["sweep", "plan", GRID, "data=synthetic"]) == 0
    text = capsys.readouterr().out
    assert "dec-r5-syn_de-m640-seed0" in text and text.splitlines()[-1].startswith("104 runs")
    assert "on h100" in text and "on a100" in text


def test_datasets_are_roles_the_corpora_map(capsys):
    plan = _plan(capsys, "data=synthetic", "corpora.synthetic.rw=syn_ro")
    assert {p["dataset"] for p in plan} == {"syn_en", "syn_de", "syn_ro"}
    assert main(["sweep", "plan", GRID, "data=nope"]) == 2
    assert "data='nope'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flops, gpus, minutes",
    [
        (4.88e14, 1, 30),  # r1 at M=5: minutes of one GPU
        (1.35e19, 1, 1440),  # r6 at M=20: 9.5 h on one H100 at 40% MFU fits 12 h
        (7.36e19, 8, 720),  # r5 at M=640: 52 h on one GPU -> 8 GPUs, 6.5 h
    ],
)
def test_resources_follow_the_planned_flops(flops, gpus, minutes):
    res = resources(flops, SlurmConfig())
    assert (res.gpus, res.minutes) == (gpus, minutes)
    assert res.cpus == 8 * gpus and res.mem_gb == 64 * gpus and res.minutes >= res.hours * 60


def test_measured_mfu_sets_the_estimates_of_sizes_measured_on_that_device():
    def config(size, *extra):
        return load_run_config(None, ["model.ladder=reduced", f"model.size={size}", *extra])

    assert expected_mfu("h100", config("r1")) == 0.020  # launch-bound: a twentieth of the assumed 40%
    assert expected_mfu("h100", config("r6", "train.compile=true")) == 0.368
    assert expected_mfu("h100", config("r3", "train.compile=true")) == 0.098  # compiled unmeasured: eager
    assert expected_mfu("a100", config("r1")) == expected_mfu("h100", config("r1", "model.arch=t5")) == 0.40
    # r1 at M=640 (6.2e16 FLOPs): 3 min at the assumed MFU, 53 min at the measured one; its time limit follows
    flops = plan_run(config("r1", "train.multiplier=640")).flops
    assumed, measured = resources(flops, SlurmConfig()), resources(flops, SlurmConfig(), 0.020)
    assert (
        assumed.minutes == 30
        and measured.minutes == 120
        and measured.hours == pytest.approx(flops / (989e12 * 0.020) / 3600)
    )


def test_long_runs_are_capped_and_requeued_and_cpu_jobs_take_no_gpu():
    res = resources(1e21, SlurmConfig(max_hours=24))
    assert res.gpus == 8 and res.minutes == 1440 and res.requeues >= res.hours * 60 * 1.5 / 1440
    cpu = resources(1e12, SlurmConfig(device="cpu-2core", max_gpus=0, cpus_per_gpu=2, mem_gb_per_gpu=4))
    assert (cpu.gpus, cpu.cpus, cpu.mem_gb) == (0, 2, 4)


def test_multi_gpu_runs_train_through_accelerate_launch_then_chain_eval_and_finetune():
    spec = StageSpec("synthetic", ("syn_en_fr",), (2000,))
    train, after = RunJob("/runs/g/r", spec, gpus=4).commands()
    assert train[1:4] == ["-m", "accelerate.commands.launch", "--multi_gpu"]
    assert train[train.index("--num_processes") + 1] == "4"
    assert train[-6:] == ["-m", "testbed.sweep.stages", "/runs/g/r", "--stages", "train", "--quiet"]
    assert after[-2:] == ["--stages", "eval,finetune"] and StageSpec.from_json(after[after.index("--spec") + 1]) == spec
    (single,) = RunJob("/runs/g/r", StageSpec(), gpus=1).commands()
    assert single[1:5] == ["-m", "testbed.sweep.stages", "/runs/g/r", "--quiet"]
    assert StageSpec.from_json(single[-1]).stages == ["train"]


def test_overrides_may_follow_options_and_anything_else_after_them_is_refused(capsys):
    tiny = "configs/sweeps/tiny.yaml"
    assert main(["sweep", "plan", tiny, "--json", "defaults.train.batch_size=16"]) == 0
    assert {run["batch_size"] for run in json.loads(capsys.readouterr().out)} == {16}
    for stray in ("--bogus", "not-a-key-value"):
        with pytest.raises(SystemExit) as exit_info:
            main(["sweep", "plan", tiny, "--json", stray])
        assert exit_info.value.code == 2 and f"unrecognized arguments: {stray}" in capsys.readouterr().err
