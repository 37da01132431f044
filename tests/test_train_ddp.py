"""Two processes started by `accelerate launch --multi_gpu` (the command a Slurm job runs on a multi-GPU
allocation; here DDP over gloo on the CPU), each accumulating micro-batches of its half of the global batch,
train the same model as one process: the multi-device code path, testable without GPUs."""

import json
import os
import subprocess

import torch

from testbed.checkpoint import list_steps, step_dir
from testbed.config import load_run_config
from testbed.results import read_rows
from testbed.sweep.slurm import accelerate_command
from testbed.train import prepare_run_dir, train

ARGS = ["model.size=s1", "train.multiplier=1", "data.validation=[syn_en]", "data.val_tokens=2048",
        "train.micro_batch_size=8"]


def test_two_processes_match_one(tmp_path):
    single = train(load_run_config(None, [*ARGS, f"out_dir={tmp_path / 'one'}"]), progress=False)
    env = dict(os.environ, OMP_NUM_THREADS="1", TESTBED_TRACK="none")
    double = prepare_run_dir(load_run_config(None, [*ARGS, f"out_dir={tmp_path / 'two'}"]))
    subprocess.run(accelerate_command(double, gpus=2, port=29517), check=True, env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=300)
    assert double.name == single.name and (double / "DONE").is_file()
    meta = json.loads((double / "meta.json").read_text())
    assert meta["processes"] == 2 and meta["distributed"] == "DistributedType.MULTI_CPU"
    step = list_steps(single / "ckpt")[-1]
    a = torch.load(step_dir(single / "ckpt", step) / "state.pt", weights_only=False)
    b = torch.load(step_dir(double / "ckpt", step) / "state.pt", weights_only=False)
    for name, tensor in a["model"].items():
        torch.testing.assert_close(tensor, b["model"][name], rtol=1e-4, atol=1e-5)
    val = [[(r["step"], round(r["value"], 4)) for r in read_rows(d) if r["kind"] == "val_loss"] for d in (single, double)]
    assert val[0] == val[1]
    tokens = [sum(r["value"] for r in read_rows(d) if r["metric"] == "tokens" and r["final"]) for d in (single, double)]
    assert tokens[0] == tokens[1] == meta["tokens_seen"]
