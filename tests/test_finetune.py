"""Translation finetuning: a micro alignment sweep gives BLEU/chrF/ROUGE-L/cross-entropy rows with the right
alignment scores and BLEU gains over the baseline; a second call redoes nothing; an added seed adds only its
rows; rows are named by corpus; T5 checkpoints finetune source -> target; wandb mirrors the rows; bad input."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import sacrebleu
import yaml

from testbed.checkpoint import list_steps
from testbed.cli import main
from testbed.config import load_sweep_config
from testbed.errors import TestbedError
from testbed.paths import CONFIG_ROOT
from testbed.results import read_rows
from testbed.rundir import RunDir
from testbed.sweep.expand import expand
from testbed.translation import data, run
from testbed.translation.data import TaskDataError, resolve_task
from testbed.translation.loop import load_checkpoint
from testbed.translation.metrics import GAINS, METRICS
from testbed.translation.protocol import load_protocol
from testbed.translation.run import FAILURES_FILE, finetune_checkpoint, finetune_run
from testbed.translation.significance import paired_bleu_gain

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
        assert (
            record["state"] == "DONE" and record["rows"] == 3 * 6 + 2 * 3
        )  # baseline + 2 checkpoints, 6 metrics; 3 gains each
        assert record["finetune"]["tasks"] == ["syn_en-syn_fr"] and record["finetune"]["sizes"] == [3000]
    expected_alignment = {"syn_en_fr": 1.0, "syn_de": 0.0}
    summary = {}
    for dataset, run_dir in run_dirs.items():
        rows = [r for r in read_rows(run_dir) if r["kind"] == "translation"]
        steps = list_steps(run_dir / "hf")
        assert len(steps) == 2
        assert {(r["step"], r["metric"]) for r in rows} == {(s, m) for s in [0, *steps] for m in METRICS} | {
            (s, g) for s in steps for g in GAINS
        }
        for r in rows:
            assert r["name"] == "syn_en-syn_fr" and r["finetune_size"] == 3000 and r["finetune_seed"] == 0
            assert r["alignment"] == pytest.approx(expected_alignment[dataset])
            assert r["harness"] == "testbed-finetune/finetune_micro" and r.get("num_fewshot") is None
            assert (r["value"] >= 0 or r["metric"] in GAINS) and (r["step"] == 0) == (r["tokens"] == 0)
        ce = {r["step"]: r["value"] for r in rows if r["metric"] == "cross_entropy"}
        assert all(0 < v < 10 for v in ce.values())
        summary[dataset] = {r["step"]: round(r["value"], 2) for r in rows if r["metric"] == "bleu"}, ce
        final = run_dir / "finetune" / "syn_en-syn_fr" / "size_3000" / f"step_{steps[-1]:06d}" / "seed_0"
        predictions = [json.loads(line) for line in (final / "predictions.jsonl").read_text().splitlines()]
        assert len(predictions) == 32 and set(predictions[0]) == {"src", "ref", "hyp"}
        meta = json.loads((final / "summary.json").read_text())
        assert meta["lr"] in (3e-3, 1e-2) and len(meta["lr_grid"]) == 2 and meta["train_tokens"] >= 3000
        assert set(meta["seconds"]) == {"finetune", "reference_ce", "decode"}
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
    assert set(metrics) == set(METRICS)
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

    def fails(*args, **kwargs):
        raise TestbedError("comet_model='/models/empty.ckpt': no such checkpoint file")  # "empty" as bad data says

    monkeypatch.setattr(run, "finetune_checkpoint", fails)
    report = finetune_run(run_dir, "syn_en-syn_fr", [1000], protocol=protocol)
    failures = json.loads((run_dir / FAILURES_FILE).read_text())
    assert report.written == 0 and len(report.failed) == len(failures) == 2  # the baseline and the final step
    assert {f["reason"] for f in failures.values()} == {"comet_model='/models/empty.ckpt': no such checkpoint file"}
    assert set(next(iter(failures.values()))) == {
        "task",
        "finetune_size",
        "finetune_seed",
        "step",
        "protocol",
        "reason",
        "time",
    }

    def short(*args, **kwargs):
        raise TaskDataError("task 'syn_en-syn_fr': the train split holds 10 tokens < --size 1000")

    monkeypatch.setattr(run, "finetune_checkpoint", short)
    with pytest.raises(TaskDataError, match="tokens <"):
        finetune_run(run_dir, "syn_en-syn_fr", [1000], protocol=protocol)


def _copy_run(source, target, *ignore: str):
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("ckpt", "wandb", *ignore))
    return target


def _translation(run_dir, metric=None) -> list[dict]:
    return [r for r in read_rows(run_dir) if r["kind"] == "translation" and metric in (None, r["metric"])]


def _drop_rows(run_dir, drop) -> None:
    rows = read_rows(run_dir)
    (run_dir / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows if not drop(r)))


def test_an_added_seed_adds_only_its_rows_and_the_gains(sweep_runs, tmp_path):
    """Seed 1 joins seed 0 (done by the sweep): only its finetunes run, at seed 0's LR; every checkpoint's
    bleu_gain is its BLEU minus the baseline's of the same seed; a second call adds nothing; a lost gain row comes
    back from the stored predictions, and a gain whose baseline predictions are gone is skipped with a log line."""
    _, run_dirs = sweep_runs
    run_dir = _copy_run(run_dirs["syn_en_fr"], tmp_path / "run")
    steps = list_steps(run_dir / "hf")
    protocol = load_protocol("finetune_micro")
    protocol.seeds = [0, 1]
    report = finetune_run(run_dir, "syn_en-syn_fr", [3000], "all", protocol)
    assert report.done == [(s, 3000, 1) for s in [0, *steps]] and not report.failed
    assert report.written == 3 * 6 + 2 * 3  # seed 1: baseline + 2 checkpoints x 6 metrics, 2 x 3 gains
    bleu = {(r["step"], r["finetune_seed"]): r["value"] for r in _translation(run_dir, "bleu")}
    gains = _translation(run_dir, "bleu_gain")
    assert sorted((r["step"], r["finetune_seed"]) for r in gains) == [(s, k) for s in steps for k in (0, 1)]
    for r in gains:
        assert r["value"] == pytest.approx(bleu[r["step"], r["finetune_seed"]] - bleu[0, r["finetune_seed"]])
        assert 0 < r["p_value"] <= 1 and r["stderr"] >= 0 and r["tokens"] > 0 and r["finetune_size"] == 3000
    for step in [0, *steps]:
        folder = run_dir / "finetune" / "syn_en-syn_fr" / "size_3000" / f"step_{step:06d}"
        first, second = (json.loads((folder / f"seed_{k}" / "summary.json").read_text()) for k in (0, 1))
        assert second["lr"] == first["lr"] and second["lr_grid"] is None and second["finetune_seed"] == 1
        assert second["metrics"]["cross_entropy"] != first["metrics"]["cross_entropy"]  # another batch order
    again = finetune_run(run_dir, "syn_en-syn_fr", [3000], "all", protocol)
    assert again.written == 0 and again.done == [] and len(_translation(run_dir)) == 2 * (3 * 6 + 2 * 3)

    _drop_rows(run_dir, lambda r: r["metric"] == "bleu_gain" and r["finetune_seed"] == 1)
    back = finetune_run(run_dir, "syn_en-syn_fr", [3000], "all", protocol)
    assert back.done == [] and back.written == 2
    assert sorted(map(json.dumps, _translation(run_dir, "bleu_gain"))) == sorted(map(json.dumps, gains))

    _drop_rows(run_dir, lambda r: r["metric"] == "bleu_gain" and r["finetune_seed"] == 1)
    (run_dir / "finetune" / "syn_en-syn_fr" / "size_3000" / "step_000000" / "seed_1" / "predictions.jsonl").unlink()
    lines: list[str] = []
    skipped = finetune_run(run_dir, "syn_en-syn_fr", [3000], "all", protocol, lines.append)
    assert skipped.written == 0 and len(_translation(run_dir, "bleu_gain")) == 2
    assert [line.split(": no predictions")[0] for line in lines] == [
        f"run: no bleu_gain for syn_en-syn_fr size 3000 seed 1 at step {s}" for s in steps
    ]


def test_a_metric_added_later_is_scored_from_the_stored_predictions(sweep_runs, tmp_path):
    """A finetuned run whose rows predate two metrics (and their gains): its finetune stage reopens (the record
    names the metrics), and running it re-scores the stored predictions without finetuning anything; the new
    rows equal those scored at finetuning time, and a second call adds nothing."""
    from testbed.sweep.stages import StageSpec, run_stages, stage_state

    _, run_dirs = sweep_runs
    run_dir = _copy_run(run_dirs["syn_en_fr"], tmp_path / "run")
    added = {"bleu_noncopy", "bleu2_noncopy", "bleu_noncopy_gain", "bleu2_noncopy_gain"}
    scored = sorted(map(json.dumps, (r for r in _translation(run_dir) if r["metric"] in added)))
    _drop_rows(run_dir, lambda r: r["metric"] in added)
    record_path = run_dir / "stages" / "finetune.json"
    record = json.loads(record_path.read_text())
    del record["finetune"]["metrics"]  # as the stage wrote it before the metrics were named
    record_path.write_text(json.dumps(record))
    spec = StageSpec.of(load_sweep_config(SWEEP))
    assert stage_state(run_dir, "finetune", spec)[0] == "TODO"
    assert run_stages(run_dir, ["finetune"], spec) == 0 and stage_state(run_dir, "finetune", spec)[0] == "DONE"
    assert json.loads(record_path.read_text())["rows"] == 3 * 2 + 2 * 2  # 3 points x 2 metrics, 2 x 2 gains
    assert sorted(map(json.dumps, (r for r in _translation(run_dir) if r["metric"] in added))) == scored
    again = finetune_run(run_dir, "syn_en-syn_fr", [3000], "all", load_protocol("finetune_micro"))
    assert again.written == 0 and again.done == [] and again.rescored == []


def test_rows_are_named_by_corpus(sweep_runs, tmp_path):
    """The registry's synthetic corpus syn_en_fr and the built-in pair syn_en-syn_fr translate the same languages:
    their rows, folders and done-sets stay apart."""
    assert (resolve_task("syn_en_fr").src, resolve_task("syn_en_fr").dst) == ("syn_en", "syn_fr")
    _, run_dirs = sweep_runs
    run_dir = _copy_run(run_dirs["syn_de"], tmp_path / "run")
    before = _translation(run_dir)
    protocol = load_protocol("finetune_micro")
    protocol.lrs = [1e-2]
    report = finetune_run(run_dir, "syn_en_fr", [3000], "final", protocol)
    assert len(report.done) == 2 and report.written == 2 * 6 + 3  # baseline and final step; the final's gains
    new = _translation(run_dir)[len(before) :]
    assert {r["name"] for r in new} == {"syn_en_fr"} and {r["name"] for r in before} == {"syn_en-syn_fr"}
    assert (run_dir / "finetune" / "syn_en_fr" / "size_3000" / "step_000000" / "seed_0" / "predictions.jsonl").is_file()


def test_finetune_stage_mirrors_translation_rows_to_wandb(sweep_runs, tmp_path, monkeypatch):
    import wandb

    from testbed.sweep.stages import StageSpec, run_stages

    monkeypatch.setenv("TESTBED_TRACK", "wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    _, run_dirs = sweep_runs
    run_dir = _copy_run(run_dirs["syn_de"], tmp_path / "run", "finetune", "rows.jsonl", "finetune.json")
    one_lr = tmp_path / "finetune_one_lr.yaml"
    micro = yaml.safe_load((CONFIG_ROOT / "eval" / "finetune_micro.yaml").read_text())
    one_lr.write_text(yaml.safe_dump({**micro, "lrs": [1e-2]}))
    spec = StageSpec(finetune_tasks=("syn_en-syn_fr",), finetune_sizes=(1000,), finetune_steps="final")
    assert run_stages(run_dir, ["finetune"], dataclasses.replace(spec, finetune_protocol=str(one_lr))) == 0
    wandb.teardown()  # the wandb service writes the run's log asynchronously; this flushes it
    (offline,) = (run_dir / "wandb").glob("offline-run-*")
    (log,) = offline.glob("run-*.wandb")
    data = log.read_bytes()
    for metric in ("bleu", "cross_entropy", "bleu_gain"):
        assert f"translation/syn_en-syn_fr/size_1000/{metric}".encode() in data
    assert b"translation/tokens" in data


def test_paired_bleu_gain_on_hand_made_systems():
    words = "the cat sat on a mat while we ate green apples in paris and it rained all day long".split()
    references = [" ".join(words[i : i + 8]) for i in range(len(words) - 8)] * 5
    half_right = [" ".join(r.split()[:4] + ["x", "y", "z", "w"]) for r in references]
    same = paired_bleu_gain(half_right, list(half_right), references)
    assert same.value == 0 and same.stderr == 0 and same.p_value == pytest.approx(1)
    better = paired_bleu_gain(references, half_right, references)
    expected = sacrebleu.corpus_bleu(references, [references]).score
    assert better.value == pytest.approx(expected - sacrebleu.corpus_bleu(half_right, [references]).score)
    assert better.value > 10 and better.stderr > 0 and better.p_value < 0.01
    assert paired_bleu_gain(half_right, references, references).p_value == pytest.approx(1)
    with pytest.raises(TestbedError, match="equal non-empty sets"):
        paired_bleu_gain(references[:3], half_right, references)


@pytest.mark.parametrize("seeds", ["[]", "[0, 0]"])
def test_protocol_seeds_are_a_non_empty_list_of_distinct_seeds(tmp_path, seeds):
    path = tmp_path / "bad.yaml"
    path.write_text(f"steps: 10\nseeds: {seeds}\n")
    with pytest.raises(TestbedError, match="a non-empty list of distinct integer seeds") as err:
        load_protocol(path)
    assert len(str(err.value).splitlines()) == 1
