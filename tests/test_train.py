"""Training runs: budget, rows, Hugging Face checkpoints, kill-and-resume equality, NaN guard."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from testbed.checkpoint import list_steps, step_dir
from testbed.cli import main
from testbed.data.synthetic import entropy
from testbed.ladder import plan_run
from testbed.resolve import load_run_config
from testbed.results import read_rows
from testbed.rundir import RunDir
from testbed.train import NonFiniteLoss, train

REPO = Path(__file__).resolve().parents[1]
TINY = ["model.size=s1", "train.multiplier=1", "data.validation=[syn_en,syn_fr]", "data.val_tokens=2048"]


def measured(run_dir):
    """The run's rows, less the throughput ones (wall-clock numbers never repeat)."""
    return sorted(
        (r["step"], r["kind"], r["name"], r["metric"], r["value"])
        for r in read_rows(run_dir)
        if r["name"] != "throughput"
    )


def test_tiny_run_end_to_end(runs_dir):
    config = load_run_config(None, [*TINY, f"out_dir={runs_dir}"])
    plan = plan_run(config)
    run_dir = train(config, progress=False)
    assert (run_dir / "DONE").is_file() and (run_dir / "config.yaml").is_file()
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["tokens_seen"] == plan.tokens == round(plan.params * 1.0)
    assert meta["versions"]["torch"].startswith("2.")
    rows = read_rows(run_dir)
    final = [r for r in rows if r["final"] and r["kind"] == "val_loss"]
    assert {r["name"] for r in final} == {"syn_en", "syn_fr"}
    assert all(r["tokens"] == plan.tokens and r["step"] == plan.steps for r in final)
    first = min(r["value"] for r in rows if r["kind"] == "val_loss" and r["step"] == plan.checkpoint_steps[0])
    assert max(r["value"] for r in final) < first  # it learned something
    assert list_steps(run_dir / "hf") == list(plan.checkpoint_steps)

    # The export loads through the Auto classes and gives the same logits as the trained weights.
    hf = step_dir(run_dir / "hf", plan.steps)
    model = AutoModelForCausalLM.from_pretrained(hf).eval()
    tokenizer = AutoTokenizer.from_pretrained(hf)
    ids = tokenizer("Ana lives in", return_tensors="pt").input_ids
    state = torch.load(step_dir(run_dir / "ckpt", plan.steps) / "state.pt", weights_only=False)
    reference = type(model)(model.config).eval()
    reference.load_state_dict(state["model"])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, reference(ids).logits)

    # Each synthetic validation set's row carries its text's entropy under the generator: a floor under the loss.
    n_tokens = config.data.val_tokens // plan.seq_len * plan.seq_len + 1
    for row in final:
        count = lambda texts: [len(i) for i in tokenizer(texts, split_special_tokens=True)["input_ids"]]  # noqa: E731
        floor = entropy(row["name"], "valid", count, n_tokens, seed=config.data.world_seed).per_token
        assert row["entropy_floor"] == pytest.approx(floor, rel=1e-12) and 0.2 < floor < row["value"]

    # scripts/excess_by_rank.py rebuilds the validation windows: its loss on them is the run's row
    out = subprocess.run(
        [sys.executable, str(REPO / "scripts/excess_by_rank.py"), str(run_dir), "--docs", "40"],
        capture_output=True, text=True, timeout=300, check=True,
    ).stdout  # fmt: skip
    syn_en = next(r["value"] for r in final if r["name"] == "syn_en")
    assert float(re.search(r"validation windows \(\d+ of \d+\): loss ([\d.]+)", out)[1]) == pytest.approx(
        syn_en, abs=1e-4
    )
    assert float(re.search(r"excess ([-\d.]+) nats per token", out)[1]) > 0  # a 1-step model is far from the floor

    mtime = (run_dir / "DONE").stat().st_mtime
    assert train(config, progress=False) == run_dir  # finished: skipped
    assert (run_dir / "DONE").stat().st_mtime == mtime


def test_nan_loss_marks_the_run_failed(runs_dir, monkeypatch, capsys):
    config = load_run_config(None, [*TINY, f"out_dir={runs_dir}"])
    monkeypatch.setenv("TESTBED_INJECT_NAN", "dec-s1-syn_en-m1-seed0@4")
    with pytest.raises(NonFiniteLoss):
        train(config, progress=False)
    state, detail = RunDir(runs_dir / "adhoc" / "dec-s1-syn_en-m1-seed0").state()
    assert state == "FAILED" and "non-finite loss nan at step 4" in detail and "(step 4)" in detail
    # From the command line (which retries a FAILED run): exit 1 and one line, no traceback.
    capsys.readouterr()
    assert main(["train", *TINY, f"out_dir={runs_dir}"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and [line for line in err.splitlines() if line.startswith("testbed:")] == [
        "testbed: non-finite loss nan at step 4; the run is marked FAILED"
    ]


def test_sigterm_from_the_command_line_checkpoints_and_exits_75(runs_dir, monkeypatch, capsys):
    monkeypatch.setenv("TESTBED_INJECT_SIGTERM", "dec-s1-syn_en-m2-seed0@3")
    args = [
        "train",
        "model.size=s1",
        "train.multiplier=2",
        "data.validation=[syn_en]",
        "data.val_tokens=1024",
        f"out_dir={runs_dir}",
    ]
    assert main(args) == 75
    err = capsys.readouterr().err
    assert "Traceback" not in err and "SIGTERM: checkpointed at step 3; run the same command again" in err
    assert list_steps(runs_dir / "adhoc" / "dec-s1-syn_en-m2-seed0" / "ckpt")[-1] == 3
    monkeypatch.delenv("TESTBED_INJECT_SIGTERM")
    assert main(args) == 0 and RunDir(runs_dir / "adhoc" / "dec-s1-syn_en-m2-seed0").state()[0] == "DONE"


def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path):
    args = [
        "model.size=s2",
        "train.multiplier=2",
        "train.threads=1",
        "data.validation=[syn_en]",
        "data.val_tokens=2048",
    ]
    straight = train(load_run_config(None, [*args, f"out_dir={tmp_path / 'a'}"]), progress=False)

    config = load_run_config(None, [*args, f"out_dir={tmp_path / 'b'}"])
    run_dir = tmp_path / "b" / "adhoc" / straight.name
    proc = subprocess.Popen(
        [sys.executable, "-m", "testbed.cli", "train", *args, f"out_dir={tmp_path / 'b'}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=os.environ.copy(),
    )
    deadline = time.time() + 120
    while time.time() < deadline and not any(s >= 8 for s in list_steps(run_dir / "ckpt")):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "DONE").exists(), "the run finished before it could be killed"
    killed_at = list_steps(run_dir / "ckpt")[-1]
    assert 8 <= killed_at < plan_run(config).steps

    resumed = train(config, progress=False)
    a = torch.load(step_dir(straight / "ckpt", plan_run(config).steps) / "state.pt", weights_only=False)
    b = torch.load(step_dir(resumed / "ckpt", plan_run(config).steps) / "state.pt", weights_only=False)
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name

    assert measured(straight) == measured(resumed)  # no rows lost or doubled by the kill


def test_qk_norm_and_z_loss_run_reloads_through_the_auto_class(runs_dir, monkeypatch):
    monkeypatch.setenv("TESTBED_PEAK_FLOPS", "1e11")  # a made-up CPU peak, so MFU is reported
    config = load_run_config(None, [*TINY, "model.qk_norm=true", "train.z_loss=1e-4", f"out_dir={runs_dir}"])
    plan = plan_run(config)
    run_dir = train(config, progress=False)
    hf = step_dir(run_dir / "hf", plan.steps)
    model = AutoModelForCausalLM.from_pretrained(hf).eval()
    assert type(model).__name__ == "Qwen3ForCausalLM" and model.model.layers[0].self_attn.q_norm is not None
    state = torch.load(step_dir(run_dir / "ckpt", plan.steps) / "state.pt", weights_only=False)
    reference = type(model)(model.config).eval()
    reference.load_state_dict(state["model"])
    ids = torch.tensor([[5, 17, 300, 2, 9]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, reference(ids).logits)

    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["tokens_per_second"] > 0 and meta["mfu"] == pytest.approx(
        meta["tokens_per_second"] * meta["flops_per_token"] / 1e11
    )
    matmul = 2 * (4 * 24 * 24 + 3 * 24 * 64) + 512 * 24  # attention, SwiGLU (width 64), untied head
    assert meta["flops_per_token"] == 6 * matmul + 12 * 2 * 24 * 128  # PaLM's MFU count
    rows = read_rows(run_dir)
    assert {r["metric"] for r in rows if r["name"] == "throughput"} == {"tokens_per_second", "mfu"}


def test_z_loss_is_added_per_token():
    from testbed.models import batch_loss, build_model, decoder_config

    model = build_model(decoder_config(24, 1, 2, 64, 16), seed=0)
    ids = torch.randint(1, 64, (2, 8))
    labels = ids.clone()
    labels[1, 4:] = -100
    ce, total = batch_loss(model, {"input_ids": ids, "labels": labels}, z_loss=1e-2)
    logits = model(input_ids=ids).logits[labels != -100]
    expected_ce = torch.nn.functional.cross_entropy(logits, labels[labels != -100], reduction="sum")
    assert ce.item() == pytest.approx(expected_ce.item(), rel=1e-6)
    assert (total - ce).item() == pytest.approx(1e-2 * torch.logsumexp(logits, -1).square().sum().item(), rel=1e-5)


def test_gradient_accumulation_matches_the_whole_batch(runs_dir):
    whole = train(load_run_config(None, [*TINY, f"out_dir={runs_dir / 'a'}"]), progress=False)
    split = train(
        load_run_config(None, [*TINY, "train.micro_batch_size=8", f"out_dir={runs_dir / 'b'}"]), progress=False
    )
    steps = list_steps(whole / "ckpt")[-1]
    a = torch.load(step_dir(whole / "ckpt", steps) / "state.pt", weights_only=False)
    b = torch.load(step_dir(split / "ckpt", steps) / "state.pt", weights_only=False)
    for name, tensor in a["model"].items():  # the same update up to float summation order
        torch.testing.assert_close(tensor, b["model"][name], rtol=1e-4, atol=1e-5)
    losses = [[r["value"] for r in read_rows(d) if r["kind"] == "val_loss"] for d in (whole, split)]
    assert losses[0] == pytest.approx(losses[1], abs=1e-4)


def test_a_pinned_attention_backend_trains_as_pytorchs_choice(runs_dir):
    """train.attention=math pins SDPA's reference kernel: the same run up to float summation order."""
    auto = train(load_run_config(None, [*TINY, f"out_dir={runs_dir / 'a'}"]), progress=False)
    math = train(load_run_config(None, [*TINY, "train.attention=math", f"out_dir={runs_dir / 'b'}"]), progress=False)
    losses = [[r["value"] for r in read_rows(d) if r["kind"] == "val_loss"] for d in (auto, math)]
    assert len(losses[0]) > 2 and losses[0] == pytest.approx(losses[1], abs=1e-3)
    # the pin is real: a backend the CPU has no kernel for is refused, not silently replaced
    with pytest.raises(RuntimeError, match="No viable backend"):
        train(load_run_config(None, [*TINY, "train.attention=cudnn", f"out_dir={runs_dir / 'c'}"]), progress=False)
