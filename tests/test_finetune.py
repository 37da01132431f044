"""Translation finetuning: a micro alignment sweep gives BLEU/chrF/ROUGE-L/cross-entropy rows with the right
alignment scores; a second call redoes nothing; T5 checkpoints finetune source -> target; bad input."""

from __future__ import annotations

import json
import shutil

import pytest

from testbed.checkpoint import list_steps
from testbed.cli import main
from testbed.config import load_sweep_config
from testbed.errors import TestbedError
from testbed.results import read_rows
from testbed.rundir import RunDir
from testbed.sweep.expand import expand
from testbed.translation import data, run
from testbed.translation.data import TaskDataError, resolve_task
from testbed.translation.loop import load_checkpoint
from testbed.translation.protocol import load_protocol
from testbed.translation.run import FAILURES_FILE, finetune_checkpoint, finetune_run

SWEEP = "configs/sweeps/alignment_micro.yaml"


@pytest.fixture(scope="module")
def sweep_runs(tmp_path_factory):
    """The sweep run as users run it: each run's finetuning is a stage chained after its training."""
    out = tmp_path_factory.mktemp("runs")
    overrides = [f"out_dir={out}", "defaults.track=none"]
    assert main(["sweep", "run", SWEEP, *overrides, "--quiet"]) == 0
    sweep = load_sweep_config(SWEEP, overrides)
    return out, {config.data.name: RunDir.of(config).path for config in expand(sweep, SWEEP)}


def test_micro_alignment_sweep(sweep_runs, capsys):
    out, run_dirs = sweep_runs
    for run_dir in run_dirs.values():
        record = json.loads((run_dir / "stages" / "finetune.json").read_text())
        assert record["state"] == "DONE" and record["rows"] == 3 * 4  # baseline + 2 checkpoints, 4 metrics
        assert record["finetune"]["tasks"] == ["syn_en-syn_fr"] and record["finetune"]["sizes"] == [3000]
    expected_alignment = {"syn_en_fr": 1.0, "syn_de": 0.0}
    summary = {}
    for dataset, run_dir in run_dirs.items():
        rows = [r for r in read_rows(run_dir) if r["kind"] == "translation"]
        steps = list_steps(run_dir / "hf")
        assert len(steps) == 2
        assert {(r["step"], r["metric"]) for r in rows} == {
            (s, m) for s in [0, *steps] for m in ("bleu", "chrf", "rougeL", "cross_entropy")
        }
        for r in rows:
            assert r["name"] == "syn_en-syn_fr" and r["finetune_size"] == 3000
            assert r["alignment"] == pytest.approx(expected_alignment[dataset])
            assert r["harness"] == "testbed-finetune/finetune_micro" and r.get("num_fewshot") is None
            assert r["value"] >= 0 and (r["step"] == 0) == (r["tokens"] == 0)
        ce = {r["step"]: r["value"] for r in rows if r["metric"] == "cross_entropy"}
        assert all(0 < v < 10 for v in ce.values())
        summary[dataset] = {r["step"]: round(r["value"], 2) for r in rows if r["metric"] == "bleu"}, ce
        final = run_dir / "finetune" / "syn_en-syn_fr" / "size_3000" / f"step_{steps[-1]:06d}"
        predictions = [json.loads(line) for line in (final / "predictions.jsonl").read_text().splitlines()]
        assert len(predictions) == 32 and set(predictions[0]) == {"src", "ref", "hyp"}
        meta = json.loads((final / "summary.json").read_text())
        assert meta["lr"] in (3e-3, 1e-2) and len(meta["lr_grid"]) == 2 and meta["train_tokens"] >= 3000
    print(summary)
    # Every (step, task, size) is done: the sweep has nothing left, and `testbed finetune` finetunes nothing.
    capsys.readouterr()
    assert main(["sweep", "status", SWEEP, f"out_dir={out}", "--json"]) == 0
    assert {r["state"] for r in json.loads(capsys.readouterr().out)} == {"DONE"}
    assert main(["finetune", SWEEP, f"out_dir={out}", "defaults.track=none"]) == 0
    assert capsys.readouterr().out.startswith("0 translation rows written over 2 runs")


def test_t5_checkpoint_finetunes_source_to_target(sweep_runs, tmp_path):
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    _, run_dirs = sweep_runs
    run_dir = run_dirs["syn_en_fr"]
    tokenizer = AutoTokenizer.from_pretrained(run_dir / "hf" / f"step_{list_steps(run_dir / 'hf')[-1]:06d}")
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=32,
        d_kv=16,
        d_ff=64,
        num_layers=1,
        num_decoder_layers=1,
        num_heads=2,
        feed_forward_proj="gated-gelu",
        dropout_rate=0.0,
        pad_token_id=0,
        eos_token_id=0,
        decoder_start_token_id=0,
    )
    hf_dir = tmp_path / "t5"
    T5ForConditionalGeneration(config).save_pretrained(hf_dir)
    tokenizer.save_pretrained(hf_dir)
    model, tok, seq2seq = load_checkpoint(hf_dir)
    assert seq2seq
    protocol = load_protocol("finetune_micro")
    protocol.steps, protocol.lrs = 20, [1e-2]
    metrics = finetune_checkpoint(model, tok, True, resolve_task("syn_en-syn_fr"), 2000, protocol, 0, tmp_path / "out")
    assert set(metrics) == {"bleu", "chrf", "rougeL", "cross_entropy"}
    assert 0 < metrics["cross_entropy"][0] < 10
    assert len((tmp_path / "out" / "predictions.jsonl").read_text().splitlines()) == protocol.n_test


def test_finetune_bad_inputs(sweep_runs, tmp_path, monkeypatch, capsys):
    _, run_dirs = sweep_runs
    run_dir = run_dirs["syn_de"]
    empty = tmp_path / "no_ckpt"
    empty.mkdir()
    shutil.copy(run_dir / "config.yaml", empty / "config.yaml")
    assert main(["finetune", str(empty), "--task", "syn_en-syn_fr", "--size", "1000"]) == 2
    assert "no checkpoints" in capsys.readouterr().err
    assert main(["finetune", str(run_dir), "--task", "syn_en-klingon", "--size", "1000"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown translation task" in err[0]
    # A sweep whose finetune stage names an unknown task is refused before any run starts.
    assert main(["sweep", "run", SWEEP, f"out_dir={tmp_path / 'refused'}", "finetune.tasks=[syn_en-klingon]"]) == 2
    assert "unknown translation task" in capsys.readouterr().err and not (tmp_path / "refused").exists()
    with pytest.raises(TestbedError, match="positive number of tokens"):
        finetune_run(run_dir, "syn_en-syn_fr", ["-5"])
    # A tokenizer that does not belong to the model.
    bad = tmp_path / "bad_run"
    shutil.copytree(run_dir, bad, ignore=shutil.ignore_patterns("ckpt", "finetune", "rows.jsonl"))
    for hf_dir in (bad / "hf").iterdir():
        config = json.loads((hf_dir / "config.json").read_text())
        config["vocab_size"] = 100
        (hf_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(TestbedError, match="bad_run"):
        finetune_run(bad, "syn_en-syn_fr", [1000], protocol=load_protocol("finetune_micro"))
    # An empty reference set.
    real = data.task_pairs
    monkeypatch.setattr(
        data, "task_pairs", lambda task, split, n, seed: [] if split == "test" else real(task, split, n, seed)
    )
    assert (
        main(["finetune", str(run_dir), "--task", "syn_en-syn_fr", "--size", "500", "--protocol", "finetune_micro"])
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "test split has no pairs" in err[0]


def test_failures_are_told_apart_by_type(sweep_runs, tmp_path, monkeypatch):
    """A combination that fails is recorded and the others run, whatever its message says; bad task data (a
    TaskDataError) stops the run with one line."""
    _, run_dirs = sweep_runs
    run_dir = tmp_path / "run"
    shutil.copytree(run_dirs["syn_de"], run_dir, ignore=shutil.ignore_patterns("ckpt", "finetune", "rows.jsonl"))
    protocol = load_protocol("finetune_micro")

    def fails(*args):
        raise TestbedError("comet_model='/models/empty.ckpt': no such checkpoint file")  # "empty" as bad data says

    monkeypatch.setattr(run, "finetune_checkpoint", fails)
    report = finetune_run(run_dir, "syn_en-syn_fr", [1000], protocol=protocol)
    failures = json.loads((run_dir / FAILURES_FILE).read_text())
    assert report.written == 0 and len(report.failed) == len(failures) == 2  # the baseline and the final step
    assert {f["reason"] for f in failures.values()} == {"comet_model='/models/empty.ckpt': no such checkpoint file"}
    assert set(next(iter(failures.values()))) == {"task", "finetune_size", "step", "protocol", "reason", "time"}

    def short(*args):
        raise TaskDataError("task 'syn_en-syn_fr': the train split holds 10 tokens < --size 1000")

    monkeypatch.setattr(run, "finetune_checkpoint", short)
    with pytest.raises(TaskDataError, match="tokens <"):
        finetune_run(run_dir, "syn_en-syn_fr", [1000], protocol=protocol)
