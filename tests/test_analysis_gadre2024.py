"""The released 104-model results: import into the schema, the paper's protocol reproduced."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from analysis import gadre2024
from analysis.cli import main
from analysis.errors import AnalysisError
from analysis.reproduce import RECORD_KEYS, reproduce, run_protocol
from analysis.schema import COLUMNS, read_table


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return gadre2024.load()


@pytest.fixture(scope="module")
def records(table) -> list[dict]:
    return reproduce(table, n_bootstrap=100)


def record(records, dataset, target, quantity) -> dict:
    (found,) = [r for r in records if (r["dataset"], r["target"], r["quantity"]) == (dataset, target, quantity)]
    return found


def test_shipped_copy_keeps_licence_and_attribution():
    licence = (gadre2024.DATA_DIR / "LICENSE").read_text()
    assert "MIT License" in licence and "Copyright (c) 2024 mlfoundations" in licence
    assert "arXiv 2403.08540" in (gadre2024.DATA_DIR / "SOURCE.md").read_text()
    size = sum(p.stat().st_size for p in gadre2024.DATA_DIR.rglob("*") if p.is_file())
    assert size < 2.5e6


def test_import_gives_104_models_46_tasks_8_losses(table):
    assert list(table.columns) == list(COLUMNS)
    assert table["run_id"].nunique() == 104 and table["sweep"].eq("gadre2024").all()
    losses, tasks = table[table["kind"] == "val_loss"], table[table["kind"] == "task"]
    assert sorted(losses["name"].unique()) == sorted(gadre2024.VAL_SETS) and len(losses) == 104 * 8
    assert tasks["name"].nunique() == 46 and len(tasks) == 104 * 46
    assert {"arc_easy", "hellaswag", "mmlu", "squad"} <= set(tasks["name"])
    assert set(table["dataset"]) == {"c4_original", "rpj", "rw_original"}
    assert table.groupby("size")["run_id"].nunique().to_dict() == {
        "0.011B": 24, "0.079B": 24, "0.154B": 24, "0.411B": 23, "1.4B": 6, "6.9B": 3,
    }  # fmt: skip
    assert table["final"].all() and tasks["num_fewshot"].notna().all() and tasks["stderr"].notna().all()


def test_imported_values_are_the_released_ones(table):
    run = table[table["run_id"] == "rpj-open_lm_1b-32.0"].set_index("name")
    assert run.at["c4_val", "value"] == pytest.approx(2.502054, abs=1e-6)
    assert run.at["c4_val", "multiplier"] == 640 and run.at["c4_val", "params"] == 1_439_795_200
    assert run.at["c4_val", "tokens"] == pytest.approx(640 * 1_439_795_200, rel=1e-6)
    assert run.at["arc_easy", "num_fewshot"] == 10
    accuracy = run.loc[list(gadre2024.SUBSET17), "value"].astype(float)
    assert 1 - accuracy.mean() == pytest.approx(0.475215, abs=1e-6)  # the flat CSV's err_avg17
    seven_b = table[(table["run_id"] == "rpj-open_lm_7b-1.0") & (table["name"] == "arc_easy")]
    assert seven_b["value"].iloc[0] == pytest.approx(0.6809764504432678)


def test_the_17_task_subset_follows_its_rule(table):
    # tasks on which some 0.154B model is at least 10 points above chance
    chance = gadre2024.chance_levels()
    small = table[(table["size"] == "0.154B") & (table["kind"] == "task")]
    best = small.groupby("name")["value"].max()
    assert sorted(t for t, v in best.items() if v - chance[t] >= 0.10) == sorted(gadre2024.SUBSET17)


def test_import_command_writes_the_table(tmp_path, capsys):
    out = tmp_path / "gadre.parquet"
    assert main(["import", "gadre2024", str(gadre2024.DATA_DIR), "--out", str(out)]) == 0
    assert capsys.readouterr().out == f"imported 104 runs (5616 rows: 8 validation losses, 46 tasks) to {out}\n"
    assert read_table(out)["run_id"].nunique() == 104


@pytest.fixture
def broken(tmp_path):
    """A writable copy of the released layout, to damage."""
    copy = tmp_path / "gadre"
    shutil.copytree(gadre2024.DATA_DIR / "exp_data", copy / "exp_data")
    return copy / "exp_data"


def test_missing_evaluation_file_is_named(broken):
    victim = broken / "evals" / "evaluation_rpj-open_lm_7b-1.0_heavy.json"
    victim.unlink()
    with pytest.raises(AnalysisError, match=f"{victim}: missing"):
        gadre2024.load(broken.parent)


def test_missing_key_is_named(broken):
    path = broken / "models" / "rpj-open_lm_7b-1.0.json"
    record = json.loads(path.read_text())
    del record["hyperparameters"]["params_no_embed"]
    path.write_text(json.dumps(record))
    with pytest.raises(AnalysisError, match="missing key 'hyperparameters.params_no_embed'"):
        gadre2024.load(broken)


def test_import_errors_are_one_line_exit_2(tmp_path, capsys):
    code = main(["import", "gadre2024", str(tmp_path), "--out", str(tmp_path / "t.parquet")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "not a gadre2024 data directory" in err
    code = main(["import", "gadre2024", "--out", str(tmp_path / "t.txt")])
    assert code == 2 and "unknown results format '.txt'" in capsys.readouterr().err
    assert not (tmp_path / "t.txt").exists()


# --- the protocol -----------------------------------------------------------------------------


def test_reproduction_records_have_the_documented_keys(records):
    assert len(records) == 3 * 2 * 3
    assert all(tuple(r) == RECORD_KEYS for r in records)
    assert {r["target"] for r in records} == {"1.4B-M80", "1.4B-M640", "1.4B-M320", "6.9B-M20"}
    assert {r["quantity"] for r in records} == {"loss", "err17", "err46"}


@pytest.mark.parametrize(
    ("target", "quantity", "rel_error"),
    [  # the paper: 0.7 % loss error, 0.05-3.6 % error; verified by hand on RedPajama
        ("1.4B-M640", "loss", 0.0071),
        ("6.9B-M20", "loss", 0.0073),
        ("1.4B-M640", "err17", 0.0364),
        ("6.9B-M20", "err17", 0.00046),
    ],
)
def test_redpajama_reproduces_the_paper(records, target, quantity, rel_error):
    found = record(records, "rpj", target, quantity)
    assert found["rel_error"] == pytest.approx(rel_error, rel=0.02)
    assert found["ci_low"] < found["predicted"] < found["ci_high"]


def test_protocol_fits_5_and_6_runs_and_holds_out_2(table):
    result = run_protocol(table, n_bootstrap=0)
    for dataset, fits in result.fits.items():
        assert fits.loss.n_points == 5 and fits.error.n_points == 6, dataset
    heldout = result.heldout()
    assert sorted(heldout["size"]) == ["1.4B"] * 3 + ["6.9B"] * 3
    assert heldout["error_rel_error_err46"].notna().all()


def test_reproduce_command_json(capsys):
    assert main(["reproduce", "gadre2024", "--bootstrap", "20", "--json"]) == 0
    decoded = json.loads(capsys.readouterr().out)
    assert [tuple(r) for r in decoded] == [RECORD_KEYS] * 18
    rpj = record(decoded, "rpj", "1.4B-M640", "loss")
    assert rpj["rel_error"] == pytest.approx(0.0071, rel=0.02) and np.isfinite(rpj["ci_high"])


def test_reproduce_command_text_and_errors(tmp_path, capsys):
    assert main(["reproduce", "gadre2024", "--bootstrap", "0"]) == 0
    out = capsys.readouterr().out
    assert "rpj 1.4B-M640     loss" in out and "rel_error_%" in out
    code = main(["reproduce", "gadre2024", "--data", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and str(tmp_path) in err
    code = main(["reproduce", "kaplan2020"])
    assert code == 2 and "invalid choice: 'kaplan2020'" in capsys.readouterr().err


@pytest.mark.slow  # the whole report with 1000-resample bootstraps: `make test` runs it, `make test-fast` not
def test_report_on_the_released_data(tmp_path, table, capsys):
    path, out = tmp_path / "gadre.parquet", tmp_path / "report"
    table.to_parquet(path)
    argv = ["report", str(path), "--out", str(out), "--bootstrap", "20", "--classify-bootstrap", "20"]
    assert main(argv) == 0
    html = (out / "index.html").read_text()
    for section in ("Reproduction of the published protocol", "Task curves against c4_val", "Context sensitivity"):
        assert section in html
    assert (
        "1.4B-M640" in html and "bigbench_strange_stories" in html and "paloma_dolma_100_programing_languages" in html
    )
    assert sorted(p.name for p in out.iterdir()) == [
        "error_vs_loss.png", "index.html", "loss_vs_compute.png", "tasks",
    ]  # fmt: skip
    assert capsys.readouterr().out == f"report written to {out / 'index.html'}\n"
