"""rows.jsonl robustness: bad lines name their file:line (or are skipped on request), a rewrite under
concurrent appenders loses nothing, and an append never glues onto a torn last line."""

import json
import multiprocessing

import pytest

from testbed.errors import TestbedError
from testbed.results import (
    ROWS_FILE,
    SKIP_BAD_ROWS_ENV,
    append_rows,
    collect,
    drop_rows_after,
    read_rows,
)


def _row(name: str, kind: str = "train", step: int = 1) -> dict:
    return {"run_id": "r", "kind": kind, "name": name, "metric": "loss", "step": step, "value": 1.0}


def _write(run_dir, lines: list[str]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / ROWS_FILE).write_text("".join(line + "\n" for line in lines), encoding="utf-8")


BAD_LINES = ['{"run_id": "r", garbage', '["a", "JSON", "list"]']


def _with_bad(run_dir, bad: str) -> None:
    """Line 3 is bad, line 2 is blank (it still counts as a line)."""
    _write(run_dir, [json.dumps(_row("a")), "", bad, json.dumps(_row("b"))])


@pytest.mark.parametrize("bad", BAD_LINES)
def test_bad_line_raises_naming_file_and_line(tmp_path, bad, monkeypatch):
    monkeypatch.delenv(SKIP_BAD_ROWS_ENV, raising=False)
    _with_bad(tmp_path / "run", bad)
    with pytest.raises(TestbedError, match=rf"{ROWS_FILE}:3: not a JSON object .*--skip-bad-rows") as info:
        read_rows(tmp_path / "run")
    assert str(tmp_path / "run" / ROWS_FILE) + ":3:" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(TestbedError, match=rf"{ROWS_FILE}:3:"):
        collect(tmp_path)


@pytest.mark.parametrize("bad", BAD_LINES)
def test_bad_line_skipped_on_request(tmp_path, bad, capsys, monkeypatch):
    monkeypatch.delenv(SKIP_BAD_ROWS_ENV, raising=False)
    _with_bad(tmp_path / "run", bad)
    _write(tmp_path / "other", [json.dumps(_row("c"))])
    assert [r["name"] for r in read_rows(tmp_path / "run", skip_bad=True)] == ["a", "b"]
    warning = capsys.readouterr().err
    assert warning.count("\n") == 1 and f"{tmp_path / 'run' / ROWS_FILE}:3:" in warning
    assert sorted(collect(tmp_path, skip_bad=True)["name"]) == ["a", "b", "c"]
    assert f"{ROWS_FILE}:3:" in capsys.readouterr().err


def test_skip_bad_from_environment(tmp_path, capsys, monkeypatch):
    _with_bad(tmp_path, BAD_LINES[0])
    monkeypatch.setenv(SKIP_BAD_ROWS_ENV, "1")
    assert [r["name"] for r in read_rows(tmp_path)] == ["a", "b"]
    assert sorted(collect(tmp_path)["name"]) == ["a", "b"]
    assert f"{ROWS_FILE}:3:" in capsys.readouterr().err
    with pytest.raises(TestbedError, match=rf"{ROWS_FILE}:3:"):  # an explicit False wins over the environment
        read_rows(tmp_path, skip_bad=False)
    monkeypatch.setenv(SKIP_BAD_ROWS_ENV, "0")
    with pytest.raises(TestbedError, match=rf"{ROWS_FILE}:3:"):
        read_rows(tmp_path)


def test_drop_rows_after_with_a_bad_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(SKIP_BAD_ROWS_ENV, raising=False)
    good = [_row("keep-train", "train", 9), _row("keep-early", "val_loss", 5), _row("drop", "val_loss", 9)]
    lines = [json.dumps(good[0]), BAD_LINES[0], json.dumps(good[1]), BAD_LINES[1], json.dumps(good[2])]
    _write(tmp_path, lines)
    before = (tmp_path / ROWS_FILE).read_bytes()
    with pytest.raises(TestbedError, match=rf"{ROWS_FILE}:2: not a JSON object"):
        drop_rows_after(tmp_path, 5, kinds=("val_loss",))
    assert (tmp_path / ROWS_FILE).read_bytes() == before  # untouched

    drop_rows_after(tmp_path, 5, kinds=("val_loss",), skip_bad=True)
    assert [r["name"] for r in read_rows(tmp_path)] == ["keep-train", "keep-early"]  # no bad line left
    assert (tmp_path / (ROWS_FILE + ".bad")).read_text() == BAD_LINES[0] + "\n" + BAD_LINES[1] + "\n"
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and ":2:" in err[0] and ":4:" in err[1] and all(".bad" in line for line in err)

    drop_rows_after(tmp_path, 5, kinds=("val_loss",), skip_bad=True)  # nothing more to move or drop
    assert (tmp_path / (ROWS_FILE + ".bad")).read_text().count("\n") == 2


def test_append_after_a_torn_last_line(tmp_path, capsys):
    torn = '{"run_id": "a"'
    (tmp_path / ROWS_FILE).write_text(json.dumps(_row("first")) + "\n" + torn, encoding="utf-8")
    append_rows(tmp_path, [_row("second")])
    assert (tmp_path / ROWS_FILE).read_text().splitlines()[1] == torn  # still a line of its own
    with pytest.raises(TestbedError, match=rf"{ROWS_FILE}:2:"):
        read_rows(tmp_path, skip_bad=False)
    assert read_rows(tmp_path, skip_bad=True) == [_row("first"), _row("second")]
    assert f"{ROWS_FILE}:2:" in capsys.readouterr().err


WRITERS, APPENDS, ROWS_PER_APPEND = 3, 150, 4


def _appender(run_dir, writer: int) -> None:
    for i in range(APPENDS):
        append_rows(run_dir, [_row(f"{writer}-{i}-{j}") for j in range(ROWS_PER_APPEND)])


def _rewriter(run_dir, stop, rewrites) -> None:
    """Rewrite rows.jsonl again and again: each time a val_loss row of its own is there to drop."""
    while not stop.is_set():
        append_rows(run_dir, [_row("mine", "val_loss", 10)])
        drop_rows_after(run_dir, 0, kinds=("val_loss",))
        rewrites.value += 1


def test_rewrites_lose_no_concurrent_append(tmp_path):
    ctx = multiprocessing.get_context("fork")  # the children only write files
    stop, rewrites = ctx.Event(), ctx.Value("i", 0)
    rewriter = ctx.Process(target=_rewriter, args=(tmp_path, stop, rewrites))
    rewriter.start()
    appenders = [ctx.Process(target=_appender, args=(tmp_path, w)) for w in range(WRITERS)]
    for proc in appenders:
        proc.start()
    for proc in appenders:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    stop.set()
    rewriter.join(timeout=60)
    assert rewriter.exitcode == 0 and rewrites.value > 10  # the rewrites really overlapped the appends
    names = [r["name"] for r in read_rows(tmp_path)]
    expected = {f"{w}-{i}-{j}" for w in range(WRITERS) for i in range(APPENDS) for j in range(ROWS_PER_APPEND)}
    assert len(names) == len(set(names)) and set(names) == expected, (
        f"{len(expected - set(names))} of {len(expected)} rows lost over {rewrites.value} rewrites"
    )
