"""Translation finetuning of a run's checkpoints: one checkpoint at one size and seed (`finetune_checkpoint`),
and every selected checkpoint of a run plus the baseline at every size and seed (`finetune_run`): its rows, the
BLEU gains over the baseline, its failures file and a report. The protocol is in this package's docstring."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from testbed.checkpoint import step_dir
from testbed.errors import TestbedError, one_line
from testbed.io import write_json, write_text
from testbed.rundir import RunDir, StageFailures
from testbed.translation.alignment import mixture_alignment
from testbed.translation.data import (
    Encoded,
    Formatter,
    TaskDataError,
    TranslationTask,
    checked_pairs,
    resolve_task,
    select_train,
)
from testbed.translation.loop import (
    greedy_decode,
    initial_model,
    load_checkpoint,
    reference_ce,
    trained_copy,
    tune,
)
from testbed.translation.metrics import CROSS_ENTROPY, GAINS, score, stderr, text_metrics
from testbed.translation.protocol import Protocol, load_protocol, parse_sizes
from testbed.translation.significance import metric_gain

FAILURES_FILE = RunDir.FAILURES["finetune"]
BASELINE_STEP = 0  # the rows of the no-pretraining baseline


@dataclass
class Sets:
    """A task's finetuning set at one size, and its valid and test splits, as one tokenizer encodes them."""

    fmt: Formatter
    train: list[Encoded]
    valid: list[Encoded]
    test_pairs: list[tuple[str, str]]  # (source, reference)
    test: list[Encoded]


def encoded_sets(
    tokenizer, seq2seq: bool, task: TranslationTask, size: int, protocol: Protocol, world_seed: int
) -> Sets:
    fmt = Formatter(tokenizer, seq2seq, protocol.max_len)
    test_pairs = checked_pairs(task, "test", protocol.n_test, world_seed)
    return Sets(
        fmt,
        select_train(fmt, task, size, world_seed),
        [fmt.encode(s, t) for s, t in checked_pairs(task, "valid", protocol.n_valid, world_seed)],
        test_pairs,
        [fmt.encode(s, t) for s, t in test_pairs],
    )


def finetune_checkpoint(
    model,
    tokenizer,
    seq2seq: bool,
    task: TranslationTask,
    size: int,
    protocol: Protocol,
    world_seed: int,
    out_dir: Path,
    seed: int | None = None,
    lr: float | None = None,
) -> dict:
    """Finetune one model (weights are not modified: copies are trained) with `seed` (default: the protocol's
    first) and score it on the test split: metric -> (value, stderr); the predictions and a summary are written
    to `out_dir`. Without `lr`, every LR of the protocol's grid is tried and the best on the valid split kept."""
    seed = protocol.seeds[0] if seed is None else seed
    sets = encoded_sets(tokenizer, seq2seq, task, size, protocol, world_seed)
    clock = [time.perf_counter()]
    if lr is None:
        lr, tuned, grid = tune(model, sets.fmt, sets.train, sets.valid, protocol, seed)
    else:
        tuned, grid = trained_copy(model, sets.fmt, sets.train, protocol, lr, seed)[0], None
    clock.append(time.perf_counter())
    ce, ce_per_sentence = reference_ce(tuned, sets.fmt, sets.test, protocol.decode_batch)
    clock.append(time.perf_counter())
    hypotheses = greedy_decode(tuned, sets.fmt, [e.prompt for e in sets.test], protocol)
    clock.append(time.perf_counter())
    sources, references = [s for s, _ in sets.test_pairs], [t for _, t in sets.test_pairs]
    metrics = score(hypotheses, references, sources, protocol.comet_model)
    metrics[CROSS_ENTROPY] = (ce, stderr(ce_per_sentence))
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text(
        out_dir / "predictions.jsonl",
        "".join(
            json.dumps({"src": s, "ref": r, "hyp": h}, ensure_ascii=False) + "\n"
            for s, r, h in zip(sources, references, hypotheses, strict=True)
        ),
    )
    seconds = [round(b - a, 2) for a, b in itertools.pairwise(clock)]
    summary = {
        "task": task.name,
        "corpus": task.corpus,
        "finetune_size": size,
        "finetune_seed": seed,
        "lr": lr,
        "lr_grid": grid,  # null: the LR was given (the protocol's first seed chose it)
        "train_pairs": len(sets.train),
        "train_steps": protocol.train_steps(len(sets.train)),
        "train_tokens": sum(len(e.prompt) + len(e.target) for e in sets.train),
        "test_pairs": len(sets.test),
        "metrics": {k: v for k, (v, _) in metrics.items()},
        "protocol": asdict(protocol),
        "seconds": dict(zip(("finetune", "reference_ce", "decode"), seconds, strict=True)),
    }
    write_json(out_dir / "summary.json", summary)
    return metrics


@dataclass
class FinetuneReport:
    written: int = 0
    done: list[tuple[int, int, int]] = field(default_factory=list)  # (step, size, seed) finetuned by this call
    rescored: list[tuple[int, int, int, str]] = field(default_factory=list)  # (step, size, seed, metric) re-scored
    failed: list[dict] = field(default_factory=list)


@dataclass
class _Job:
    """What every (step, size, seed) of one finetune_run shares."""

    run_dir: RunDir
    config: Any  # the run's RunConfig
    plan: Any  # its RunPlan
    task: TranslationTask
    protocol: Protocol
    alignment: float
    failures: StageFailures
    log: Callable[[str], None]
    report: FinetuneReport = field(default_factory=FinetuneReport)
    bases: dict[int, dict] = field(default_factory=dict)  # step -> the columns its rows share

    def out_dir(self, step: int, size: int, seed: int) -> Path:
        return self.run_dir / "finetune" / self.task.name / f"size_{size}" / f"step_{step:06d}" / f"seed_{seed}"

    def row(self, step: int, size: int, seed: int, metric: str, value: float, err: float | None, **extra) -> dict:
        if step not in self.bases:
            base = self.run_dir.base_row(self.config, self.plan, step)
            self.bases[step] = {**base, "final": False} if step == BASELINE_STEP else base
        return {
            **self.bases[step],
            "kind": "translation",
            "name": self.task.name,
            "metric": metric,
            "value": float(value),
            "stderr": None if err is None else float(err),
            "finetune_size": size,
            "finetune_seed": seed,
            "alignment": self.alignment,
            "harness": self.protocol.harness,
            **extra,
        }


def finetune_run(
    run_dir: Path,
    task: str,
    sizes: Iterable[int | str],
    steps: str = "final",
    protocol: str | Path | Protocol = "finetune",
    log: Callable[[str], None] | None = None,
) -> FinetuneReport:
    """Finetune the run's checkpoints (the final one, or all) plus the baseline on `task` at each size, once per
    seed of the protocol; then add, from the stored predictions, every text metric a finetuned combination lacks
    (one added to metrics.TEXT_METRICS after it was finetuned) and the gains over the baseline (GAINS).

    Only the missing (step, size, seed) combinations are finetuned: a second call adds nothing, and a seed added
    to the protocol adds only its own; a metric added to the code adds only its rows, without finetuning.
    The LR is chosen on the valid split by the protocol's first seed and reused by the others,
    so a (step, size) costs |lrs| + |seeds| - 1 finetunes instead of |lrs| x |seeds|.
    """
    from testbed.ladder import plan_run

    run = RunDir(run_dir)
    available, selected = run.exported_steps(steps)
    translation = resolve_task(task)
    sizes = parse_sizes(sizes)
    protocol = protocol if isinstance(protocol, Protocol) else load_protocol(protocol)
    config = run.config()
    alignment = mixture_alignment(config.data.mixture, translation.src, translation.dst)
    for split, n in (("valid", protocol.n_valid), ("test", protocol.n_test)):  # bad data stops before any work
        checked_pairs(translation, split, n, config.data.world_seed)
    failures = StageFailures(run, "finetune")
    job = _Job(run, config, plan_run(config), translation, protocol, alignment, failures, log or (lambda _: None))
    if protocol.baseline:
        selected = [BASELINE_STEP, *[s for s in selected if s != BASELINE_STEP]]
    measured = _measured(job)
    for step in selected:
        todo = [(size, seed) for size in sizes for seed in protocol.seeds if (step, size, seed) not in measured]
        if todo:
            _finetune_step(job, step, todo, available)
    measured = _measured(job)
    for step, size, seed in itertools.product(selected, sizes, protocol.seeds):
        metrics = measured.get((step, size, seed), set())
        if not metrics:  # not finetuned (failed)
            continue
        _rescore(job, step, size, seed, [m for m in text_metrics(protocol.comet_model) if m not in metrics])
        if protocol.baseline and step != BASELINE_STEP:
            _add_gains(job, step, size, seed, [g for g in GAINS if g not in metrics])
    return job.report


def _measured(job: _Job) -> dict[tuple[int, int, int | None], set[str]]:
    """(step, size, seed) -> the metrics of its rows, for this task and protocol. Rows written before seeds
    existed have none (None): they count for no seed."""
    out: dict[tuple[int, int, int | None], set[str]] = {}
    for r in job.run_dir.read_rows():
        if r["kind"] == "translation" and r["name"] == job.task.name and r["harness"] == job.protocol.harness:
            out.setdefault((r["step"], r["finetune_size"], r.get("finetune_seed")), set()).add(r["metric"])
    return out


def _finetune_step(job: _Job, step: int, todo: list[tuple[int, int]], available: list[int]) -> None:
    """Every (size, seed) still to do from one pretraining checkpoint, or from the initialisation (the baseline)."""
    if step == BASELINE_STEP and step not in available:
        model, tokenizer, seq2seq = initial_model(job.run_dir.path, available[-1], job.config.train.seed)
    else:
        model, tokenizer, seq2seq = load_checkpoint(step_dir(job.run_dir.hf, step))
    task, protocol, world_seed = job.task, job.protocol, job.config.data.world_seed
    for size, seed in todo:
        key = f"{task.name}/size_{size}/step_{step:06d}/seed_{seed}/{protocol.name}"
        job.log(f"{job.run_dir.name}: finetune {task.name} size {size} seed {seed} from step {step}")
        try:
            lr = None if seed == protocol.seeds[0] else _first_seed_lr(job, step, size, (model, tokenizer, seq2seq))
            out_dir = job.out_dir(step, size, seed)
            metrics = finetune_checkpoint(
                model, tokenizer, seq2seq, task, size, protocol, world_seed, out_dir, seed=seed, lr=lr
            )
        except TaskDataError:
            raise  # bad input shared by every combination: stop with one line
        except Exception as err:  # recorded; the other combinations still run
            reason = str(err).splitlines()[0] if isinstance(err, TestbedError) else one_line(err)
            where = {"task": task.name, "finetune_size": size, "finetune_seed": seed, "step": step}
            entry = {**where, "protocol": protocol.name, "reason": reason, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
            job.report.failed.append(job.failures.record(key, entry))
            continue
        rows = [job.row(step, size, seed, metric, value, err) for metric, (value, err) in metrics.items()]
        job.run_dir.append_rows(rows)
        job.report.written += len(rows)
        job.report.done.append((step, size, seed))
        job.failures.clear(key)


def _first_seed_lr(job: _Job, step: int, size: int, loaded: tuple) -> float:
    """The LR the protocol's first seed chose for (step, size): from its summary, or, where that is gone, chosen
    again the same way (the first seed's batch order, the valid split)."""
    first = job.protocol.seeds[0]
    summary = _summary(job.out_dir(step, size, first), job.protocol)
    if summary is not None:
        return float(summary["lr"])
    job.log(f"{job.run_dir.name}: no summary of seed {first} at step {step} size {size}: choosing its LR again")
    model, tokenizer, seq2seq = loaded
    sets = encoded_sets(tokenizer, seq2seq, job.task, size, job.protocol, job.config.data.world_seed)
    return tune(model, sets.fmt, sets.train, sets.valid, job.protocol, first)[0]


def _summary(out_dir: Path, protocol: Protocol) -> dict | None:
    """The summary.json this protocol wrote to `out_dir` (another protocol may share the folder), or None."""
    path = out_dir / "summary.json"
    if not path.is_file():
        return None
    summary = json.loads(path.read_text())
    return summary if summary.get("protocol", {}).get("name") == protocol.name else None


@dataclass(frozen=True)
class Predictions:
    """A predictions.jsonl: the test sentences' sources and references, and the finetuned model's hypotheses."""

    sources: list[str]
    references: list[str]
    hypotheses: list[str]


def _predictions(out_dir: Path, protocol: Protocol) -> Predictions | None:
    """The predictions this protocol wrote to `out_dir`, or None."""
    path = out_dir / "predictions.jsonl"
    if _summary(out_dir, protocol) is None or not path.is_file():
        return None
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return Predictions([p["src"] for p in lines], [p["ref"] for p in lines], [p["hyp"] for p in lines])


def _no_predictions(job: _Job, what: str, step: int, size: int, seed: int) -> None:
    where = job.out_dir(step, size, seed)
    job.log(f"{what}: no predictions of protocol {job.protocol.name!r} in {where}")


def _rescore(job: _Job, step: int, size: int, seed: int, missing: list[str]) -> None:
    """The rows of the text metrics (step, size, seed) lacks, scored from its stored predictions: a metric added
    after it was finetuned costs no finetuning. Skipped with a log line when the predictions are gone."""
    if not missing:
        return
    texts = _predictions(job.out_dir(step, size, seed), job.protocol)
    if texts is None:
        what = f"{job.run_dir.name}: no {', '.join(missing)} for {job.task.name} size {size} seed {seed} at step {step}"
        _no_predictions(job, what, step, size, seed)
        return
    metrics = score(texts.hypotheses, texts.references, texts.sources, job.protocol.comet_model, only=missing)
    job.run_dir.append_rows([job.row(step, size, seed, m, value, err) for m, (value, err) in metrics.items()])
    job.report.written += len(metrics)
    job.report.rescored += [(step, size, seed, m) for m in metrics]


def _add_gains(job: _Job, step: int, size: int, seed: int, gains: list[str]) -> None:
    """The `gains` rows (of GAINS) of (step, size, seed): its score minus the baseline's on the same test
    sentences, with the paired bootstrap's SD and p-value; skipped with a log line when either's predictions
    are missing. Both predictions files are read once for all of them."""
    if not gains:
        return
    system = _predictions(job.out_dir(step, size, seed), job.protocol)
    baseline = _predictions(job.out_dir(BASELINE_STEP, size, seed), job.protocol)
    what = f"{job.run_dir.name}: no {', '.join(gains)} for {job.task.name} size {size} seed {seed} at step {step}"
    if system is None or baseline is None:
        _no_predictions(job, what, step if system is None else BASELINE_STEP, size, seed)
        return
    if system.references != baseline.references:
        job.log(f"{what}: the baseline was scored on other test sentences")
        return
    rows = []
    for gain in gains:
        value = metric_gain(
            gain,
            system.sources,
            system.references,
            system.hypotheses,
            baseline.hypotheses,
            job.protocol.bootstrap_samples,
        )
        rows.append(job.row(step, size, seed, gain, value.value, value.stderr, p_value=value.p_value))
    job.run_dir.append_rows(rows)
    job.report.written += len(rows)
