"""Translation finetuning of a run's checkpoints: one checkpoint at one size (`finetune_checkpoint`), and
every selected checkpoint of a run plus the baseline at every size (`finetune_run`): its rows, its failures
file and a report. The protocol is in this package's docstring."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from testbed.checkpoint import step_dir
from testbed.errors import TestbedError, one_line
from testbed.io import write_text
from testbed.rundir import RunDir, StageFailures
from testbed.translation.alignment import mixture_alignment
from testbed.translation.data import (
    Formatter,
    TaskDataError,
    TranslationTask,
    checked_pairs,
    resolve_task,
    select_train,
)
from testbed.translation.loop import greedy_decode, initial_model, load_checkpoint, reference_ce, tune
from testbed.translation.metrics import score, stderr
from testbed.translation.protocol import Protocol, load_protocol, parse_sizes

FAILURES_FILE = RunDir.FAILURES["finetune"]
BASELINE_STEP = 0  # the rows of the no-pretraining baseline


def finetune_checkpoint(
    model,
    tokenizer,
    seq2seq: bool,
    task: TranslationTask,
    size: int,
    protocol: Protocol,
    world_seed: int,
    out_dir: Path,
) -> dict:
    """Finetune one model (weights are not modified: copies are trained) and score it on the test split:
    metric -> (value, stderr); the predictions and a summary are written to `out_dir`."""
    start = time.perf_counter()
    fmt = Formatter(tokenizer, seq2seq, protocol.max_len)
    train = select_train(fmt, task, size, world_seed)
    valid = [fmt.encode(s, t) for s, t in checked_pairs(task, "valid", protocol.n_valid, world_seed)]
    test_pairs = checked_pairs(task, "test", protocol.n_test, world_seed)
    test = [fmt.encode(s, t) for s, t in test_pairs]
    lr, tuned, grid = tune(model, fmt, train, valid, protocol)
    ce, ce_per_sentence = reference_ce(tuned, fmt, test, protocol.decode_batch)
    hypotheses = greedy_decode(tuned, fmt, [e.prompt for e in test], protocol)
    references = [t for _, t in test_pairs]
    sources = [s for s, _ in test_pairs]
    metrics = score(hypotheses, references, sources, protocol.comet_model)
    metrics["cross_entropy"] = (ce, stderr(ce_per_sentence))
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text(
        out_dir / "predictions.jsonl",
        "".join(
            json.dumps({"src": s, "ref": r, "hyp": h}, ensure_ascii=False) + "\n"
            for s, r, h in zip(sources, references, hypotheses, strict=True)
        ),
    )
    summary = {
        "task": task.name,
        "corpus": task.corpus,
        "finetune_size": size,
        "lr": lr,
        "lr_grid": grid,
        "train_pairs": len(train),
        "train_tokens": sum(len(e.prompt) + len(e.target) for e in train),
        "test_pairs": len(test),
        "metrics": {k: v for k, (v, _) in metrics.items()},
        "protocol": asdict(protocol),
        "wall_s": round(time.perf_counter() - start, 2),
    }
    write_text(out_dir / "summary.json", json.dumps(summary, indent=1) + "\n")
    return metrics


@dataclass
class FinetuneReport:
    written: int = 0
    done: list[tuple[int, int]] = field(default_factory=list)  # (step, size) finetuned by this call
    failed: list[dict] = field(default_factory=list)


@dataclass
class _Job:
    """What every (step, size) of one finetune_run shares."""

    run_dir: RunDir
    config: Any  # the run's RunConfig
    plan: Any  # its RunPlan
    task: TranslationTask
    protocol: Protocol
    alignment: float
    failures: StageFailures
    log: Callable[[str], None] | None
    report: FinetuneReport = field(default_factory=FinetuneReport)


def finetune_run(
    run_dir: Path,
    task: str,
    sizes: Iterable[int | str],
    steps: str = "final",
    protocol: str | Path | Protocol = "finetune",
    log: Callable[[str], None] | None = None,
) -> FinetuneReport:
    """Finetune the run's checkpoints (the final one, or all) plus the baseline on `task` at each size."""
    from testbed.ladder import plan_run

    run = RunDir(run_dir)
    available, selected = run.exported_steps(steps)
    translation = resolve_task(task)
    sizes = parse_sizes(sizes)
    protocol = protocol if isinstance(protocol, Protocol) else load_protocol(protocol)
    config = run.config()
    plan = plan_run(config)
    alignment = mixture_alignment(config.data.mixture, translation.src, translation.dst)
    for split, n in (("valid", protocol.n_valid), ("test", protocol.n_test)):  # bad data stops before any work
        checked_pairs(translation, split, n, config.data.world_seed)
    done = {
        (r["step"], r["finetune_size"], r["harness"])
        for r in run.read_rows()
        if r["kind"] == "translation" and r["name"] == translation.name
    }
    if protocol.baseline:
        selected = [BASELINE_STEP, *[s for s in selected if s != BASELINE_STEP]]
    job = _Job(run, config, plan, translation, protocol, alignment, StageFailures(run, "finetune"), log)
    for step in selected:
        todo = [size for size in sizes if (step, size, protocol.harness) not in done]
        if todo:
            _finetune_step(job, step, todo, available)
    return job.report


def _finetune_step(job: _Job, step: int, sizes: list[int], available: list[int]) -> None:
    """Every size still to do from one pretraining checkpoint, or from the initialisation (the baseline)."""
    if step == BASELINE_STEP and step not in available:
        model, tokenizer, seq2seq = initial_model(job.run_dir.path, available[-1], job.config.train.seed)
    else:
        model, tokenizer, seq2seq = load_checkpoint(step_dir(job.run_dir.hf, step))
    base = job.run_dir.base_row(job.config, job.plan, step)
    if step == BASELINE_STEP:
        base["final"] = False
    task, protocol = job.task, job.protocol
    for size in sizes:
        key = f"{task.name}/size_{size}/step_{step:06d}/{protocol.name}"
        out_dir = job.run_dir / "finetune" / task.name / f"size_{size}" / f"step_{step:06d}"
        if job.log:
            job.log(f"{job.run_dir.name}: finetune {task.name} size {size} from step {step}")
        try:
            metrics = finetune_checkpoint(
                model, tokenizer, seq2seq, task, size, protocol, job.config.data.world_seed, out_dir
            )
        except TaskDataError:
            raise  # bad input shared by every combination: stop with one line
        except Exception as err:  # recorded; the other combinations still run
            job.report.failed.append(
                job.failures.record(
                    key,
                    {
                        "task": task.name,
                        "finetune_size": size,
                        "step": step,
                        "protocol": protocol.name,
                        "reason": str(err).splitlines()[0] if isinstance(err, TestbedError) else one_line(err),
                        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    },
                )
            )
            continue
        rows = [
            dict(
                base,
                kind="translation",
                name=task.name,
                metric=metric,
                value=float(value),
                stderr=None if err is None else float(err),
                finetune_size=size,
                alignment=job.alignment,
                harness=protocol.harness,
            )
            for metric, (value, err) in metrics.items()
        ]
        job.run_dir.append_rows(rows)
        job.report.written += len(rows)
        job.report.done.append((step, size))
        job.failures.clear(key)
