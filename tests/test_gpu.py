"""The GPU path: bf16 autocast, fused AdamW, SDPA, torch.compile, MFU, checkpoints that reload, and a resume.

These run only where CUDA is present (a lent GPU machine: `pytest tests/test_gpu.py`); the CPU suite
covers the same code paths in fp32, where resumes are bit-for-bit.
"""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

from testbed.checkpoint import step_dir
from testbed.ladder import plan_run
from testbed.models import build_model
from testbed.resolve import load_run_config
from testbed.results import read_rows
from testbed.train import train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

BASE = ["model.size=s3", "train.multiplier=2", "train.device=cuda", "data.validation=[syn_en]", "data.val_tokens=4096"]


def final_val(run_dir) -> float:
    return next(r["value"] for r in read_rows(run_dir) if r["final"] and r["kind"] == "val_loss")


def run(tmp_path, name, *extra):
    config = load_run_config(None, [*BASE, *extra, f"out_dir={tmp_path / name}"])
    return config, train(config, progress=False)


@pytest.mark.parametrize("arch", ["decoder", "t5", "qk_norm"])
def test_bf16_run_learns_reports_mfu_and_reloads(tmp_path, arch):
    extra = ["model.qk_norm=true", "train.z_loss=1e-4"] if arch == "qk_norm" else [f"model.arch={arch}"]
    config, run_dir = run(tmp_path, arch, *extra)
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["device"].startswith("cuda") and meta["precision"] == "bf16"
    assert 0 < meta["mfu"] < 1 and meta["peak_flops_per_device"] > 1e14
    rows = [r for r in read_rows(run_dir) if r["kind"] == "val_loss"]
    assert rows[-1]["value"] < rows[0]["value"]

    plan = plan_run(config)
    auto = AutoModelForSeq2SeqLM if arch == "t5" else AutoModelForCausalLM
    model = auto.from_pretrained(step_dir(run_dir / "hf", plan.steps)).cuda().eval()
    assert model.config._attn_implementation == "sdpa"
    state = torch.load(step_dir(run_dir / "ckpt", plan.steps) / "state.pt", weights_only=False)
    reference = build_model(model.config).cuda().eval()  # as trained (a plain T5 init ties its head)
    reference.load_state_dict(state["model"])
    ids = torch.arange(3, 40, device="cuda").reshape(1, -1)
    kwargs = {"decoder_input_ids": ids[:, :5]} if arch == "t5" else {}
    with torch.no_grad():
        assert torch.equal(model(ids, **kwargs).logits, reference(ids, **kwargs).logits)


def test_compiled_run_matches_eager(tmp_path):
    _, eager = run(tmp_path, "eager")
    _, compiled = run(tmp_path, "compiled", "train.compile=true")
    assert json.loads((compiled / "meta.json").read_text())["compile"] is True
    assert final_val(compiled) == pytest.approx(final_val(eager), abs=0.05)  # bf16 kernels differ, not the model


def test_sigterm_resume_on_gpu_matches_uninterrupted(tmp_path, monkeypatch):
    _, whole = run(tmp_path, "whole")
    config = load_run_config(None, [*BASE, f"out_dir={tmp_path / 'cut'}"])
    plan = plan_run(config)
    monkeypatch.setenv("TESTBED_INJECT_SIGTERM", f"{whole.name}@{plan.steps // 2}")
    with pytest.raises(Exception, match="SIGTERM"):
        train(config, progress=False)
    monkeypatch.delenv("TESTBED_INJECT_SIGTERM")
    cut = train(config, progress=False)
    # GPU kernels need not be bitwise deterministic; the resumed run must land where the whole one did
    assert final_val(cut) == pytest.approx(final_val(whole), abs=0.02)
