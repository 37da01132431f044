"""The GPU check of issue 18, for a lent GPU in at most 8 minutes (run it through scripts/gpu_check.sh):

1. every rung compiled, alone, at the ladder's micro-batch and twice it (the faster is the rung's choice),
   and the small rungs again with CUDA graphs (torch.compile mode reduce-overhead: their shapes are static);
2. the small rungs packed k to the GPU, k processes side by side (gpu.runs_per_device=auto's k): their MFU
   summed, against the same rung alone;
3. r6 per SDPA backend (auto, flash, cudnn, efficient), at its own heads and at head_dim 128;
4. tests/test_gpu.py.

Each measurement is a child process (`gpu_check.py measure ...`, one JSON line): random token ids, the loss
as testbed computes it (batch_loss), bf16 autocast, fused AdamW, warm-up steps untimed, then steps for a fixed
window of seconds; packed processes start their windows together (a barrier on files), so their rates add
up. Each part has its own time budget and what does not fit is listed as not run. The report,
`benchmarks/gpu/<device>_<date>.md` (under $OUT when set), is rewritten after each part, with the command,
settings, machine, and MEASURED_MFU lines for testbed/devices.py. `--dry-run`: the same plumbing on the CPU,
on the micro ladder, in seconds (its numbers mean nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def measure(args) -> list[dict]:
    """One process: the rung's training step at each micro-batch, timed over a window of seconds."""
    import torch

    from testbed.models import attention_backend, batch_loss
    from testbed.rung_bench import rung_model
    from testbed.throughput import peak_flops

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    _, plan, model, per_token = rung_model(args.ladder, args.size, args.heads, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=device.type == "cuda")
    peak = peak_flops(device)
    results = []
    for micro in args.micro_batch:
        torch._dynamo.reset()
        forward = torch.compile(model, mode=args.mode) if args.compile else model
        ids = torch.randint(1, plan.vocab_size, (micro, plan.seq_len + 1), device=device)
        batch = {"input_ids": ids[:, :-1], "labels": ids[:, 1:]}

        def step(forward=forward, batch=batch):
            if args.mode == "reduce-overhead":
                torch.compiler.cudagraph_mark_step_begin()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                _, total = batch_loss(forward, batch)
            (total / batch["labels"].numel()).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        def sync():
            if device.type == "cuda":
                torch.cuda.synchronize()

        row = {"size": args.size, "micro_batch": micro, "heads": model.config.num_attention_heads, "sdpa": args.sdpa}
        try:
            with attention_backend(args.sdpa):
                for _ in range(args.warmup):
                    step()
                sync()
                if args.barrier:
                    wait_together(Path(args.barrier), args.index, args.count)
                steps, began = 0, time.perf_counter()
                while time.perf_counter() - began < args.seconds:
                    step()
                    steps += 1
                    if steps % 4 == 0:
                        sync()
                sync()
                wall = time.perf_counter() - began
            rate = steps * micro * plan.seq_len / wall
            row.update(tokens_per_second=rate, mfu=rate * per_token / peak if peak else None, steps=steps)
        except Exception as err:  # out of memory, a backend that does not take the shape: a row that says so
            row["error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:120] if str(err) else ''}"
            if device.type == "cuda":
                torch.cuda.empty_cache()
        results.append(row)
    return results


def wait_together(barrier: Path, index: int, count: int, timeout: float = 300) -> None:
    """Packed processes: each says it is warm, then all start timing when the last one is."""
    (barrier / f"ready{index}").touch()
    deadline = time.monotonic() + timeout
    while len(list(barrier.glob("ready*"))) < count and time.monotonic() < deadline:
        time.sleep(0.01)


def child(size: str, opts: dict, *, k: int = 1, timeout: float) -> list[dict]:
    """`k` measuring processes of one rung side by side on the device; their rows (a packed group's as one
    row: rates summed) or an error row."""
    with tempfile.TemporaryDirectory() as barrier:
        command = [sys.executable, __file__, "measure", "--size", size]
        for key, value in opts.items():
            if value is True:
                command.append(f"--{key}")
            elif value not in (None, False):
                command += [f"--{key}", *(map(str, value) if isinstance(value, list) else [str(value)])]
        if k > 1:
            command += ["--barrier", barrier, "--count", str(k)]
        procs = [
            subprocess.Popen([*command, "--index", str(i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for i in range(k)
        ]
        deadline, outs = time.monotonic() + timeout, []
        for proc in procs:
            try:
                out, err = proc.communicate(timeout=max(deadline - time.monotonic(), 1))
            except subprocess.TimeoutExpired:
                for other in procs:
                    other.kill()
                return [{"size": size, "error": f"timed out after {timeout:.0f} s"}]
            if proc.returncode:
                return [{"size": size, "error": f"exit {proc.returncode}: {err.strip().splitlines()[-1:]}"}]
            outs.append(json.loads(out.strip().splitlines()[-1]))
    if k == 1:
        return outs[0]
    rows = [rows[0] for rows in outs]
    if any("error" in row for row in rows):
        return [next(row for row in rows if "error" in row)]
    total = sum(row["tokens_per_second"] for row in rows)
    mfu = sum(row["mfu"] for row in rows) if all(row["mfu"] is not None for row in rows) else None
    return [dict(rows[0], tokens_per_second=total, mfu=mfu, packed=k)]


class Report:
    """The markdown report, rewritten after every part."""

    def __init__(self, path: Path, header: str):
        self.path, self.header, self.sections = path, header, []
        path.parent.mkdir(parents=True, exist_ok=True)

    def add(self, title: str, lines: list[str]) -> None:
        self.sections.append(f"## {title}\n\n" + "\n".join(lines) + "\n")
        self.path.write_text(self.header + "\n" + "\n".join(self.sections))
        print(f"gpu_check: {title}: written to {self.path}", file=sys.stderr, flush=True)


def fmt(row: dict) -> str:
    if "error" in row:
        return f"- ({row['error']}) -"
    mfu = f"{row['mfu']:.1%}" if row.get("mfu") is not None else "n/a"
    return f"{row['tokens_per_second']:,.0f} | {mfu}"


def machine(torch) -> str:
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO)
    return (
        f"{gpu}; {os.cpu_count()} CPU cores ({platform.machine()}); torch {torch.__version__}; "
        f"git {sha.stdout.strip() or 'unknown'}"
    )


def check(args) -> Path:
    import torch

    from testbed.config import GpuConfig
    from testbed.devices import by_name
    from testbed.ladder import load_ladder, plan_run
    from testbed.resolve import load_run_config
    from testbed.sweep.packing import runs_per_device

    cuda = torch.cuda.is_available() and not args.dry_run
    known = by_name(torch.cuda.get_device_name()) if cuda else None
    device = known.key if known else ("cpu" if not cuda else "gpu")
    if args.dry_run:  # the CPU table's peak, so that the MFU plumbing runs too
        os.environ.setdefault("TESTBED_PEAK_FLOPS", "5e10")
        ladder, sizes, small, big, backends = "micro", ["s1", "s2"], ["s1"], "s2", ["auto", "math"]
        seconds, warmup, compile_ = 0.5, 1, False
    else:
        ladder, backends = args.ladder, ["auto", "flash", "cudnn", "efficient"]
        sizes = list(load_ladder(ladder).sizes)
        small, big = sizes[:-2], sizes[-1]
        seconds, warmup, compile_ = args.seconds, 3, True
    out = Path(os.environ.get("OUT") or REPO) / "benchmarks" / "gpu" / f"{device}_{time.strftime('%Y-%m-%d')}.md"
    settings = (
        f"ladder {ladder}; random ids, bf16 autocast on CUDA (fp32 on the CPU), fused AdamW, batch_loss; "
        f"{warmup} warm-up steps, then a {seconds:g} s timed window per measurement; torch.compile "
        f"{'on' if compile_ else 'off'}; budgets (s): alone {args.budget[0]:.0f}, packed "
        f"{args.budget[1]:.0f}, attention {args.budget[2]:.0f}, tests {args.budget[3]:.0f}"
    )
    report = Report(
        out,
        f"# GPU check ({device}, {time.strftime('%Y-%m-%d')}){' — DRY RUN on the CPU' if args.dry_run else ''}\n\n"
        f"Command: `bash scripts/gpu_check.sh {' '.join(sys.argv[1:])}`\n\nMachine: {machine(torch)}\n\n"
        f"Settings: {settings}\n",
    )
    base = {"ladder": ladder, "warmup": warmup, "seconds": seconds, "compile": compile_}
    measured: list[str] = []  # MEASURED_MFU lines for testbed/devices.py

    def budgeted(part: int, items: list, run) -> list[str]:
        """Each item's table line while the part's budget lasts, then `not run (time)`."""
        deadline, lines = time.monotonic() + args.budget[part], []
        for item in items:
            left = deadline - time.monotonic()
            name = " ".join(map(str, item)) if isinstance(item, tuple) else item
            lines += run(item, left) if left > 5 else [f"| {name} | not run (time) |"]
        return lines

    # 1. every rung alone, compiled, at two micro-batches; the small ones also with CUDA graphs
    best: dict[str, dict] = {}

    def alone(size: str, left: float) -> list[str]:
        micro = plan_run(load_run_config(None, [f"model.ladder={ladder}", f"model.size={size}"])).micro_batch(1)
        lines = []
        modes = ["default", "reduce-overhead"] if cuda and size in small else ["default"]
        for mode in modes:
            rows = child(size, {**base, "micro-batch": [micro, 2 * micro], "mode": mode}, timeout=left)
            for row in rows:
                lines.append(f"| {size} | {mode} | {row.get('micro_batch', '-')} | {fmt(row)} |")
                if row.get("mfu") is not None and row["mfu"] > best.get(size, {}).get("mfu", -1):
                    best[size] = dict(row, mode=mode)
        if size in best:
            measured.append(
                f'    ("{device}", "decoder", "{ladder}", "{size}", {compile_}, 1): {best[size]["mfu"]:.3f},'
            )
        return lines

    lines = budgeted(0, sizes, alone)
    picks = [f"- {s}: micro-batch {r['micro_batch']}, mode {r['mode']}" for s, r in best.items()]
    report.add(
        "1. Each rung alone, compiled (the faster micro-batch and mode is the rung's choice)",
        ["| size | compile mode | micro-batch | tokens/s | MFU |", "|---|---|---|---|---|", *lines, "", *picks],
    )

    # 2. small rungs packed k to the device (auto's k), against the same rung alone
    def packed(size: str, left: float) -> list[str]:
        config = load_run_config(None, [f"model.ladder={ladder}", f"model.size={size}", "train.compile=true"])
        k = args.pack or runs_per_device(config, GpuConfig(), known.key if known else "h100")
        k = max(k, 2)
        micro = [best.get(size, {}).get("micro_batch") or plan_run(config).micro_batch(1)]
        row = child(size, {**base, "micro-batch": micro}, k=k, timeout=left)[0]
        solo = best.get(size, {}).get("mfu")
        gain = f"{row['mfu'] / solo:.2f}x" if row.get("mfu") and solo else "n/a"
        if row.get("mfu") is not None:
            measured.append(f'    ("{device}", "decoder", "{ladder}", "{size}", {compile_}, {k}): {row["mfu"]:.3f},')
        return [f"| {size} | {k} | {micro[0]} | {fmt(row)} | {gain} |"]

    report.add(
        "2. Small rungs packed onto the one device (k processes; tokens/s and MFU summed)",
        [
            "| size | k | micro-batch | tokens/s | MFU | vs alone |",
            "|---|---|---|---|---|---|",
            *budgeted(1, small, packed),
        ],
    )

    # 3. the largest rung per SDPA backend, at its heads and at head_dim 128
    config = load_run_config(None, [f"model.ladder={ladder}", f"model.size={big}"])
    rung = load_ladder(ladder).sizes[big]
    heads = [rung.heads, max(rung.d_model // (8 if args.dry_run else 128), 1)]
    micro = [best.get(big, {}).get("micro_batch") or plan_run(config).micro_batch(1)]

    def attention(item: tuple[str, int], left: float) -> list[str]:
        backend, h = item
        row = child(big, {**base, "micro-batch": micro, "sdpa": backend, "heads": h}, timeout=left)[0]
        return [f"| {big} | {backend} | {h} | {rung.d_model // h} | {fmt(row)} |"]

    items = [(b, h) for h in dict.fromkeys(heads) for b in backends]
    report.add(
        f"3. {big} per attention backend (micro-batch {micro[0]})",
        [
            "| size | SDPA | heads | head_dim | tokens/s | MFU |",
            "|---|---|---|---|---|---|",
            *budgeted(2, items, attention),
        ],
    )

    # 4. the GPU tests (they skip without CUDA)
    try:
        tests = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_gpu.py"],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=args.budget[3] + (30 if args.dry_run else 0),
        )
        outcome = (tests.stdout.strip().splitlines() or ["no output"])[-1]
    except subprocess.TimeoutExpired:
        outcome = "timed out"
    report.add("4. tests/test_gpu.py", [f"`pytest tests/test_gpu.py`: {outcome}"])
    report.add("MEASURED_MFU lines (testbed/devices.py; decoder, packed k last)", ["```python", *measured, "```"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    one = sub.add_parser("measure", help="one measuring process (used by the check)")
    one.add_argument("--ladder", default="reduced")
    one.add_argument("--size", required=True)
    one.add_argument("--micro-batch", type=int, nargs="+", default=[32])
    one.add_argument("--warmup", type=int, default=3)
    one.add_argument("--seconds", type=float, default=8.0)
    one.add_argument("--compile", action="store_true")
    one.add_argument("--mode", default="default", choices=["default", "reduce-overhead", "max-autotune"])
    one.add_argument("--sdpa", default="auto", choices=["auto", "flash", "efficient", "cudnn", "math"])
    one.add_argument("--heads", type=int, help="attention heads instead of the rung's (head_dim = d_model / heads)")
    one.add_argument("--barrier", help="packed: a directory to start the timed window together in")
    one.add_argument("--index", type=int, default=0)
    one.add_argument("--count", type=int, default=1)
    parser.add_argument("--dry-run", action="store_true", help="the plumbing on the CPU in seconds")
    parser.add_argument("--ladder", default="reduced")
    parser.add_argument("--seconds", type=float, default=6.0, help="timed window per measurement")
    parser.add_argument("--pack", type=int, help="runs packed per device (default: gpu.runs_per_device=auto's)")
    parser.add_argument(
        "--budget",
        type=float,
        nargs=4,
        default=[160, 100, 80, 70],
        metavar=("ALONE", "PACKED", "ATTENTION", "TESTS"),
        help="seconds for each part (8 minutes in all with start-up)",
    )
    args = parser.parse_args()
    if args.command == "measure":
        print(json.dumps(measure(args)), flush=True)
    else:
        print(check(args))


if __name__ == "__main__":
    main()
