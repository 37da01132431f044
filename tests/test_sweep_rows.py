"""Several processes appending rows to one rows.jsonl at once: every row arrives whole, exactly once."""

import multiprocessing

from testbed.results import append_rows, collect, read_rows

WRITERS, APPENDS, ROWS_PER_APPEND = 4, 40, 25
PAD = "x" * 400  # each append is ~15 KB, well past the size the kernel writes atomically on its own


def _writer(run_dir, writer: int) -> None:
    for i in range(APPENDS):
        append_rows(
            run_dir,
            [
                {
                    "run_id": f"w{writer}",
                    "kind": "train",
                    "name": f"{writer}-{i}-{j}-{PAD}",
                    "metric": "loss",
                    "step": i,
                    "value": float(j),
                }
                for j in range(ROWS_PER_APPEND)
            ],
        )


def test_concurrent_appends_keep_every_row_intact(tmp_path):
    ctx = multiprocessing.get_context("fork")  # the children only write files
    procs = [ctx.Process(target=_writer, args=(tmp_path, w)) for w in range(WRITERS)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
        assert proc.exitcode == 0
    rows = read_rows(tmp_path)  # json.loads of every line: a torn line would raise here
    names = [r["name"] for r in rows]
    assert len(names) == WRITERS * APPENDS * ROWS_PER_APPEND == len(set(names))
    assert all(r["name"].endswith(PAD) and r["value"] == float(r["name"].split("-")[2]) for r in rows)
    for w in range(WRITERS):  # each writer's appends stay whole and in order
        mine = [r for r in rows if r["run_id"] == f"w{w}"]
        assert [r["step"] for r in mine] == sorted(r["step"] for r in mine)
    assert len(collect(tmp_path)) == len(rows)
