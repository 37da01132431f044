"""(loss, error) points from every scored checkpoint: the sweep key eval_steps that scores them, the pairing of
val_loss and task rows by (run, step) (analysis.select.checkpoint_points), their seed means, and Err(L) fitted on
the Err(L) fit runs' checkpoints by analysis.replicate (a target's never)."""

import re
from pathlib import Path

import pandas as pd
import pytest

from analysis.cli import main as analysis_main
from analysis.errors import AnalysisError
from analysis.laws import get_law
from analysis.replicate import replicate
from analysis.schema import to_frame
from analysis.seeds import point_means
from analysis.select import checkpoint_points
from testbed.config import load_sweep_config
from testbed.errors import TestbedError
from testbed.evaluate.suite import load_suite
from testbed.rundir import RunDir
from testbed.sweep.expand import expand
from testbed.sweep.stages import StageSpec, stage_state

# --- pairing ----------------------------------------------------------------------------------


def _run_rows(run_id: str, seed: int, checkpoints: dict, dataset: str = "d") -> list[dict]:
    """Rows of one run: checkpoints maps step -> {name: value} (loss under the dataset's name, task scores)."""
    last = max(checkpoints)
    rows = []
    for step, numbers in checkpoints.items():
        base = dict(run_id=run_id, arch="decoder", size="s1", dataset=dataset, multiplier=20.0, seed=seed,
                    params=1000, step=step, tokens=100 * step, flops=6e5 * step, final=step == last)  # fmt: skip
        for name, value in numbers.items():
            kind, metric = ("val_loss", "loss") if name in (dataset, "other_val") else ("task", "acc")
            intended = "noisy" if name == "occupation" else None
            rows.append(base | dict(kind=kind, name=name, metric=metric, value=value, intended=intended))
    return rows


def pairing_table() -> pd.DataFrame:
    """Run a: steps 10 and 20 scored, 15 with a loss alone, 5 with tasks alone; run b: step 10 and 20 scored,
    with other values. Every checkpoint has controls (random_label, occupation meant to be noisy) that move
    a lot, a second validation set and a row without a step."""
    controls = {"random_label": 0.9, "occupation": 0.05}
    a = {
        5: {"t": 0.2, "u": 0.2},
        10: {"d": 4.0, "other_val": 9.0, "t": 0.3, "u": 0.5} | controls,
        15: {"d": 3.5},
        20: {"d": 3.0, "other_val": 8.0, "t": 0.6, "u": 0.8} | controls,
    }
    b = {10: {"d": 3.8, "t": 0.4, "u": 0.4} | controls, 20: {"d": 2.5, "t": 0.9, "u": 0.7} | controls}
    rows = _run_rows("a", 0, a) + _run_rows("b", 1, b)
    rows.append(rows[0] | dict(step=None, kind="val_loss", name="d", metric="loss", value=1.0))
    return to_frame(rows)


def test_points_pair_loss_and_tasks_by_run_and_step_without_controls():
    points = checkpoint_points(pairing_table()).set_index(["run_id", "step"])
    assert list(points.index) == [("a", 10), ("a", 20), ("b", 10), ("b", 20)]
    assert points["loss"].tolist() == [4.0, 3.0, 3.8, 2.5]
    assert points["error"].tolist() == pytest.approx([1 - 0.4, 1 - 0.7, 1 - 0.4, 1 - 0.8])
    assert points["tokens"].tolist() == [1000, 2000, 1000, 2000] and points["final"].tolist() == [0, 1, 0, 1]
    assert points.loc[("a", 20), "flops"] == 6e5 * 20


def test_points_on_named_tasks_and_another_validation_set():
    points = checkpoint_points(pairing_table(), task=["t", "random_label"], x="other_val")
    assert points[["run_id", "step", "loss"]].values.tolist() == [["a", 10, 9.0], ["a", 20, 8.0]]
    assert points["error"].tolist() == pytest.approx([1 - (0.3 + 0.9) / 2, 1 - (0.6 + 0.9) / 2])
    with pytest.raises(AnalysisError, match="no task rows with metric 'acc' for nope; tasks: occupation, random"):
        checkpoint_points(pairing_table(), task="nope")


def test_a_checkpoint_scored_twice_is_refused_and_tables_without_steps_have_no_points():
    table = pairing_table()
    twice = pd.concat([table, table[(table["name"] == "t") & (table["step"] == 20)]])
    with pytest.raises(AnalysisError, match="run a has more than one task row named 't' at step 20$"):
        checkpoint_points(twice)
    assert checkpoint_points(table.assign(step=pd.NA)).empty


def test_point_means_average_seeds_per_configuration_and_step():
    table = pd.concat([pairing_table(), to_frame(_run_rows("a2", 1, {10: {"d": 4.2, "t": 0.5, "u": 0.5}}))])
    table = table[table["run_id"] != "b"]
    means = point_means(checkpoint_points(table)).set_index("step")
    assert means["run_id"].unique().tolist() == ["decoder-s1-d-m20"]
    assert means["loss"].to_dict() == pytest.approx({10: 4.1, 20: 3.0})
    assert means["error"].to_dict() == pytest.approx({10: 1 - (0.4 + 0.5) / 2, 20: 1 - 0.7})
    assert means["seeds"].to_dict() == {10: 2, 20: 1}


# --- Err(L) on the checkpoints of the Err(L) fit runs -------------------------------------------

SIZES = {"c1": 2_000_000, "c2": 5_000_000, "c3": 12_000_000, "c4": 30_000_000, "c5": 80_000_000, "c6": 200_000_000}
LOSS = {"e": -0.25, "E": 1.7, "alpha": 150.0, "beta": 300.0}
ERROR = {"epsilon": 0.75, "k": 3.0, "gamma": 0.6}
# c1-c4 at M = 20 and c1 over-trained: the loss fit; with c5 at M = 20 the Err(L) fit; c5-M80, c6-M20 held out
GRID = [("c1", 20), ("c2", 20), ("c3", 20), ("c4", 20), ("c1", 80), ("c5", 20), ("c5", 80), ("c6", 20)]
TARGETS = {("c5", 80), ("c6", 20)}
FRACTIONS = (0.25, 0.5, 1.0)  # checkpoints at D/4, D/2 and the final one


def protocol_table(mid_schedule_gain: float = 0.0) -> pd.DataFrame:
    """One dataset; each run's checkpoint at a fraction f of its tokens has the over-training law's loss at
    M f, task accuracies 1 - Err(loss) +- 0.02 and a control at 0.9; c1 at M = 20 has two seeds (loss and
    scores +- a little, equal on average). The targets' intermediate checkpoints score nonsense (error 0.95):
    a fit that took them would miss. mid_schedule_gain: the fit runs' intermediate checkpoints score that much
    above the law at their loss, as a cosine run's mid-schedule checkpoints do (docs/replication.md)."""
    overtrain, to_error = get_law("overtrain"), get_law("loss_to_error")
    rows = []
    for size, m in GRID:
        n = SIZES[size]
        for seed, shift in ((0, 0.0),) if (size, m) != ("c1", 20) else ((0, 0.01), (1, -0.01)):
            for f in FRACTIONS:
                loss = overtrain([[n], [m * f]], LOSS)[0]
                accuracy = 0.05 if (size, m) in TARGETS and f < 1 else 1 - to_error([loss], ERROR)[0]
                accuracy += mid_schedule_gain if (size, m) not in TARGETS and f < 1 else 0.0
                base = dict(run_id=f"{size}-m{m}-seed{seed}", arch="decoder", size=size, params=n, dataset="syn_en",
                            multiplier=float(m), seed=seed, step=int(400 * f), tokens=int(m * n * f),
                            flops=6.0 * n * m * n * f, final=f == 1.0)  # fmt: skip
                rows += [base | dict(kind="val_loss", name="syn_en", metric="loss", value=loss * (1 + shift / 10)),
                         base | dict(kind="task", name="task_a", metric="acc", value=accuracy + 0.02 + shift),
                         base | dict(kind="task", name="task_b", metric="acc", value=accuracy - 0.02 + shift),
                         base | dict(kind="task", name="random_label", metric="acc", value=0.9)]  # fmt: skip
    return to_frame(rows)


@pytest.fixture(scope="module")
def on_checkpoints():
    return replicate(protocol_table(), n_bootstrap=40)


def test_err_l_is_fitted_on_the_error_fit_runs_checkpoints_and_recovers_the_law(on_checkpoints):
    points = on_checkpoints.error_points
    assert sorted(set(points["size"] + "-M" + points["multiplier"].map("{:g}".format))) == [
        "c1-M20", "c1-M80", "c2-M20", "c3-M20", "c4-M20", "c5-M20"
    ]  # fmt: skip
    assert len(points) == 6 * 3 and int((~points["final"].astype(bool)).sum()) == 12
    assert points.loc[points["size"] == "c1", "seeds"].tolist() == [2, 2, 2, 1, 1, 1]
    error = on_checkpoints.result.fits["syn_en"].error
    assert error.n_points == 18
    assert error.params == pytest.approx(ERROR, rel=1e-4)  # the control and the targets' nonsense left out
    assert "Err(L) fitted on 18 points from 6 runs (12 intermediate checkpoints besides the final ones)" in (
        on_checkpoints.summary()
    )


def test_the_chained_predictions_use_the_checkpoint_fit(on_checkpoints):
    runs = on_checkpoints.result.runs.set_index("run_id")
    target = runs.loc["decoder-c6-syn_en-m20"]
    law = get_law("loss_to_error")
    fitted = on_checkpoints.result.fits["syn_en"].error.params
    assert target["predicted_error"] == pytest.approx(law([target["predicted"]], fitted)[0], rel=1e-12)
    assert target["error_at_observed"] == pytest.approx(target["observed_error"], rel=1e-4)
    assert target["error_ci_low"] < target["predicted_error"] < target["error_ci_high"]
    err = {r["target"]: r for r in on_checkpoints.records if r["quantity"] == "err"}
    assert set(err) == {"c5-M80", "c6-M20"} and all(r["rel_error"] < 0.01 for r in err.values())


def test_final_checkpoints_alone_when_asked_with_the_residuals_of_both_kinds():
    """The fit runs' intermediate checkpoints err 0.05 less than the law at their loss: fitted on the final
    ones alone (checkpoints=False) the law is recovered and the summary gives both kinds' mean residual;
    fitted on every checkpoint (the default) the law is bent away from ERROR and the residuals say so."""
    table = protocol_table(mid_schedule_gain=0.05)
    alone = replicate(table, n_bootstrap=0, checkpoints=False)
    assert alone.result.fits["syn_en"].error.n_points == 6
    assert alone.result.fits["syn_en"].error.params == pytest.approx(ERROR, rel=1e-4)
    assert len(alone.error_points) == 18  # measured, not fitted
    assert ("Err(L) fitted on the final checkpoints of 6 runs (--err-final); their 12 scored intermediate "
            "checkpoints not fitted; mean residual (observed - law): final +0.000, intermediate -0.050") in (
        alone.summary()
    )  # fmt: skip
    both = replicate(table, n_bootstrap=0)
    assert both.result.fits["syn_en"].error.params != pytest.approx(ERROR, rel=0.05)
    residuals = re.search(r"final ([-+][\d.e-]+), intermediate ([-+][\d.e-]+)", both.summary())
    assert float(residuals[1]) > 0.01 and float(residuals[2]) < -0.005  # the two kinds pull apart
    finals = replicate(table[table["final"] | (table["kind"] == "val_loss")], n_bootstrap=0)
    assert finals.error_points is None and finals.result.fits["syn_en"].error.n_points == 6
    assert "Err(L) fitted on the final checkpoints of 6 runs\n" in finals.summary()
    with pytest.raises(AnalysisError, match="checkpoints: no checkpoint of the Err\\(L\\) fit runs has both"):
        replicate(table.assign(step=pd.NA), n_bootstrap=0, checkpoints=True)


def test_err_final_on_the_command_line(tmp_path, capsys):
    path = tmp_path / "results.parquet"
    protocol_table(mid_schedule_gain=0.05).to_parquet(path)
    assert analysis_main(["replicate", str(path), "--bootstrap", "0", "--err-final"]) == 0
    assert "Err(L) fitted on the final checkpoints of 6 runs (--err-final)" in capsys.readouterr().out
    assert analysis_main(["replicate", str(path), "--bootstrap", "0"]) == 0
    assert "Err(L) fitted on 18 points from 6 runs" in capsys.readouterr().out


# --- the sweep key ----------------------------------------------------------------------------

SWEEP = """
name: ckpt
out_dir: {out}
eval_suites: {{syn_en: synthetic, syn_fr: synthetic_demo}}
{steps}
defaults:
  model: {{arch: decoder, ladder: micro}}
grid:
  - {{sizes: [s1], datasets: [syn_en, syn_fr], multipliers: [20]}}
"""


def _sweep_file(tmp_path: Path, steps: str) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(SWEEP.format(out=tmp_path / "runs", steps=steps))
    return path


def test_eval_steps_reaches_every_runs_stage_spec(tmp_path):
    sweep = load_sweep_config(_sweep_file(tmp_path, "eval_steps: all"))
    spec = StageSpec.of(sweep)
    per_run = {c.data.name: spec.for_run(c) for c in expand(sweep)}
    assert {d: (s.eval_suite, s.eval_steps) for d, s in per_run.items()} == {
        "syn_en": ("synthetic", "all"), "syn_fr": ("synthetic_demo", "all")
    }  # fmt: skip
    assert StageSpec.from_json(per_run["syn_en"].to_json()) == per_run["syn_en"]  # what a worker or a job gets
    default = StageSpec.of(load_sweep_config(_sweep_file(tmp_path, "")))
    assert default.eval_steps == "final" and default.settings("eval") == {"suite": None}


def test_a_bad_eval_steps_is_one_line_naming_file_key_and_value(tmp_path):
    path = _sweep_file(tmp_path, "eval_steps: every")
    with pytest.raises(TestbedError) as caught:
        load_sweep_config(path)
    assert str(caught.value) == f"{path}: eval_steps='every': known: final, all"


def test_a_run_scored_at_its_final_checkpoint_has_eval_pending_under_all(tmp_path):
    """Switching a finished sweep to `all` reopens the eval stage (which then scores only the missing
    checkpoints); a run scored at all of them is done for `final` too."""
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    final, every = StageSpec("synthetic"), StageSpec("synthetic", eval_steps="all")
    run.record_stage("eval", state="DONE", rows=6, **final.settings("eval"))
    assert (stage_state(run.path, "eval", final)[0], stage_state(run.path, "eval", every)[0]) == ("DONE", "TODO")
    run.record_stage("eval", state="DONE", rows=18, **every.settings("eval"))
    assert run.stage_record("eval")["steps"] == "all"
    assert (stage_state(run.path, "eval", final)[0], stage_state(run.path, "eval", every)[0]) == ("DONE", "DONE")
    assert stage_state(run.path, "eval", StageSpec("synthetic_demo", eval_steps="all"))[0] == "TODO"


def test_a_suite_that_gains_a_task_reopens_the_eval_stage(tmp_path):
    """The record names the suite's tasks: a task added to the suite makes the run's eval TODO again (eval then
    scores only that task), so `sweep status` and `sweep run` agree that the run is not done."""
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    spec = StageSpec("synthetic")
    assert spec.settings("eval")["tasks"] == sorted(t.name for t in load_suite("synthetic").tasks)
    run.record_stage("eval", state="DONE", rows=6, **spec.settings("eval"))
    assert stage_state(run.path, "eval", spec)[0] == "DONE"
    older = dict(run.stage_record("eval"), tasks=spec.settings("eval")["tasks"][1:])  # one task fewer
    run.record_stage("eval", **{k: v for k, v in older.items() if k != "time"})
    assert stage_state(run.path, "eval", spec)[0] == "TODO"
