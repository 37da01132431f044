"""Where a training step's GPU time goes: torch.profiler over compiled bf16 micro-batches of a ladder rung.

    python scripts/profile_gpu_step.py --ladder reduced --size r6 --micro-batch 32 [--sdpa auto,flash,cudnn]
    python scripts/profile_gpu_step.py --size r6 --heads 8   # head_dim 128: the study's 0.411B shape

Random token ids (the rate does not depend on the text), the model compiled as testbed compiles it, the
loss as testbed computes it (`batch_loss`), fused AdamW. Prints the kernels by GPU time, grouped (matmuls,
attention, the rest), and the achieved model FLOP/s of the profiled steps.
"""

from __future__ import annotations

import argparse
import time

import torch

from testbed.config import ATTENTION_BACKENDS
from testbed.models import attention_backend, batch_loss
from testbed.rung_bench import rung_model
from testbed.throughput import peak_flops


def group(name: str) -> str:
    lowered = name.lower()
    if any(k in lowered for k in ("gemm", "cutlass", "sm90_xmma", "nvjet", "matmul", "cublas")):
        return "matmul"
    if "flash" in lowered or "fmha" in lowered or "attention" in lowered:
        return "attention"
    if "adam" in lowered or "multi_tensor" in lowered:
        return "optimizer"
    if "triton" in lowered:
        return "fused elementwise (triton)"
    return "other"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ladder", default="reduced")
    parser.add_argument("--size", default="r6")
    parser.add_argument("--micro-batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--sdpa", default="auto", help=f"comma-separated: auto,{','.join(ATTENTION_BACKENDS)}")
    parser.add_argument(
        "--heads",
        type=int,
        help="decoder attention heads instead of the rung's (same parameters "
        "and model FLOPs; head_dim = d_model / heads)",
    )
    args = parser.parse_args()
    for backend in args.sdpa.split(","):
        torch._dynamo.reset()  # compile afresh under each backend
        with attention_backend(backend):
            profile(args, backend)


def profile(args, backend: str) -> None:
    _, plan, model, per_token = rung_model(args.ladder, args.size, args.heads, "cuda")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    forward = torch.compile(model)
    ids = torch.randint(1, plan.vocab_size, (args.micro_batch, plan.seq_len + 1), device="cuda")
    batch = {"input_ids": ids[:, :-1], "labels": ids[:, 1:]}

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            ce, total = batch_loss(forward, batch)
        (total / batch["labels"].numel()).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(3):  # compile and warm up
        step()
    torch.cuda.synchronize()
    began = time.perf_counter()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(args.steps):
            step()
        torch.cuda.synchronize()
    wall = time.perf_counter() - began
    events = [e for e in prof.key_averages() if e.device_time_total > 0]
    total = sum(e.device_time_total for e in events)
    groups: dict[str, float] = {}
    for e in events:
        groups[group(e.key)] = groups.get(group(e.key), 0) + e.device_time_total
    tokens = args.steps * args.micro_batch * plan.seq_len
    mfu = tokens * per_token / wall / peak_flops(torch.device("cuda"))
    print(
        f"{args.size}: {plan.params:,} params, micro-batch {args.micro_batch} x {plan.seq_len}, {args.steps} "
        f"profiled steps (each with an optimizer step), {model.config.num_attention_heads} heads of "
        f"{model.config.head_dim}, SDPA backend {backend}, {torch.cuda.get_device_name()}"
    )
    print(
        f"GPU busy {total / 1e3:.1f} ms of {wall * 1e3:.1f} ms wall (profiler overhead included); "
        f"model FLOP/s {tokens * per_token / wall / 1e12:.0f} T = MFU {mfu:.1%}"
    )
    for name, t in sorted(groups.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<28} {t / 1e3:9.1f} ms  {t / total:6.1%}")
    for e in sorted(events, key=lambda e: -e.device_time_total)[:20]:
        print(f"  {e.device_time_total / 1e3:8.1f} ms  {e.count:5d}x  {group(e.key):<10} {e.key[:90]}")


if __name__ == "__main__":
    main()
