"""A run is owned by one live process; a damaged or crafted training state never trains on; nothing runs from
a run directory; leftovers are cleaned; a SIGTERM at any moment is a clean stop; any cwd works."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from polling import wait_for

from testbed.checkpoint import CHECKSUM, STATE, list_steps, step_dir
from testbed.cli import main
from testbed.preempt import Preempted
from testbed.resolve import load_run_config
from testbed.rundir import RunDir, owner
from testbed.sweep.local import run_local
from testbed.train import train

REPO = Path(__file__).resolve().parents[1]
RUN = ["model.size=s1", "train.multiplier=2", "data.validation=[syn_en]", "data.val_tokens=1024"]
RUN_ID = "dec-s1-syn_en-m2-seed0"
LONG = ["model.size=s2", "train.multiplier=40", "data.validation=[syn_en]", "data.val_tokens=1024"]


def _final_weights(run_dir: Path) -> dict:
    steps = list_steps(run_dir / "ckpt")
    return torch.load(step_dir(run_dir / "ckpt", steps[-1]) / STATE, weights_only=True)["model"]


def _assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name, tensor in a.items():
        assert torch.equal(tensor, b[name]), name


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> dict:
    """The final weights of the uninterrupted run every damaged-and-resumed run must end with."""
    out = tmp_path_factory.mktemp("straight")
    return _final_weights(train(load_run_config(None, [*RUN, f"out_dir={out}"]), progress=False))


def _preempted_with_two_states(runs_dir: Path, monkeypatch) -> Path:
    """A run stopped by SIGTERM at step 12, keeping the states of steps 10 (measured) and 12."""
    monkeypatch.setenv("TESTBED_INJECT_SIGTERM", f"{RUN_ID}@12")
    config = load_run_config(None, [*RUN, "train.keep_train_states=2", f"out_dir={runs_dir}"])
    with pytest.raises(Preempted):
        train(config, progress=False)
    monkeypatch.delenv("TESTBED_INJECT_SIGTERM")
    run_dir = runs_dir / "adhoc" / RUN_ID
    assert list_steps(run_dir / "ckpt") == [10, 12]
    return run_dir


def _resume(run_dir: Path) -> Path:
    return train(load_run_config(run_dir / "config.yaml"), progress=False)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_one_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10  # inside tensor data: torch.load alone would not notice
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [_truncate, _flip_one_bit], ids=["truncated", "bit-flipped"])
def test_a_damaged_newest_state_is_set_aside_and_the_older_one_used(runs_dir, monkeypatch, capsys, straight, damage):
    run_dir = _preempted_with_two_states(runs_dir, monkeypatch)
    damage(step_dir(run_dir / "ckpt", 12) / STATE)
    capsys.readouterr()
    _resume(run_dir)
    err = capsys.readouterr().err
    expected = "checksum mismatch"
    assert f"step_000012: damaged training state ({expected}); set aside as damaged-step_000012" in err
    assert (run_dir / "ckpt" / "damaged-step_000012" / STATE).is_file()  # kept for inspection
    assert RunDir(run_dir).state()[0] == "DONE"
    _assert_same_weights(_final_weights(run_dir), straight)


def test_with_no_intact_state_left_the_run_starts_again(runs_dir, monkeypatch, capsys, straight):
    run_dir = _preempted_with_two_states(runs_dir, monkeypatch)
    for step in (10, 12):
        _flip_one_bit(step_dir(run_dir / "ckpt", step) / STATE)
    capsys.readouterr()
    _resume(run_dir)
    assert "no intact training state left; training starts again from the beginning" in capsys.readouterr().err
    _assert_same_weights(_final_weights(run_dir), straight)


class _Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_pickle_is_refused_and_never_executed(runs_dir, monkeypatch, capsys, straight):
    import hashlib

    run_dir = _preempted_with_two_states(runs_dir, monkeypatch)
    marker = runs_dir / "pwned"
    exploit = _Exploit()
    exploit.marker = marker
    crafted = step_dir(run_dir / "ckpt", 12)
    torch.save({"model": {}, "payload": exploit}, crafted / STATE)
    # A matching checksum, as an attacker would write: weights_only is what refuses it.
    (crafted / CHECKSUM).write_text(hashlib.sha256((crafted / STATE).read_bytes()).hexdigest() + "  state.pt\n")
    capsys.readouterr()
    _resume(run_dir)
    assert not marker.exists()
    assert "step_000012: damaged training state (unreadable (UnpicklingError" in capsys.readouterr().err
    _assert_same_weights(_final_weights(run_dir), straight)


def test_resume_removes_leftovers_of_killed_writers(runs_dir, monkeypatch):
    run_dir = _preempted_with_two_states(runs_dir, monkeypatch)
    leftovers = [run_dir / "ckpt" / ".tmp-step_000015-999", run_dir / "hf" / ".tmp-step_000015-999"]
    for leftover in leftovers:
        leftover.mkdir()
        (leftover / STATE).write_bytes(b"partial")
    (run_dir / "meta.json.tmp").write_text("{")
    _resume(run_dir)
    assert not any(p.exists() for p in [*leftovers, run_dir / "meta.json.tmp"])


def test_checkpoints_get_the_users_umask(runs_dir):
    previous = os.umask(0o022)
    try:
        run_dir = train(load_run_config(None, [*RUN, "train.multiplier=1", f"out_dir={runs_dir}"]), progress=False)
    finally:
        os.umask(previous)
    for root in ("hf", "ckpt"):
        step = step_dir(run_dir / root, list_steps(run_dir / root)[-1])
        assert step.stat().st_mode & 0o777 == 0o755
        assert {p.name: p.stat().st_mode & 0o777 for p in step.iterdir()} == {p.name: 0o644 for p in step.iterdir()}
    assert "model.safetensors" in {p.name for p in step_dir(run_dir / "hf", 10).iterdir()}


def _start_trainer(args: list[str], cwd: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "testbed.cli", "train", *args],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_second_trainer_of_a_run_in_progress_is_refused(runs_dir, capsys):
    args = [*LONG, f"out_dir={runs_dir}"]
    first = _start_trainer(args)
    run_dir = runs_dir / "adhoc" / "dec-s2-syn_en-m40-seed0"
    try:
        wait_for(lambda: list_steps(run_dir / "ckpt"), 120, "the first trainer's first checkpoint")
        steps_before = list_steps(run_dir / "ckpt")
        capsys.readouterr()
        assert main(["train", *args]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"pid {first.pid} on" in err and "in use by another process" in err
        assert RunDir(run_dir).state()[0] == "RUNNING"
        assert not (run_dir / "FAILED").exists() and list_steps(run_dir / "ckpt")[0] >= steps_before[0]
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(60) == 75, first.stderr.read()
    assert owner(run_dir) is None and RunDir(run_dir).state()[0] == "PARTIAL"


SWEEP = """
name: owned
defaults:
  model: {arch: decoder, ladder: micro}
  data: {validation: [syn_en], val_tokens: 1024}
grid:
  - {sizes: [s2], datasets: [syn_en], multipliers: [40]}
"""


def test_one_driver_per_sweep_and_workers_stop_when_their_driver_dies(tmp_path, runs_dir, capsys):
    sweep = tmp_path / "owned.yaml"
    sweep.write_text(SWEEP)
    driver = subprocess.Popen(
        [sys.executable, "-m", "testbed.cli", "sweep", "run", str(sweep), f"out_dir={runs_dir}", "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    run_dir = runs_dir / "owned" / "dec-s2-syn_en-m40-seed0"
    try:
        wait_for(lambda: list_steps(run_dir / "ckpt") and owner(run_dir), 120, "the worker's first checkpoint")
        capsys.readouterr()
        assert main(["sweep", "run", str(sweep), f"out_dir={runs_dir}", "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "this sweep is in use by another process" in err
        worker_pid = int(owner(run_dir).split()[1])
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    # The orphaned worker notices within a second or so, checkpoints and exits: the run is free and resumable.
    wait_for(lambda: owner(run_dir) is None, 60, "the orphaned worker to stop")
    wait_for(
        lambda: not Path(f"/proc/{worker_pid}").exists() or "zombie" in _proc_state(worker_pid),
        30,
        "the worker process to exit",
    )
    assert RunDir(run_dir).state()[0] == "PARTIAL" and not (run_dir / "FAILED").exists()


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0].lower()
    except (OSError, IndexError):
        return "zombie"


def test_a_sweep_leaves_a_run_owned_by_another_process_alone(runs_dir):
    config = load_run_config(None, [*RUN, f"out_dir={runs_dir}"])
    run_dir = runs_dir / "adhoc" / RUN_ID
    run_dir.mkdir(parents=True)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom testbed.rundir import owned\n"
            f"with owned({str(run_dir)!r}):\n    print('held', flush=True)\n    time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        outcome = run_local([config], progress=False)[RUN_ID]
        assert outcome.startswith(f"SKIPPED: in use by another process (pid {holder.pid} on")
        assert not (run_dir / "FAILED").exists() and not list_steps(run_dir / "ckpt")
    finally:
        holder.kill()
        holder.wait()


def test_sigterm_during_startup_exits_75_without_a_traceback(runs_dir):
    proc = _start_trainer([*RUN, f"out_dir={runs_dir}"])
    time.sleep(1.5)  # importing torch and building the data: before any training step
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(120)
    err = proc.stderr.read()
    assert code == 75, err
    assert "Traceback" not in err and "run the same command again to resume" in err


def test_commands_work_from_any_directory(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "testbed.cli", "sweep", "plan", str(REPO / "configs/sweeps/tiny.yaml")],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr
    assert "6 runs" in done.stdout


def test_a_malformed_rows_line_stops_resume_and_collect_with_its_line_unless_skipped(runs_dir, monkeypatch, capsys):
    run_dir = _preempted_with_two_states(runs_dir, monkeypatch)
    rows = run_dir / "rows.jsonl"
    lines = rows.read_text().splitlines(keepends=True)
    rows.write_text("".join([*lines[:3], "{not json\n", *lines[3:]]))
    args = ["train", *RUN, "train.keep_train_states=2", f"out_dir={runs_dir}"]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{rows}:4: not a JSON object" in err and "--skip-bad-rows" in err
    assert main(["results", "collect", str(runs_dir), "--out", str(runs_dir / "t.parquet")]) == 2
    assert f"{rows}:4: not a JSON object" in capsys.readouterr().err
    monkeypatch.delenv("TESTBED_SKIP_BAD_ROWS", raising=False)  # the flag sets it for this process
    try:
        assert main([*args, "--skip-bad-rows"]) == 0
        assert main(["results", "collect", str(runs_dir), "--out", str(runs_dir / "t.parquet"), "--skip-bad-rows"]) == 0
    finally:
        os.environ.pop("TESTBED_SKIP_BAD_ROWS", None)
    assert (run_dir / "rows.jsonl.bad").read_text() == "{not json\n" and RunDir(run_dir).state()[0] == "DONE"
