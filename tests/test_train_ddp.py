"""Two processes started by `accelerate launch --multi_gpu` (the command a Slurm job runs on a multi-GPU
allocation; here over gloo on the CPU), each accumulating micro-batches of its half of the global batch,
train the same model as one process: DDP, and FSDP2 sharding preempted at a measured checkpoint and resumed.
The multi-device code path, testable without GPUs."""

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

from testbed.checkpoint import list_steps, step_dir
from testbed.resolve import load_run_config
from testbed.results import read_rows
from testbed.rundir import RunDir
from testbed.sweep.slurm import accelerate_command
from testbed.train import train

ARGS = [
    "model.size=s1",
    "train.multiplier=1",
    "data.validation=[syn_en]",
    "data.val_tokens=2048",
    "train.micro_batch_size=8",
]
FSDP_ON_CPU = Path(__file__).with_name("fsdp_on_cpu.py")


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The one-process run of an architecture, trained once per test module."""
    runs = {}

    def run(arch: str) -> Path:
        if arch not in runs:
            out = tmp_path_factory.mktemp(f"one-{arch}")
            runs[arch] = train(load_run_config(None, [*ARGS, f"model.arch={arch}", f"out_dir={out}"]), progress=False)
        return runs[arch]

    return run


def _prepare(config) -> Path:
    return RunDir.of(config).prepare(config).path


def _launch(run_dir: Path, port: int, fsdp: bool, env: dict | None = None) -> int:
    """The multi-GPU Slurm job's command on two CPU processes (FSDP: through the FSDP-on-CPU entry point)."""
    command = accelerate_command(run_dir, gpus=2, port=port)
    if fsdp:
        at = command.index("testbed.sweep.stages")
        command[at - 1 : at + 1] = [str(FSDP_ON_CPU)]
    env = dict(os.environ, OMP_NUM_THREADS="1", TESTBED_TRACK="none", **(env or {}))
    return subprocess.run(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300
    ).returncode


def _assert_same_training(single: Path, double: Path) -> dict:
    """Same final weights, validation losses and tokens as the one-process run; returns the run's meta."""
    assert double.name == single.name and (double / "DONE").is_file()
    meta = json.loads((double / "meta.json").read_text())
    step = list_steps(single / "ckpt")[-1]
    a = torch.load(step_dir(single / "ckpt", step) / "state.pt", weights_only=False)
    b = torch.load(step_dir(double / "ckpt", step) / "state.pt", weights_only=False)
    assert a["model"].keys() == b["model"].keys()
    for name, tensor in a["model"].items():
        torch.testing.assert_close(tensor, b["model"][name], rtol=1e-4, atol=1e-5)
    val = [
        [(r["step"], round(r["value"], 4)) for r in read_rows(d) if r["kind"] == "val_loss"] for d in (single, double)
    ]
    assert val[0] == val[1]
    tokens = [sum(r["value"] for r in read_rows(d) if r["metric"] == "tokens" and r["final"]) for d in (single, double)]
    assert tokens[0] == tokens[1] == meta["tokens_seen"]
    return meta


def test_two_processes_match_one(tmp_path, one_process):
    single = one_process("decoder")
    double = _prepare(load_run_config(None, [*ARGS, f"out_dir={tmp_path}"]))
    assert _launch(double, port=29517, fsdp=False) == 0
    meta = _assert_same_training(single, double)
    assert meta["processes"] == 2 and meta["distributed"] == "DistributedType.MULTI_CPU"


@pytest.mark.parametrize(("arch", "port"), [("decoder", 29518), ("t5", 29519)])  # xdist may run both at once
def test_fsdp_preempted_and_resumed_matches_one_process(tmp_path, one_process, arch, port):
    single = one_process(arch)
    double = _prepare(
        load_run_config(None, [*ARGS, f"model.arch={arch}", "train.distributed=fsdp", f"out_dir={tmp_path}"])
    )
    assert _launch(double, port=port, fsdp=True, env={"TESTBED_INJECT_SIGTERM": f"{double.name}@5"}) != 0
    assert list_steps(double / "ckpt")[-1] == 5 and not (double / "DONE").exists()
    assert _launch(double, port=port, fsdp=True) == 0
    meta = _assert_same_training(single, double)
    assert meta["processes"] == 2 and meta["distributed"] == "DistributedType.FSDP"
    # the Hugging Face export gathers the shards: the same model as the one-process run's export
    step = list_steps(single / "hf")[-1]
    ids = torch.randint(0, 400, (2, 32), generator=torch.Generator().manual_seed(0))
    auto = AutoModelForSeq2SeqLM if arch == "t5" else AutoModelForCausalLM
    logits = [
        auto.from_pretrained(d / "hf" / f"step_{step:06d}")(input_ids=ids, labels=ids).logits for d in (single, double)
    ]
    torch.testing.assert_close(logits[0], logits[1], rtol=1e-4, atol=1e-4)


def test_fsdp_wsd_branches_share_the_trunk_and_match_one_process(tmp_path):
    """Under FSDP every process takes part in the shared trunk's saves (a collective), and only the main one
    writes them: the M=4 run branches from the trunk the M=2 run left, and both end as one process does."""
    wsd = [*ARGS, "train.schedule=wsd", "train.warmup_steps=2"]
    for multiplier in (2, 4):
        run = [*wsd, f"train.multiplier={multiplier}"]
        single = train(load_run_config(None, [*run, f"out_dir={tmp_path / 'one'}"]), progress=False)
        double = _prepare(load_run_config(None, [*run, "train.distributed=fsdp", f"out_dir={tmp_path / 'two'}"]))
        assert _launch(double, port=29520, fsdp=True) == 0
        meta = _assert_same_training(single, double)
        computed = json.loads((single / "meta.json").read_text())["steps_computed"]
        assert meta["steps_computed"] == computed
        if multiplier == 4:  # it did not redo the trunk steps the M=2 run left (23 of 38 steps computed)
            assert computed < meta["plan"]["steps"]
