"""The slurm backend end to end on a real Slurm (scripts/slurm_local.sh start): submit, train, evaluate,
finetune (each run's stages chained in its job), requeue after the time-limit warning with resume from the
newest checkpoint, status, collected rows.

Without Slurm the test skips with the reason; with TESTBED_REQUIRE_SLURM=1 (CI) it fails instead.
"""

import json
import os
import pickle
import shutil
import subprocess
import time

import pandas as pd
import pytest
from polling import wait_for

from testbed.checkpoint import list_steps, step_dir
from testbed.cli import main
from testbed.config import SlurmConfig, load_sweep_config
from testbed.resolve import load_run_config
from testbed.rundir import RunDir
from testbed.sweep import slurm
from testbed.sweep.expand import expand
from testbed.sweep.stages import TRAIN_ONLY

SWEEP = """
name: slurm_e2e
eval_suite: synthetic
defaults:
  model: {arch: decoder, ladder: micro}
  data: {validation: [syn_en], val_tokens: 1024}
  train: {log_spaced_checkpoints: 2}
  track: none
slurm: {device: cpu-2core, max_gpus: 0, cpus_per_gpu: 1, mem_gb_per_gpu: 1}
finetune: {tasks: [syn_en-syn_fr], sizes: [1000], steps: final, protocol: finetune_micro}
grid:
  - {sizes: [s1], datasets: [syn_en], multipliers: [1]}
  - {sizes: [s2], datasets: [syn_en], multipliers: [6]}
"""
SHORT, LONG = "dec-s1-syn_en-m1-seed0", "dec-s2-syn_en-m6-seed0"
MICRO = ["model.ladder=micro", "model.size=s1", "data.validation=[syn_en]", "data.val_tokens=1024"]


def _slurm_missing() -> str | None:
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return "Slurm is not installed (no sbatch/sinfo); `scripts/slurm_local.sh start` sets up one node"
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as err:
        return f"sinfo failed: {err}"
    states = out.stdout.split()
    if out.returncode or not {"idle", "mixed", "allocated"} & set(states):
        return f"no Slurm node is up (sinfo: {(out.stdout + out.stderr).strip() or 'nothing'})"
    return None


@pytest.fixture
def slurm_cluster():
    reason = _slurm_missing()
    if reason and os.environ.get("TESTBED_REQUIRE_SLURM") == "1":
        pytest.fail(f"TESTBED_REQUIRE_SLURM=1 but {reason}")
    if reason:
        pytest.skip(reason)


def test_sweep_on_slurm_trains_evaluates_finetunes_requeues_and_collects(slurm_cluster, tmp_path, runs_dir, capsys):
    path = tmp_path / "slurm_e2e.yaml"
    path.write_text(SWEEP)
    out = f"out_dir={runs_dir}"
    sweep_dir, long_dir = runs_dir / "slurm_e2e", runs_dir / "slurm_e2e" / LONG
    started = time.monotonic()

    assert main(["sweep", "run", str(path), out, "--backend", "slurm"]) == 0
    assert "2 runs submitted" in capsys.readouterr().out
    jobs = slurm.job_records(sweep_dir)
    assert set(jobs) == {SHORT, LONG}
    assert main(["sweep", "status", str(path), out, "--json"]) == 0
    status = {r["run_id"]: r for r in json.loads(capsys.readouterr().out)}
    assert {r["state"] for r in status.values()} <= {"QUEUED", "RUNNING", "DONE", "PARTIAL"}
    assert status[LONG]["job_id"] == jobs[LONG]["job_id"] and status[LONG]["log"].endswith("_log.err")

    # Slurm's time-limit warning (what --signal=USR2@120 sends) once the long run has a checkpoint:
    # the job checkpoints through SIGTERM and requeues itself; the requeued job resumes.
    job = jobs[LONG]["job_id"]
    wait_for(
        lambda: list_steps(long_dir / "ckpt") and not (long_dir / "DONE").exists(),
        240,
        "the long run's first checkpoint",
    )
    first = list_steps(long_dir / "ckpt")[-1]
    warned = time.time()
    subprocess.run(["scancel", "--signal=USR2", job], check=True)
    log = sweep_dir / "slurm_logs" / job / f"{job}_0_log.out"
    wait_for(lambda: "Requeued job" in log.read_text(), 120, "the requeue")
    # A requeued job waits about two minutes (BeginTime) before it is eligible again: skip the wait.
    wait_for(
        lambda: (
            "BeginTime"
            in subprocess.run(["squeue", "-h", "-j", job, "-o", "%r"], capture_output=True, text=True).stdout
        ),
        60,
        "the requeued job to pend",
    )
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True)

    outcomes = slurm.wait(
        load_sweep_config(path, [out]), expand(load_sweep_config(path, [out])), poll_s=1, timeout_s=400
    )
    assert outcomes == {SHORT: "DONE", LONG: "DONE"}, outcomes
    print(f"slurm sweep: {time.monotonic() - started:.0f} s")

    text = log.read_text()
    assert text.count("Starting with JobEnvironment") == 2  # the same job ran twice
    err = (sweep_dir / "slurm_logs" / job / f"{job}_0_log.err").read_text()
    assert "SIGTERM: checkpointed at step" in err
    # Resumed, not restarted: the checkpoint exported before the warning was not written again.
    assert step_dir(long_dir / "hf", first).stat().st_mtime < warned

    # A re-run finds everything done: nothing submitted, nothing to wait for.
    assert main(["sweep", "run", str(path), out, "--backend", "slurm", "--wait"]) == 0
    assert "2/2 runs DONE" in capsys.readouterr().out
    assert set(slurm.job_records(sweep_dir)) == {SHORT, LONG}
    assert len((sweep_dir / slurm.JOBS_FILE).read_text().splitlines()) == 2

    table = tmp_path / "results.parquet"
    assert main(["results", "collect", str(sweep_dir), "--out", str(table)]) == 0
    rows = pd.read_parquet(table)
    final = rows[(rows.kind == "val_loss") & rows.final]
    assert set(final.run_id) == {SHORT, LONG}
    tasks = rows[rows.kind == "task"]
    assert set(tasks.run_id) == {SHORT, LONG} and tasks.value.notna().all()
    translation = rows[rows.kind == "translation"]  # baseline (step 0) and the final checkpoint, per run
    assert {(r, s > 0) for r, s in zip(translation.run_id, translation.step, strict=True)} == {
        (rid, trained) for rid in (SHORT, LONG) for trained in (False, True)
    }
    assert json.loads((long_dir / "stages" / "finetune.json").read_text())["state"] == "DONE"
    resumed = rows[(rows.run_id == LONG) & (rows.kind == "val_loss")]
    assert resumed.step.is_unique


# Packing small runs onto a job's one GPU: what can be checked without Slurm (resources, grouping, commands,
# and a packed job's runs side by side on the CPU, each in its own process).
PACKED = SlurmConfig(device="h100", max_gpus=8, target_hours=12)


def test_a_packed_run_gets_one_gpu_and_the_time_it_takes_sharing_it():
    alone = slurm.resources(1e17, PACKED, mfu=0.02)
    packed = slurm.resources(1e17, PACKED, mfu=0.02, pack=4)  # no gain measured: the same MFU for the four
    assert alone.gpus == packed.gpus == 1 and (alone.pack, packed.pack) == (1, 4)
    assert packed.hours == pytest.approx(4 * alone.hours) and packed.minutes > alone.minutes
    assert slurm.resources(1e17, PACKED, mfu=0.08, pack=4).hours == pytest.approx(alone.hours)  # a 4x gain
    big = slurm.resources(1e21, PACKED, mfu=0.4, pack=4)  # needs several GPUs: never packed
    assert big.gpus > 1 and big.pack == 1


def test_runs_of_one_group_become_jobs_of_pack_runs_each(tmp_path):
    spec = TRAIN_ONLY
    dirs = [tmp_path / f"run{i}" for i in range(5)]
    res = slurm.resources(1e17, PACKED, mfu=0.02, pack=2)
    calls = slurm.job_calls(dirs, spec, res)
    assert [chunk for chunk, _ in calls] == [dirs[0:2], dirs[2:4], dirs[4:]]
    packed, last = calls[0][1], calls[-1][1]
    assert isinstance(packed, slurm.PackedJob) and isinstance(last, slurm.RunJob)
    commands = packed.commands()
    assert [c[c.index("testbed.sweep.stages") + 1] for c in commands] == [str(d) for d in dirs[:2]]
    assert pickle.loads(pickle.dumps(packed)).commands() == commands  # what submitit pickles, and requeues


def test_a_packed_job_runs_its_runs_side_by_side_and_a_failure_fails_only_its_own(tmp_path, monkeypatch):
    runs = [
        load_run_config(None, [*MICRO, f"train.multiplier={m}", f"out_dir={tmp_path}", "sweep=packed"]) for m in (1, 2)
    ]
    dirs = [RunDir.of(config).prepare(config).path for config in runs]
    monkeypatch.setenv("TESTBED_INJECT_NAN", f"{dirs[0].name}@2")
    with pytest.raises(RuntimeError, match=rf"FAILED {dirs[0].name}: exit code") as err:
        slurm.PackedJob([str(d) for d in dirs], TRAIN_ONLY)()
    assert f"{dirs[1].name}: DONE" in str(err.value)
    assert (dirs[1] / "DONE").exists() and not (dirs[0] / "DONE").exists()
