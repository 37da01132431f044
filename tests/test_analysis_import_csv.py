"""analyze import csv: any table of runs through a column mapping."""

import pandas as pd
import pytest

from analysis.cli import main
from analysis.errors import AnalysisError
from analysis.import_csv import load, parse_pairs
from analysis.schema import COLUMNS, read_table

WIDE = "model,n,toks,step,c4,hs\na,1000000,2000000,10,4.0,0.3\na,1000000,20000000,100,3.5,0.35\nb,5e6,1e8,100,3.0,0.4\n"
LONG = "run,n,m,what,task,score\nr1,100,20,val_loss,c4,3.1\nr1,100,20,task,piqa,0.6\nr2,200,20,val_loss,c4,2.9\n"


@pytest.fixture
def wide(tmp_path):
    path = tmp_path / "runs.csv"
    path.write_text(WIDE)
    return path


def test_wide_checkpoints_keep_steps_and_mark_the_last(wide):
    table = load(wide, parse_pairs("run=model,params=n,tokens=toks,step=step,loss:c4=c4,task:hs=hs", "--map"),
                 {"dataset": "web"})  # fmt: skip
    assert list(table.columns) == list(COLUMNS) and len(table) == 6
    losses = table[table["kind"] == "val_loss"].set_index(["run_id", "step"])
    assert losses.at[("a", 10), "value"] == 4.0 and not losses.at[("a", 10), "final"]
    assert losses.at[("a", 100), "final"] and losses.at[("b", 100), "multiplier"] == 20
    assert losses.at[("b", 100), "flops"] == 6 * 5e6 * 1e8 and (table["dataset"] == "web").all()
    assert set(table.loc[table["kind"] == "task", "metric"]) == {"acc"} and (table["sweep"] == "runs").all()


def test_long_rows_one_per_number(tmp_path):
    path = tmp_path / "long.csv"
    path.write_text(LONG)
    table = load(path, parse_pairs("run=run,params=n,multiplier=m,kind=what,name=task,value=score", "--map"))
    assert len(table) == 3 and table["final"].all()
    assert table.set_index("name").at["piqa", "metric"] == "acc" and table["tokens"].tolist() == [2000, 2000, 4000]


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ("run=model,params=nope,tokens=toks,loss:c4=c4", r"--map params=nope: no column 'nope'"),
        ("run=model,tokens=toks,loss:c4=c4", "missing key 'params'"),
        ("run=model,params=n,loss:c4=c4", "missing key 'tokens'"),
        ("run=model,params=n,tokens=toks,size=n,oops=c4", "unknown key 'oops'"),
        ("run=model,params=n,tokens=toks", "no numbers mapped"),
        ("run=model,params=n,tokens=toks,loss:c4=c4", r"run a has two val_loss values for 'c4'"),
        ("run=model,params=model,tokens=toks,loss:c4=c4", r"column 'model' has non-numeric value 'a'"),
        ("run=model,params=n,tokens=toks,loss:c4=c4,name=hs", "mixed"),
        ("run=model,params", "is not KEY=VALUE"),
    ],
)
def test_mapping_errors_are_one_line(wide, mapping, message):
    with pytest.raises(AnalysisError, match=message) as caught:
        load(wide, parse_pairs(mapping, "--map"))
    assert "\n" not in str(caught.value)


def test_cli_writes_a_results_table(wide, tmp_path, capsys):
    out = tmp_path / "table.parquet"
    args = ["import", "csv", str(wide), "--map", "run=model,params=n,tokens=toks,step=step,loss:c4=c4", "--out"]
    assert main([*args, str(out)]) == 0
    assert read_table(out)["run_id"].nunique() == 2 and "imported 2 runs" in capsys.readouterr().out
    assert main(["import", "csv", str(wide), "--out", str(out)]) == 2
    assert "needs FILE and --map" in capsys.readouterr().err
    assert isinstance(read_table(out), pd.DataFrame)
