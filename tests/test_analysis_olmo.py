"""The OLMo ladder and Pythia releases: imports on the shipped copies, the ladder's two-step protocol."""

import numpy as np
import pandas as pd
import pytest

from analysis import olmo_ladder, olmo_reproduce, pythia
from analysis.cli import main
from analysis.errors import AnalysisError
from analysis.reproduce import RECORD_KEYS
from analysis.schema import COLUMNS, to_frame
from analysis.studies import STUDIES, release_of


@pytest.fixture(scope="module")
def ladder() -> pd.DataFrame:
    return olmo_ladder.load()


def test_shipped_copies_keep_licence_and_stay_small():
    for directory in (olmo_ladder.DATA_DIR, pythia.DATA_DIR):
        assert "Apache License" in (directory / "LICENSE").read_text()
        assert "SOURCE.md" in {p.name for p in directory.iterdir()}
        assert sum(p.stat().st_size for p in directory.rglob("*") if p.is_file()) < 2.5e6


def test_ladder_import_has_every_checkpoint(ladder):
    assert list(ladder.columns) == list(COLUMNS) and release_of(ladder) is STUDIES.get("olmo_ladder")
    assert ladder["run_id"].nunique() == 18
    checkpoints = ladder[ladder["name"] == "c4_en"].groupby("run_id").size()
    assert checkpoints["190M-1xC"] == 37 and checkpoints["1B-10xC"] == 163 and checkpoints["13B-5T"] == 12
    assert ladder[ladder["final"]].groupby("run_id")["tokens"].nunique().eq(1).all()
    run = ladder[(ladder["run_id"] == "13B-5T") & ladder["final"]].set_index(["name", "metric"])
    assert run.at[("hellaswag_val_5shot", "acc"), "value"] == pytest.approx(0.8336984515190125)
    assert run.at[("hellaswag_val_5shot", "ce"), "value"] == pytest.approx(1.217405915260315)  # -soft_log
    assert run.at[("hellaswag_val_5shot", "acc"), "chance"] == 0.25
    assert run.at[("c4_en", "loss"), "tokens"] == 5_000_088_518_656
    assert run.at[("c4_en", "loss"), "params"] == 13_202_396_160 and run.at[("c4_en", "loss"), "step"] == 596057


def test_pythia_import():
    table = pythia.load()
    assert table["run_id"].nunique() == 30 and release_of(table) is STUDIES.get("pythia")
    final = table[(table["run_id"] == "pythia-70m-0shot") & table["final"]].set_index(["name", "metric"])
    assert final.at[("lambada_openai", "acc"), "value"] == pytest.approx(0.1846, abs=1e-4)
    assert final.at[("lambada_openai", "loss"), "value"] == pytest.approx(np.log(142.42891), abs=1e-5)
    assert final.at[("piqa", "acc"), "stderr"] > 0 and final.at[("piqa", "acc"), "params"] == 70_426_624
    assert not table["name"].str.startswith("crows_pairs").any()


def test_released_13b_table_reproduced(ladder):
    reproduction = olmo_reproduce.reproduction(ladder, n_bootstrap=0)
    comparison = reproduction.comparison().set_index("task")
    assert len(comparison) == 8
    assert comparison["vs_release_pts"].max() < 0.01  # the release's own predictions
    assert comparison.at["ARC-Easy", "error_pts"] == pytest.approx(9.93, abs=0.01)
    assert all(list(r) == list(RECORD_KEYS) for r in reproduction.records)
    assert {r["target"] for r in reproduction.records} == {"7B-4T", "13B-5T"}


def synthetic_ladder(step1: dict, step2: dict, noise: float = 0.0) -> pd.DataFrame:
    """Ladder and target runs of one task whose bpb follows step1 (at every checkpoint) and acc step2(bpb)."""
    rows, rng = [], np.random.default_rng(0)
    sizes = {"190M": 1.9e8, "370M": 3.7e8, "760M": 7.6e8, "1B": 1.28e9, "13B": 1.32e10}
    for size, n in sizes.items():
        for m in (20, 40, 100, 200) if size != "13B" else (380,):
            run = "13B-5T" if size == "13B" else f"{size}-{m // 20}xC"
            for tokens in np.linspace(0.5, 1, 40) * m * n:
                bpb = olmo_reproduce.STEP1([[n], [tokens]], step1)[0] * (1 + noise * rng.standard_normal())
                acc = olmo_reproduce.STEP2([bpb], step2)[0]
                for metric, value in (("bpb", bpb), ("acc", acc)):
                    rows.append({"run_id": run, "sweep": "olmo_ladder", "size": size, "params": int(n),
                                 "dataset": "peteish", "tokens": int(tokens), "kind": "task",
                                 "name": "hellaswag_val_5shot", "metric": metric, "value": value})  # fmt: skip
    return to_frame(rows)


def test_two_steps_recover_known_laws():
    step1 = {"E": 0.5, "A": 30.0, "alpha": 0.2, "B": 300.0, "beta": 0.25}
    step2 = {"a": -0.7, "L0": 1.6, "k": 4.0, "b": 1.0}  # the ladder spans its rise; acc(0) = 1 - 1e-3
    fit = olmo_reproduce.fit_task(synthetic_ladder(step1, step2), "hellaswag_val_5shot", n_bootstrap=8)
    assert fit.step1.ok and fit.step2.ok and not fit.warnings()
    target = fit.runs.set_index("run_id").loc["13B-5T"]
    assert target["predicted_bpb"] == pytest.approx(target["bpb"], rel=2e-3)
    assert target["predicted_acc"] == pytest.approx(target["acc"], abs=5e-3)
    assert target["acc_ci_low"] <= target["predicted_acc"] + 1e-9 <= target["acc_ci_high"] + 2e-9
    for name, value in step2.items():
        assert fit.step2.params[name] == pytest.approx(value, rel=0.1, abs=0.02)


def test_reproduce_cli_json(tmp_path, capsys):
    path = tmp_path / "ladder.parquet"
    assert main(["import", "olmo_ladder", "--out", str(path)]) == 0
    capsys.readouterr()
    assert main(["reproduce", "pythia"]) == 2
    assert "no fitting protocol" in capsys.readouterr().err


def test_ladder_errors_name_the_file(tmp_path):
    with pytest.raises(AnalysisError, match="not an olmo_ladder data directory"):
        olmo_ladder.load(tmp_path)
    (tmp_path / "configs").mkdir()
    (tmp_path / "ladder-runs").mkdir()
    (tmp_path / "configs" / "final.json").write_text('{"190M": {"paths": ["x/190M-1xC.csv"], "n": 1, "mode": "train"}}')
    (tmp_path / "ladder-runs" / "190M-1xC.csv").write_text("_step,throughput/total_tokens,eval/odd\n1,10,2\n")
    with pytest.raises(AnalysisError, match=r"190M-1xC.csv: unknown column 'eval/odd'"):
        olmo_ladder.load(tmp_path)
