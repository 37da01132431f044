"""The report and the `testbed analyze` command line: outputs, exit codes, one-line errors."""

import contextlib
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import analysis.report
from analysis.cli import main
from analysis.errors import AnalysisError
from analysis.extrapolate import Split
from analysis.report import write_report
from analysis.schema import read_table
from analysis.synthetic import law_table

LOSS = {
    "synth_a": {"alpha": 150.0, "beta": 300.0, "e": -0.25, "E": 1.7},
    "synth_b": {"alpha": 120.0, "beta": 350.0, "e": -0.27, "E": 1.9},
}
ERROR = {"epsilon": 0.75, "k": 3.0, "gamma": 0.6}
SMALL = ("0.011B", "0.079B", "0.154B", "0.411B")


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("results") / "results.parquet"
    law_table(LOSS, ERROR, noise=0.001).to_parquet(path)
    return path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def report(results, tmp_path_factory) -> tuple[Path, str]:
    """The index of a report written by `report RESULTS --out DIR`, and what the command printed."""
    out = tmp_path_factory.mktemp("report") / "report"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["report", str(results), "--out", str(out), "--classify-bootstrap", "50"]) == 0
    return out / "index.html", printed.getvalue()


def test_report_command_prints_where(report):
    index, printed = report
    assert printed == f"report written to {index}\n"


def test_report_writes_html_and_figures(report):
    index, _ = report
    html = index.read_text()
    images = re.findall(r'<img src="([^"]+)"', html)
    assert images == ["loss_vs_compute.png", "error_vs_loss.png"]
    for name in images:
        assert (index.parent / name).read_bytes()[:4] == b"\x89PNG"
    assert re.findall(r'<a href="(tasks/[^"]+)"', html) == ["tasks/task_a.html", "tasks/task_b.html"]
    assert '<img src="task_a.png"' in (index.parent / "tasks" / "task_a.html").read_text()
    assert "synth_b-1.4B-m640" in html and "L(C,M) = E + (a M^eta + b M^-eta) C^-eta" in html
    assert "Task curves against own" in html and "2 tasks: predictable 2" in html
    assert sorted(p.name for p in index.parent.parent.iterdir()) == ["report"]  # no staging left behind


def test_report_replaces_a_report_but_not_other_directories(results, tmp_path):
    out = tmp_path / "report"
    out.mkdir()
    (out / "index.html").write_text("old report")
    (out / "stale.png").write_bytes(b"old")
    fit_only_synth_a = Split(fit=tuple(f"synth_a-{size}-m{m}" for size in SMALL for m in (20, 320)))
    write_report(read_table(results), out, task="task_a", split=fit_only_synth_a)
    html = (out / "index.html").read_text()
    assert not (out / "stale.png").exists() and "task_a (1 - acc)" in html
    assert "too_few_points" in html  # synth_b has no fit runs: reported, not raised
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep")
    with pytest.raises(AnalysisError, match="not a report directory"):
        write_report(read_table(results), precious)
    assert (precious / "notes.txt").read_text() == "keep"


def test_failed_report_leaves_nothing(results, tmp_path, monkeypatch):
    def broken(result, path):
        path.write_bytes(b"half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(analysis.report, "plot_loss_vs_compute", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        write_report(read_table(results), tmp_path / "report")
    assert list(tmp_path.iterdir()) == []


def test_fit_prints_both_parametrisations_and_heldout_errors(results, capsys):
    code, out, err = run(capsys, "fit", results, "--law", "overtrain")
    assert code == 0 and err == ""
    assert "synth_a: overtrain fit on 32 runs" in out
    assert "L(C,M) = E + (a M^eta + b M^-eta) C^-eta with E=1.7" in out
    assert "synth_a-1.4B-m640" in out and "rel_error" in out


def test_fit_json_is_the_only_stdout(results, capsys):
    code, out, _ = run(capsys, "fit", results, "--json", "--bootstrap", "20", "--heldout", "synth_a-1.4B-m640")
    assert code == 0
    decoded = json.loads(out)
    assert decoded["law"] == "overtrain" and decoded["x"] == "own"
    heldout = [r for r in decoded["runs"] if r["role"] == "heldout"]
    assert [r["run_id"] for r in heldout] == ["synth_a-1.4B-m640"]
    assert heldout[0]["rel_error"] < 0.01 and heldout[0]["ci_low"] < heldout[0]["ci_high"]
    assert decoded["datasets"]["synth_a"]["loss"]["derived"]["eta"] == pytest.approx(0.125, rel=0.05)
    assert decoded["datasets"]["synth_a"]["bootstrap"]["n_resamples"] == 20


def test_split_options(results, capsys):
    error_fit = ["synth_a-0.011B-m20", "synth_a-0.079B-m20", "synth_a-0.154B-m20", "synth_a-0.011B-m5"]
    code, out, _ = run(capsys, "fit", results, "--json", "--max-fit-params", "2e8", "--error-fit-runs", *error_fit)
    decoded = json.loads(out)
    assert {r["size"] for r in decoded["runs"] if r["role"] == "heldout"} == {"0.411B", "1.4B"}
    assert decoded["datasets"]["synth_a"]["error"]["n_points"] == 4
    assert decoded["datasets"]["synth_b"]["error"]["status"] == "too_few_points"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["fit", "{missing}"], "{missing}: no such results file"),
        (["fit", "{results}", "--x", "c4"], "{results}: no final val_loss rows named 'c4'"),
        (["fit", "{results}", "--law", "nope"], "unknown law 'nope'"),
        (["fit", "{results}", "--law", "sigmoid"], "law sigmoid takes L, not run sizes"),
        (
            ["fit", "{results}", "--task", "hellaswag"],
            "{results}: no final task rows with metric 'acc' for hellaswag",
        ),
        (["fit", "{results}", "--heldout", "nope"], "{results}: run id(s) nope not among"),
        (["fit", "{results}", "--bootstrap", "many"], "argument --bootstrap: invalid int value"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["report", "{results}"], "the following arguments are required: --out"),
    ],
)
def test_errors_are_one_line_and_exit_code_2(results, tmp_path, capsys, argv, message):
    paths = {"results": results, "missing": tmp_path / "missing.parquet"}
    code, out, err = run(capsys, *(a.format(**paths) for a in argv))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert message.format(**paths) in err


def test_unreadable_table_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "results.txt"
    bad.write_text("x")
    code, _, err = run(capsys, "fit", bad)
    assert code == 2 and "unknown results format '.txt'" in err and err.count("\n") == 1


def test_help_exits_zero(capsys):
    assert main(["fit", "--help"]) == 0
    assert "--heldout" in capsys.readouterr().out


def test_analysis_imports_neither_torch_nor_testbed():
    code = (
        "import sys, analysis.cli, analysis.report, analysis.synthetic; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'testbed')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])
