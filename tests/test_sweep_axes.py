"""Any run key as a sweep axis: expansion, run ids, the checks of axis values, hyperparameter columns on every
row, and `sweep status` / `sweep run` agreeing on runs whose saved config differs from the sweep's."""

import json
from pathlib import Path

import pandas as pd
import pytest

from testbed.cli import main
from testbed.config import load_sweep_config
from testbed.config_layers import to_yaml
from testbed.errors import TestbedError
from testbed.ladder import run_id
from testbed.resolve import load_run_config
from testbed.rundir import RunChanged, RunDir
from testbed.sweep.expand import expand
from testbed.sweep.status import sweep_status

TINY = """
name: {name}
out_dir: {out}
defaults:
  model: {{arch: decoder, ladder: micro}}
  data: {{validation: [syn_en], val_tokens: 1024}}
  train: {{log_spaced_checkpoints: 1{extra}}}
grid:
{grid}
"""


def _sweep(tmp_path: Path, grid: str, name: str = "axes", extra: str = "", file: str = "sweep.yaml") -> Path:
    path = tmp_path / file
    path.write_text(TINY.format(name=name, out=tmp_path / "runs", extra=extra, grid=grid))
    return path


def test_axes_expand_to_every_combination_with_readable_ids(tmp_path):
    grid = (
        "  - {sizes: [s1, s2], datasets: [syn_en], multipliers: [20], seeds: [0, 1],"
        " axes: {train.lr: [0.001, 0.003, 0.01], train.batch_size: [16, 64]}}\n"
        "  - {sizes: [s1], datasets: [syn_en], multipliers: [20],"
        " axes: {model.qk_norm: [true], train.warmup_steps: [5], train.schedule: [wsd], data.val_tokens: [2048],"
        " train.log_spaced_checkpoints: [2]}}"
    )
    path = _sweep(tmp_path, grid)
    runs = expand(load_sweep_config(path), str(path))
    assert len(runs) == 2 * 2 * 3 * 2 + 1  # sizes x seeds x lrs x batch sizes, and the second block's one run
    by_id = {run_id(c): c for c in runs}
    run = by_id["dec-s2-syn_en-m20-seed1-bs64-lr0.003"]
    assert (run.train.lr, run.train.batch_size, run.model.size, run.train.seed) == (0.003, 64, "s2", 1)
    assert run.axes == ["train.batch_size", "train.lr"]
    # the schedule shows as the base id's own marker; a key without a short name shows its last component
    other = by_id["dec-s1-syn_en-m20-wsd-seed0-valtok2048-qknorm1-log_spaced_checkpoints2-warmup5"]
    assert other.model.qk_norm and other.train.warmup_steps == 5 and other.data.val_tokens == 2048
    assert other.train.schedule == "wsd" and other.train.log_spaced_checkpoints == 2
    assert all("/" not in rid and " " not in rid for rid in by_id)


def test_ids_without_axes_are_unchanged(tmp_path):
    path = _sweep(tmp_path, "  - {sizes: [s3], datasets: [syn_en], multipliers: [20, 2.5]}")
    assert [run_id(c) for c in expand(load_sweep_config(path))] == [
        "dec-s3-syn_en-m20-seed0",
        "dec-s3-syn_en-m2.5-seed0",
    ]
    config = load_run_config(None, ["model.size=s3", "train.schedule=wsd", f"out_dir={tmp_path / 'runs'}"])
    assert run_id(config) == "dec-s3-syn_en-m20-wsd-seed0"
    # a config.yaml written before `axes` existed reads back to the same run (no orphaned run dirs)
    run = RunDir.of(config)
    run.path.mkdir(parents=True)
    saved = [line for line in to_yaml(config).splitlines() if not line.startswith("axes:")]
    assert len(saved) == len(to_yaml(config).splitlines()) - 1
    run.config_file.write_text("\n".join(saved) + "\n")
    assert run.prepare(config).change(config) is None and run_id(run.config()) == run.name


@pytest.mark.parametrize(
    "axes, where, why",
    [
        ("{train.lrr: [0.1]}", "grid[0].axes.train.lrr=0.1", "did you mean train.lr?"),
        ("{train.lr: [0.001, abc]}", "grid[0].axes.train.lr='abc'", "could not be converted"),
        ("{train.lr: [-1]}", "grid[0].axes.train.lr=-1", "positive"),
        ("{train.schedule: [cosine, linear]}", "grid[0].axes.train.schedule='linear'", "known schedules"),
        ("{model.qk_norm: [maybe]}", "grid[0].axes.model.qk_norm='maybe'", "not a valid bool"),
        ("{train.seed: [1, 2]}", "grid[0].axes.train.seed=[1, 2]", "set by the grid block's `seeds`"),
        ("{model.size: [s2]}", "grid[0].axes.model.size=['s2']", "set by the grid block's `sizes`"),
        ("{train: [1]}", "grid[0].axes.train=[1]", "set by the grid block's `multipliers`"),
        ("{train.lr: []}", "grid[0].axes.train.lr=[]", "at least one value"),
    ],
)
def test_bad_axes_are_one_line_naming_file_key_and_value(tmp_path, capsys, axes, where, why):
    path = _sweep(tmp_path, f"  - {{sizes: [s1], datasets: [syn_en], multipliers: [20], axes: {axes}}}")
    assert main(["sweep", "plan", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err and where in err and why in err, err


def test_two_values_that_make_the_same_id_are_refused(tmp_path):
    path = _sweep(tmp_path, "  - {sizes: [s1], datasets: [syn_en], multipliers: [20], axes: {train.lr: [0.003, 3e-3]}}")
    with pytest.raises(TestbedError, match=r"grid\[0\]: run dec-s1-syn_en-m20-seed0-lr0.003 appears twice"):
        expand(load_sweep_config(path), str(path))


def test_status_shows_a_changed_config_and_prepare_refuses_it_with_the_same_reason(tmp_path):
    grid = "  - {sizes: [s1], datasets: [syn_en], multipliers: [20], axes: {train.lr: [0.003]}}"
    (before,) = expand(load_sweep_config(_sweep(tmp_path, grid)))
    RunDir.of(before).prepare(before)
    (after,) = expand(load_sweep_config(_sweep(tmp_path, grid, extra=", weight_decay: 0.1")))
    assert [r["state"] for r in sweep_status([before])] == ["TODO"]
    (row,) = sweep_status([after])
    reason = "config differs: train.weight_decay 0.033 (saved) vs 0.1 (sweep)"
    assert (row["state"], row["detail"]) == ("CHANGED", reason)
    with pytest.raises(RunChanged) as caught:
        RunDir.of(after).prepare(after)
    assert caught.value.reason == reason


def test_tiny_lr_sweep_rows_carry_hyperparameters_and_status_agrees_with_run(tmp_path, capsys):
    """One tiny run trains; its rows carry lr, batch size ...; the sweep's defaults change: status says CHANGED,
    and `sweep run` reports that run with the same reason while a new run still trains."""
    block = (
        "  - {{sizes: [s1], datasets: [syn_en], multipliers: [1], axes: {{train.lr: {lrs}, train.batch_size: [16]}}}}"
    )
    first = _sweep(tmp_path, block.format(lrs="[0.003]"))
    assert main(["sweep", "run", str(first), "--quiet"]) == 0
    rid = "dec-s1-syn_en-m1-seed0-bs16-lr0.003"
    run_dir = tmp_path / "runs" / "axes" / rid
    rows = [json.loads(line) for line in (run_dir / "rows.jsonl").read_text().splitlines()]
    expected = {
        "ladder": "micro",
        "lr": 0.003,
        "batch_size": 16,
        "seq_len": 128,
        "schedule": "cosine",
        "weight_decay": 0.033,
        "qk_norm": False,
        "z_loss": 0.0,
    }
    assert rows and all({k: r[k] for k in expected} == expected and r["warmup_steps"] >= 0 for r in rows)
    assert json.loads((run_dir / "meta.json").read_text())["corpora"] == {}  # syn_en is generated, not built

    table = tmp_path / "results.parquet"
    assert main(["results", "collect", str(tmp_path / "runs" / "axes"), "--out", str(table)]) == 0
    frame = pd.read_parquet(table)
    final = frame[(frame.run_id == rid) & (frame.kind == "val_loss") & frame.final]
    assert len(final) and (final.lr == 0.003).all() and (final.batch_size == 16).all() and (~final.qk_norm).all()

    changed = _sweep(tmp_path, block.format(lrs="[0.003, 0.01]"), extra=", weight_decay: 0.1", file="changed.yaml")
    capsys.readouterr()
    assert main(["sweep", "status", str(changed), "--json"]) == 0
    status = {r["run_id"]: r for r in json.loads(capsys.readouterr().out)}
    reason = "config differs: train.weight_decay 0.033 (saved) vs 0.1 (sweep)"
    assert (status[rid]["state"], status[rid]["detail"]) == ("CHANGED", reason)
    new = "dec-s1-syn_en-m1-seed0-bs16-lr0.01"
    assert status[new]["state"] == "TODO"

    assert main(["sweep", "run", str(changed), "--quiet"]) == 1  # the changed run is reported, the new one trains
    captured = capsys.readouterr()
    assert f"{rid}: CHANGED: {reason}" in captured.out
    assert (tmp_path / "runs" / "axes" / new / "DONE").is_file()
    assert main(["sweep", "status", str(changed), "--json"]) == 0
    status = {r["run_id"]: r["state"] for r in json.loads(capsys.readouterr().out)}
    assert status == {rid: "CHANGED", new: "DONE"}


def test_each_dataset_can_have_its_own_eval_suite(tmp_path, capsys):
    """`eval_suites` maps a dataset to its suite (a real-text corpus needs its own tasks); other datasets take
    `eval_suite`; the spec a run's stages get (and its JSON round trip) names its own suite."""
    from testbed.sweep.stages import StageSpec

    grid = "  - {sizes: [s1], datasets: [syn_en, syn_fr], multipliers: [20]}"
    path = _sweep(tmp_path, grid)
    path.write_text(path.read_text() + "eval_suite: synthetic\neval_suites: {syn_fr: gadre17}\n")
    sweep = load_sweep_config(path)
    spec = StageSpec.of(sweep)
    suites = {c.data.name: spec.for_run(c).eval_suite for c in expand(sweep)}
    assert suites == {"syn_en": "synthetic", "syn_fr": "gadre17"}
    (fr,) = [c for c in expand(sweep) if c.data.name == "syn_fr"]
    assert StageSpec.from_json(spec.to_json()) == spec and StageSpec.from_json(spec.to_json()).for_run(fr) == (
        spec.for_run(fr)
    )
    path.write_text(path.read_text().replace("{syn_fr: gadre17}", "{syn_fr: nosuch}"))
    assert main(["sweep", "plan", str(path)]) == 2
    assert "eval_suites.syn_fr='nosuch': no suite file" in capsys.readouterr().err


def test_a_corpus_rebuilt_since_the_run_trained_makes_it_changed(tmp_path, monkeypatch):
    """A run records the fingerprints of the built corpora it reads (meta.json `corpora`); when the corpus's
    manifest has another fingerprint now, status says CHANGED and prepare refuses, naming the corpus. A corpus
    not built now cannot be compared and changes nothing."""
    import testbed.data.sources as sources

    corpus = tmp_path / "corpus" / "en"
    corpus.mkdir(parents=True)
    (corpus / "train.jsonl").write_text('{"text": "a"}\n')
    manifest = tmp_path / "corpus" / "manifest.json"
    manifest.write_text(json.dumps({"fingerprint": "aaa"}))
    local = sources.Source("docs_x", "local", "en", splits={"train": sources.SplitSpec((str(corpus / "train.jsonl"),))})
    monkeypatch.setattr(sources, "known_sources", lambda: {"docs_x": local})
    assert sources.corpus_fingerprints(["docs_x", "syn_en"]) == {"docs_x": "aaa"}

    grid = "  - {sizes: [s1], datasets: [syn_en], multipliers: [20]}"
    (config,) = expand(load_sweep_config(_sweep(tmp_path, grid)))
    run_dir = RunDir.of(config).prepare(config)
    run_dir.write_meta({"corpora": sources.corpus_fingerprints(["docs_x"])})
    assert run_dir.change(config) is None
    manifest.write_text(json.dumps({"fingerprint": "bbb"}))
    reason = "corpus docs_x was rebuilt since the run trained: fingerprint aaa (trained) vs bbb (now)"
    assert run_dir.change(config) == reason
    (row,) = sweep_status([config])
    assert (row["state"], row["detail"]) == ("CHANGED", reason)
    with pytest.raises(RunChanged) as caught:
        RunDir.of(config).prepare(config)
    assert caught.value.reason == reason
    manifest.unlink()  # not built now: nothing to compare
    assert run_dir.change(config) is None
