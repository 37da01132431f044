"""Time the analysis of the released 104-model results end to end (issue 7, item 8).

Runs, in one process, the four commands a user would type, on the shipped data:
  testbed analyze import gadre2024 --out OUT/gadre2024.parquet
  testbed analyze reproduce gadre2024 --data OUT/gadre2024.parquet --json   (1000 resamples)
  testbed analyze classify OUT/gadre2024.parquet --x c4_val --json          (1000 resamples per task)
  testbed analyze report OUT/gadre2024.parquet --out OUT/report --bootstrap 1000
and prints a Markdown table of wall-clock and CPU seconds per step with the machine it ran on.
Usage: python scripts/bench_analysis.py [--out DIR] [--repeat N]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.cli import main  # noqa: E402  (analysis first: it sets the BLAS thread default)

BUDGET_S = 30.0


def steps(out: Path) -> list[tuple[str, list[str]]]:
    table = str(out / "gadre2024.parquet")
    return [
        ("import", ["import", "gadre2024", "--out", table]),
        ("reproduce", ["reproduce", "gadre2024", "--data", table, "--bootstrap", "1000", "--json"]),
        ("classify", ["classify", table, "--x", "c4_val", "--bootstrap", "1000", "--json"]),
        ("report", ["report", table, "--out", str(out / "report"), "--bootstrap", "1000"]),
    ]


def run_once(out: Path) -> list[tuple[str, float, float]]:
    timings = []
    for name, argv in steps(out):
        wall, cpu = time.perf_counter(), time.process_time()
        with contextlib.redirect_stdout(io.StringIO()):
            code = main(argv)
        if code != 0:
            raise SystemExit(f"step {name} failed with exit code {code}")
        timings.append((name, time.perf_counter() - wall, time.process_time() - cpu))
    return timings


def machine() -> str:
    load = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, load average {load} at start"


def main_() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="working directory (default: a temporary one)")
    parser.add_argument("--repeat", type=int, default=1, help="runs; the table shows each")
    args = parser.parse_args()
    header = machine()
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(args.out or scratch)
        runs = [run_once(out) for _ in range(args.repeat)]
    print(f"machine: {header}\n")
    print("| run | " + " | ".join(name for name, _, _ in runs[0]) + " | total wall s | total CPU s |")
    print("|---" * (len(runs[0]) + 3) + "|")
    for i, timings in enumerate(runs, 1):
        cells = " | ".join(f"{wall:.2f} ({cpu:.2f} CPU)" for _, wall, cpu in timings)
        total_wall, total_cpu = sum(t[1] for t in timings), sum(t[2] for t in timings)
        print(f"| {i} | {cells} | {total_wall:.2f} | {total_cpu:.2f} |")
    best = min(sum(t[1] for t in timings) for timings in runs)
    print(f"\nbest total {best:.2f} s, budget {BUDGET_S:.0f} s: {'within' if best <= BUDGET_S else 'OVER'}")


if __name__ == "__main__":
    main_()
