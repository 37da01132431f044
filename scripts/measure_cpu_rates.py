"""Measured CPU rates for `testbed sweep plan`, read from finished run directories -> testbed/sweep/cpu_rates.py.

    python scripts/measure_cpu_rates.py RUNS_DIR... > testbed/sweep/cpu_rates.py

Per (ladder, size) of decoder runs trained on the CPU: the median training tokens per second of wall-clock
(meta.json's tokens_per_second: the whole run beside whatever else the machine ran, sweep workers included).
Per rung: the median eval seconds per (task, scored checkpoint), the time from the end of training
(meta.json finished) to stages/eval.json's time, for runs whose eval followed their training within an hour.
Finetuning: the median seconds per finetuning of one checkpoint for one (task, size, LR or seed), from
stages/finetune.json's time, its protocol's settings kept to scale it to other protocols.
"""

from __future__ import annotations

import datetime as dt
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def seconds_between(start: str, end: str) -> float:
    return (dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(start)).total_seconds()


def main(roots: list[str]) -> None:
    from testbed.translation.protocol import load_protocol

    rates: dict[str, list[float]] = defaultdict(list)
    params: dict[str, int] = {}
    evals: dict[str, list[float]] = defaultdict(list)
    finetunes: dict[str, list[float]] = defaultdict(list)
    protocols: dict[str, dict] = {}
    for meta_path in sorted(p for root in roots for p in Path(root).glob("*/*/meta.json")):
        run = meta_path.parent
        meta = json.loads(meta_path.read_text())
        config = yaml.safe_load((run / "config.yaml").read_text())
        model = config["model"]
        if meta.get("device") != "cpu" or model["arch"] != "decoder" or not meta.get("tokens_per_second"):
            continue
        rung = f"{model['ladder']}/{model['size']}"
        rates[rung].append(meta["tokens_per_second"])
        params[rung] = meta["plan"]["params"]
        rows = [json.loads(line) for line in (run / "rows.jsonl").read_text().splitlines() if line.strip()]
        record = run / "stages" / "eval.json"
        if record.exists():
            stage = json.loads(record.read_text())
            spent = seconds_between(meta["finished"], stage["time"])
            tasks = {r["name"] for r in rows if r["kind"] == "task"}
            steps = {r["step"] for r in rows if r["kind"] == "task"}
            if stage.get("state") == "DONE" and 0 < spent < 3600 and tasks:
                evals[rung].append(spent / (len(tasks) * len(steps)))
        record = run / "stages" / "finetune.json"
        if record.exists():
            stage = json.loads(record.read_text())
            spec = stage["finetune"]
            protocol = load_protocol(spec["protocol"])
            checkpoints = len(meta["plan"]["checkpoint_steps"]) if spec["steps"] == "all" else 1
            units = (
                len(spec["tasks"])
                * len(spec["sizes"])
                * (checkpoints + protocol.baseline)
                * (len(protocol.lrs) + len(protocol.seeds) - 1)
            )
            spent = seconds_between(meta["finished"], stage["time"])
            if stage.get("state") == "DONE" and 0 < spent < 6 * 3600:
                finetunes[rung].append(spent / units)
                protocols[rung] = {"steps": protocol.steps, "batch_size": protocol.batch_size,
                                   "max_len": protocol.max_len}  # fmt: skip
    command = "python scripts/measure_cpu_rates.py " + " ".join(roots)
    print(f'"""Measured on the project\'s 2-core CPU machine ({dt.date.today()}), by\n\n    {command}\n\n'
          'scripts/measure_cpu_rates.py says what each number is. testbed/sweep/plan.py reads them."""\n')  # fmt: skip
    print("# (ladder/size) -> median training tokens per second of wall-clock, how many runs measured it, and the")
    print("# rung's parameters N (an unmeasured rung takes the rate of the measured one nearest in N, scaled by 1/N)")
    print("TRAIN_TOKENS_PER_SECOND: dict[str, tuple[float, int, int]] = {")
    for rung, values in sorted(rates.items()):
        print(f'    "{rung}": ({statistics.median(values):.0f}, {len(values)}, {params[rung]}),')
    print("}")
    print("# (ladder/size) -> median eval seconds per (task, scored checkpoint), and how many runs measured it")
    print("EVAL_SECONDS_PER_TASK_CHECKPOINT: dict[str, tuple[float, int]] = {")
    for rung, values in sorted(evals.items()):
        print(f'    "{rung}": ({statistics.median(values):.3g}, {len(values)}),')
    print("}")
    print("# (ladder/size) -> median seconds per finetuning (one checkpoint, task, size and LR or seed), the runs")
    print("# that measured it, and the protocol's steps x batch_size x max_len it ran")
    print("FINETUNE_SECONDS: dict[str, tuple[float, int, int]] = {")
    for rung, values in sorted(finetunes.items()):
        p = protocols[rung]
        work = p["steps"] * p["batch_size"] * p["max_len"]
        print(f'    "{rung}": ({statistics.median(values):.3g}, {len(values)}, {work}),')
    print("}")


if __name__ == "__main__":
    main(sys.argv[1:])
