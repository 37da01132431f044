"""The LR check (`analyze lr`) on a table with a known optimum per size, and the ladder's figures."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.cli import main
from analysis.errors import AnalysisError
from analysis.extrapolate import Split, extrapolate
from analysis.frontier import frontier
from analysis.lr_sweep import EDGE, OK, RULE_OFF, RULE_UNKNOWN, TOO_FEW, best_lr_runs, log_parabola_vertex, lr_sweep
from analysis.plots import plot_frontier, plot_iso_step, plot_residuals
from analysis.schema import to_frame
from analysis.synthetic import law_table

LRS = (0.0025, 0.005, 0.01, 0.02, 0.04, 0.08)
SIZES = {"s1": 1e4, "s2": 4e4, "s3": 1.6e5, "s4": 2.56e6}  # params; s4's optimum lies below the swept LRs
EXPONENT = -0.5  # the optimum LR ~ params^-0.5; the rule's too, at 2/3 of the optimum


def optimum(params: float) -> float:
    return 0.015 * (params / 1e4) ** EXPONENT


def rule(params: float) -> float:
    return 0.01 * (params / 1e4) ** EXPONENT


def final_loss(params: float, lr: float) -> float:
    """A parabola in log LR around the size's optimum, floor 3 - 0.1 log10(params / 1e4)."""
    return 3.0 - 0.1 * np.log10(params / 1e4) + 0.05 * np.log(lr / optimum(params)) ** 2


def rows(size: str, lr: float, multiplier: float = 20, seed: int = 0, offset: float = 0.0, factor=True) -> list[dict]:
    """A run's val_loss rows at 3 steps: the final one at final_loss + offset, earlier ones worth more."""
    params = SIZES[size]
    run = {"run_id": f"dec-{size}-syn-m{multiplier:g}-seed{seed}-lr{lr:g}", "arch": "decoder", "size": size,
           "dataset": "syn", "multiplier": multiplier, "seed": seed, "params": int(params),
           "params_nonembed": int(params / 2), "lr": lr, "lr_factor": lr / rule(params) if factor else None,
           "batch_size": 8, "kind": "val_loss", "name": "syn", "metric": "loss", "ladder": "toy"}  # fmt: skip
    steps = int(multiplier * params / 512)
    loss = final_loss(params, lr) + offset
    return [run | {"step": s, "tokens": s * 512, "flops": 6 * params * s * 512, "final": s == steps,
                   "value": loss + 2.0 * (1 - s / steps)} for s in (steps // 4, steps // 2, steps)]  # fmt: skip


def sweep_table(factor: bool = True) -> pd.DataFrame:
    records = [r for size in SIZES for lr in LRS for r in rows(size, lr, factor=factor)]
    records += rows("s1", 0.02, seed=1, offset=0.01, factor=factor) + rows(
        "s1", 0.02, seed=2, offset=-0.01, factor=factor
    )
    records += rows("s1", 0.01, 80, factor=factor) + rows("s1", 0.02, 80, factor=factor)  # two LRs: too few
    records += rows("s2", 0.01, 40, factor=factor)  # one LR: not a sweep
    return to_frame(records)


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return sweep_table()


def check(result, size: str, multiplier: float = 20) -> pd.Series:
    checks = result.checks
    return checks[(checks["size"] == size) & (checks["multiplier"] == multiplier)].iloc[0]


def test_vertex_of_a_parabola_in_log_lr():
    lrs = np.array([0.01, 0.02, 0.04])
    assert log_parabola_vertex(lrs, final_loss(1e4, lrs)) == pytest.approx(0.015, rel=1e-9)


def test_best_lr_optimum_and_rule_per_size(table):
    result = lr_sweep(table)
    expected_best = {"s1": 0.02, "s2": 0.01, "s3": 0.005}
    for size, best in expected_best.items():
        row = check(result, size)
        assert row["best_lr"] == best
        assert row["optimum"] == pytest.approx(optimum(SIZES[size]), rel=1e-6)
        assert row["rule_lr"] == pytest.approx(rule(SIZES[size]))
        gap = final_loss(SIZES[size], rule(SIZES[size])) / final_loss(SIZES[size], best) - 1
        assert row["gap"] == pytest.approx(gap, rel=1e-6)
        assert 0.001 < row["gap"] < 0.01  # 0.0014 at 1.5x off the optimum
        assert row["verdict"] == OK
    s1 = result.curves[(result.curves["size"] == "s1") & (result.curves["multiplier"] == 20)].set_index("lr")
    assert s1.loc[0.02, "seeds"] == 3 and s1.loc[0.02, "loss"] == pytest.approx(final_loss(1e4, 0.02))
    assert s1.loc[0.02, "loss_sd"] == pytest.approx(0.01 / final_loss(1e4, 0.02))  # offsets +-0.01: SD 0.01
    assert np.isnan(s1.loc[0.01, "loss_sd"])  # one seed: no SD


def test_a_tighter_tolerance_calls_the_rule_off(table):
    result = lr_sweep(table, tolerance=0.001)
    assert check(result, "s1")["verdict"] == RULE_OFF
    assert "above the best's (tolerance 0.10%)" in check(result, "s1")["note"]


def test_a_study_at_a_fraction_of_the_rule_checks_that_fraction(table):
    """--chosen-factor 2: the run at twice the ladder's LR is the one checked (s1's and s3's best swept LR)."""
    result = lr_sweep(table, chosen=2.0)
    for size in ("s1", "s3"):
        row = check(result, size)
        assert row["rule_lr"] == pytest.approx(2 * rule(SIZES[size])) and row["gap"] == 0 and row["verdict"] == OK
    s4 = check(result, "s4")
    assert s4["rule_lr"] == pytest.approx(0.00125) and "(lr_factor 2) was not run" in s4["note"]
    assert "the rule's run has lr_factor 2;" in result.summary() and result.to_dict()["chosen"] == 2.0
    with pytest.raises(AnalysisError, match="chosen lr_factor must be positive"):
        lr_sweep(table, chosen=0)


def test_edge_too_few_and_unswept_are_said_never_ok(table):
    result = lr_sweep(table)
    edge = check(result, "s4")
    assert edge["verdict"] == EDGE and edge["best_lr"] == 0.0025 and np.isnan(edge["optimum"])
    assert "smallest swept (0.0025..0.08): the optimum may lie below the range" in edge["note"]
    assert edge["rule_lr"] == pytest.approx(0.000625) and np.isnan(edge["rule_loss"])  # the rule's LR was not run
    assert check(result, "s1", 80)["verdict"] == TOO_FEW
    assert result.unswept == ("syn decoder s2 M40 bs8",)
    assert "left out, run at one LR only: syn decoder s2 M40 bs8" in result.summary()


def test_fitted_exponent_recovered_beside_the_rules(table):
    for against in ("params", "params_nonembed"):  # params_nonembed = params / 2: the same exponent
        row = lr_sweep(table, against=against).scaling.set_index("multiplier").loc[20.0]
        assert row["exponent"] == pytest.approx(EXPONENT, abs=1e-9)
        assert row["rule_exponent"] == pytest.approx(EXPONENT, abs=1e-9)
        assert row["sizes"] == "s1, s2, s3" and row["left_out"] == "s4 (edge)"


def test_without_lr_factor_the_rule_is_unknown_and_only_the_best_reported():
    result = lr_sweep(sweep_table(factor=False))
    row = check(result, "s2")
    assert row["verdict"] == RULE_UNKNOWN and row["best_lr"] == 0.01 and np.isnan(row["rule_lr"])
    assert "no lr_factor in the rows: the rule's run is unknown" in row["note"]
    scaling = result.scaling.set_index("multiplier").loc[20.0]
    assert scaling["exponent"] == pytest.approx(EXPONENT) and np.isnan(scaling["rule_exponent"])
    assert "the rule's b = unknown" in result.summary()


def test_lrs_set_directly_leave_the_rule_unknown(table):
    direct = table.assign(lr_factor=1.0)
    row = check(lr_sweep(direct), "s2")
    assert row["verdict"] == RULE_UNKNOWN and "6 LRs carry lr_factor 1" in row["note"]


def test_best_lr_runs_keep_each_configurations_best(table):
    kept = set(best_lr_runs(table)["run_id"])
    assert {r for r in kept if r.startswith("dec-s2-syn-m20")} == {"dec-s2-syn-m20-seed0-lr0.01"}
    assert "dec-s2-syn-m40-seed0-lr0.01" in kept and len([r for r in kept if "s1-syn-m20" in r]) == 3


def test_errors_are_one_line():
    with pytest.raises(AnalysisError, match="no run has a peak LR"):
        lr_sweep(sweep_table().assign(lr=None))
    with pytest.raises(AnalysisError, match="no LR sweep: each of the 1 configurations"):
        lr_sweep(to_frame(rows("s1", 0.01)))
    with pytest.raises(AnalysisError, match="share configuration, LR and seed"):
        lr_sweep(to_frame(rows("s1", 0.01) + [r | {"run_id": "other"} for r in rows("s1", 0.01)]))


def test_lr_command_json_and_exit_codes(tmp_path, table, capsys):
    path = tmp_path / "sweep.parquet"
    table.to_parquet(path)
    assert main(["lr", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    s1 = next(c for c in out["checks"] if c["size"] == "s1" and c["multiplier"] == 20)
    assert s1["verdict"] == OK and [point["lr"] for point in s1["losses"]] == list(LRS)
    assert main(["lr", str(path), "--tolerance", "-1"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_lr_command_joins_the_sweep_that_trained_the_chosen_runs(tmp_path, table, capsys):
    """The LR sweep's own table lacks the rule's runs, which another sweep trained. Both hold s1 at 0.02,
    once under the same ids and once under the other sweep's ids (the same configuration, LR and seed):
    --with joins them, each run once, and the check is the same as on the whole table."""
    at_rule = np.isclose(table["lr_factor"], 1.0)
    sweep, main_sweep = tmp_path / "sweep.parquet", tmp_path / "main.parquet"
    table[~at_rule].to_parquet(sweep)
    shared = table[table["lr"] == 0.02]
    renamed = shared[shared["size"] == "s2"].assign(run_id=lambda f: "main-" + f["run_id"])
    pd.concat([table[at_rule], shared[shared["size"] != "s2"], renamed]).to_parquet(main_sweep)
    assert main(["lr", str(sweep), "--with", str(main_sweep), "--json"]) == 0
    joined = json.loads(capsys.readouterr().out)
    assert main(["lr", str(sweep), "--json"]) == 0
    alone = json.loads(capsys.readouterr().out)
    table.to_parquet(tmp_path / "all.parquet")
    assert main(["lr", str(tmp_path / "all.parquet"), "--json"]) == 0
    assert joined == json.loads(capsys.readouterr().out)
    s1 = [next(c for c in out["checks"] if c["size"] == "s1" and c["multiplier"] == 20) for out in (alone, joined)]
    assert s1[0]["rule_loss"] is None and s1[0]["verdict"] == RULE_UNKNOWN and s1[1]["verdict"] == OK


# figures


def test_iso_step_writes_a_png_and_refuses_a_table_without_rows(tmp_path, table):
    path = plot_iso_step(table, tmp_path / "iso.png")
    assert path.stat().st_size > 10_000
    with pytest.raises(AnalysisError, match=r"^no val_loss rows with a step on their own dataset at M = 10"):
        plot_iso_step(table, tmp_path / "none.png", multiplier=10)


LAW = {"syn": {"alpha": 150.0, "beta": 300.0, "e": -0.25, "E": 1.7}}


def test_residuals_plot_writes_a_png_and_refuses_a_failed_fit(tmp_path):
    law_runs = law_table(LAW, noise=0.002)
    assert plot_residuals(extrapolate(law_runs), tmp_path / "res.png").stat().st_size > 10_000
    few = law_runs[law_runs["size"].isin(["0.011B", "0.079B"]) & (law_runs["multiplier"] == 20)]
    with pytest.raises(AnalysisError, match="^no overtrain fit to show residuals of"):
        plot_residuals(extrapolate(few, split=Split(max_fit_params=1e12)), tmp_path / "none.png")


def test_frontier_recovers_the_compute_exponent_and_plots(tmp_path):
    front = frontier(law_table(LAW))  # at fixed M both terms of the law go as C^(e/2)
    fit = front.fits["syn"]
    assert fit.params["alpha"] == pytest.approx(0.125, rel=0.02)
    assert np.abs(front.runs["residual"]).max() < 0.002
    assert plot_frontier(front, tmp_path / "frontier.png").stat().st_size > 10_000
    with pytest.raises(AnalysisError, match="^no runs at M = 7 with a final loss on own; multipliers: 5, 10, 20"):
        frontier(law_table(LAW), multiplier=7)
    # with the text's entropy above the fitted E, the fit is unphysical, said and drawn
    table = law_table(LAW)
    table.loc[table["kind"] == "val_loss", "entropy_floor"] = fit.params["E"] + 0.1
    front = frontier(table)
    assert front.fits["syn"].status == "unphysical" and "below the text's entropy" in front.fits["syn"].reason
    assert front.floors == {"syn": pytest.approx(fit.params["E"] + 0.1)}
    assert "unphysical: E = " in front.summary() and "entropy under its generator" in front.summary()
    assert plot_frontier(front, tmp_path / "floor.png").stat().st_size > 10_000


def test_ladder_plots_command(tmp_path, table, capsys):
    path = tmp_path / "sweep.parquet"
    table.to_parquet(path)
    out = tmp_path / "figures"
    assert main(["ladder-plots", str(path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == f"iso-step: {out / 'iso_step.png'}"
    assert printed[2] == f"frontier: {out / 'frontier.png'}"
    # 4 sizes are too few for replicate's roles: the default split on seed means, whose over-training fit breaks
    # its constraints (status unphysical); it is drawn all the same, dashed, and its title says so
    assert printed[1].startswith(f"residuals: {out / 'residuals.png'} (seed means")
    assert {p.name for p in Path(out).iterdir()} >= {"iso_step.png", "frontier.png", "residuals.png"}
