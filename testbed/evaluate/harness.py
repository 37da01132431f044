"""Run lm-evaluation-harness in-process on one Hugging Face checkpoint directory.

`evaluate_checkpoint` loads the checkpoint once (lm-eval's `HFLM`, causal or seq2seq from config.json)
and runs `lm_eval.simple_evaluate` once per task with that model, so a task's numbers do not depend on
which other tasks were asked for in the same call (batch composition, seeding). It returns result rows
in the project's schema (analysis/schema.py) for acc, acc_norm and p_correct (multiple choice), or every
numeric metric a generation task reports (exact_match, f1, ...). A group (mmlu) gives its aggregate.

p_correct is the probability of the gold choice under the softmax of the choices' summed
log-likelihoods, averaged over items: continuous where accuracy sits at chance. It is computed here from
lm-eval's logged samples (their `filtered_resps` are exactly the log-likelihoods lm-eval ranked), not by
a custom `process_results` in the task YAML: that works for every multiple-choice task, built-in ones
included, and leaves lm-eval's own acc and acc_norm untouched.

Task lookup: lm-eval's full TaskManager indexes all of its ~14.7k built-in tasks (7-12 s on 2 CPU cores),
so tasks are first looked up in `task_yaml_dir` alone (a fresh index of that directory, milliseconds, never
stale) and only names not found there go to a per-process cached index of the built-in tasks.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from testbed.errors import TestbedError, one_line
from testbed.io import write_text

log = logging.getLogger(__name__)

METRICS = ("acc", "acc_norm", "p_correct")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "spiece.model", "tokenizer.model")


def harness_version() -> str:
    """The value of the results table's `harness` column, e.g. 'lm_eval==0.4.13'."""
    return f"lm_eval=={importlib.metadata.version('lm_eval')}"


def check_checkpoint(hf_dir: Path) -> dict:
    """The checkpoint's config.json as a dict; TestbedError naming the path if the dir is not usable."""
    hf_dir = Path(hf_dir)
    if not hf_dir.is_dir():
        raise TestbedError(f"{hf_dir}: checkpoint directory does not exist")
    config_path = hf_dir / "config.json"
    if not config_path.is_file():
        raise TestbedError(f"{config_path}: missing (not a save_pretrained checkpoint)")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as exc:
        raise TestbedError(f"{config_path}: not valid JSON ({exc.msg})") from exc
    if not any((hf_dir / name).is_file() for name in TOKENIZER_FILES):
        raise TestbedError(f"{hf_dir}: no tokenizer saved beside the model (none of {', '.join(TOKENIZER_FILES)})")
    return config


def detect_backend(config: dict) -> str:
    """lm-eval's `backend` for a checkpoint's config.json: its architecture's (testbed/arch.py): 'seq2seq'
    for encoder-decoder checkpoints (T5), 'causal' for decoders."""
    from testbed.arch import checkpoint_arch

    return checkpoint_arch(config).lm_eval_backend


def load_lm(hf_dir: Path, *, batch_size: int = 16, device: str = "cpu"):
    """The checkpoint as an lm-eval HFLM (fp32). Pass it as `lm=` to reuse one load across calls."""
    from lm_eval.models.huggingface import HFLM

    from testbed.arch import checkpoint_arch

    hf_dir = Path(hf_dir).resolve()
    arch = checkpoint_arch(check_checkpoint(hf_dir))
    try:
        lm = HFLM(
            pretrained=str(hf_dir),
            backend=arch.lm_eval_backend,
            batch_size=batch_size,
            device=device,
            dtype="float32",
            trust_remote_code=False,
        )
    except Exception as exc:  # transformers raises many kinds; the path is what the user needs
        raise TestbedError(f"{hf_dir}: cannot load the checkpoint with lm-eval ({one_line(exc)})") from exc
    arch.after_load(lm.model, hf_dir)  # T5: HFLM's tie_weights() would evaluate v1.1 with the embedding as head
    vocab = len(lm.tokenizer)
    embeddings = lm.model.get_input_embeddings().num_embeddings
    if vocab > embeddings:
        raise TestbedError(
            f"{hf_dir}: tokenizer has {vocab} tokens but the model embeds only {embeddings}; "
            "the tokenizer does not belong to this model"
        )
    return lm


@cache
def builtin_task_manager():
    """lm-eval's index of its built-in tasks, built once per process (several seconds)."""
    from lm_eval.tasks import TaskManager

    start = time.perf_counter()
    manager = TaskManager()
    log.info("indexed %d built-in lm-eval tasks in %.1f s", len(manager.all_tasks), time.perf_counter() - start)
    return manager


def task_managers(task_yaml_dir: Path, tasks: list[str]) -> dict[str, Any]:
    """task -> the TaskManager that knows it: the YAML dir's own index first, then the built-ins."""
    from lm_eval.tasks import TaskManager

    local = TaskManager(include_path=str(task_yaml_dir), include_defaults=False)
    found = {task: local for task in tasks if task in local.all_tasks}
    for task in found:
        check_local_data(task, local.task_index[task])
    missing = [task for task in tasks if task not in found]
    if missing:
        builtin = builtin_task_manager()
        for task in missing:
            if task not in builtin.all_tasks:
                raise TestbedError(f"unknown task {task!r}: not in {task_yaml_dir} nor among lm-eval's built-in tasks")
            found[task] = builtin
    return found


def check_local_data(task: str, entry: Any) -> None:
    """A json task's data files exist and are not empty (lm-eval's own errors there are cryptic)."""
    cfg = entry.cfg or {}
    if cfg.get("dataset_path") != "json":
        return
    data_files = (cfg.get("dataset_kwargs") or {}).get("data_files")
    if isinstance(data_files, dict):
        data_files = list(data_files.values())
    if not isinstance(data_files, list):
        data_files = [data_files]
    names = [name for split in data_files for name in (split if isinstance(split, list) else [split])]
    for name in names:
        if not isinstance(name, str) or not Path(name).is_absolute() or any(c in name for c in "*?["):
            continue  # relative, remote or glob: left to datasets
        path = Path(name)
        if not path.is_file():
            raise TestbedError(f"task {task!r} ({entry.yaml_path}): data file {path} does not exist")
        size = path.stat().st_size
        if size == 0 or (size < 4096 and not path.read_text(encoding="utf-8", errors="replace").strip()):
            raise TestbedError(f"task {task!r} ({entry.yaml_path}): data file {path} is empty")


@cache
def _environment() -> dict:
    """lm-eval's record of the environment, taken once per process: it runs torch's collect_env (`pip list`
    in a subprocess, about 0.4 s), and simple_evaluate would take it anew for every task of every checkpoint."""
    from lm_eval.loggers.utils import add_env_info

    info: dict = {}
    add_env_info(info)
    return info


@contextlib.contextmanager
def _environment_once():
    """simple_evaluate with the environment record of `_environment` (lm-eval has no argument to skip it)."""
    import lm_eval.evaluator as evaluator

    original = evaluator.add_env_info
    evaluator.add_env_info = lambda storage: storage.update(_environment())
    try:
        yield
    finally:
        evaluator.add_env_info = original


def _quiet_if_asked():
    """With TQDM_DISABLE=1 (`--quiet`), keep lm-eval's progress bars and notices out of the output: it passes
    disable=False to its bars, which overrides the variable. Errors still raise and are recorded."""
    if os.environ.get("TQDM_DISABLE", "").lower() not in ("1", "true", "yes"):
        return contextlib.nullcontext()
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    return contextlib.redirect_stderr(io.StringIO())


def evaluate_checkpoint(
    hf_dir: Path,
    task_yaml_dir: Path,
    tasks: list[str],
    *,
    num_fewshot: int = 0,
    batch_size: int = 16,
    seed: int = 0,
    device: str = "cpu",
    samples_dir: Path | None = None,
    lm=None,
    notes: Sequence[str] = (),
) -> list[dict]:
    """Evaluate one checkpoint on `tasks` with lm-eval; one row per (task, metric).

    Rows: {"name", "metric" (acc | acc_norm | p_correct), "value", "stderr", "num_fewshot", "harness"};
    the caller adds kind="task", run_id, step, tokens and the rest. A metric a task does not report (a
    generation task has no acc) gives no row.

    With `samples_dir`, writes for each task `<task>-<k>shot.samples.jsonl` (lm-eval's per-sample records,
    one line per item, plus p_correct) and `<task>-<k>shot.json` (lm-eval's results for the task with the
    checkpoint, backend, batch size, seeds, versions and wall time, and `notes`: warnings about the call, e.g.
    a suite in another language than the model's), each atomically.

    `lm` is an HFLM from `load_lm` for this checkpoint, to evaluate task by task without reloading (and
    so record one task's failure and go on). Raises TestbedError naming the path or task on bad input.
    """
    hf_dir = Path(hf_dir).resolve()
    task_yaml_dir = Path(task_yaml_dir).resolve()
    config = check_checkpoint(hf_dir)
    if not task_yaml_dir.is_dir():
        raise TestbedError(f"{task_yaml_dir}: task directory does not exist")
    if not tasks:
        raise TestbedError(f"{hf_dir}: no tasks to evaluate")
    managers = task_managers(task_yaml_dir, list(tasks))
    if lm is None:
        lm = load_lm(hf_dir, batch_size=batch_size, device=device)
    elif Path(str(getattr(lm, "pretrained", ""))).resolve() != hf_dir:
        raise TestbedError(f"{hf_dir}: the lm passed in was loaded from {getattr(lm, 'pretrained', '?')}")
    batch_size = getattr(lm, "batch_size_per_gpu", batch_size)  # what the model really runs with
    device = str(getattr(lm, "device", device))

    run = _TaskRun(
        lm, hf_dir, config, num_fewshot, batch_size, device, seed, harness_version(), samples_dir, tuple(notes)
    )
    return [row for task in tasks for row in run.evaluate(task, managers[task])]


@dataclass
class _TaskRun:
    """What every task of one `evaluate_checkpoint` call is evaluated with."""

    lm: Any
    hf_dir: Path
    config: dict
    num_fewshot: int
    batch_size: int
    device: str
    seed: int
    harness: str
    samples_dir: Path | None
    notes: tuple[str, ...] = ()

    def evaluate(self, task: str, manager) -> list[dict]:
        """One task's rows (and its samples files, with `samples_dir`)."""
        out, seconds = self._simple_evaluate(task, manager)
        if task in out.get("samples", {}):
            samples = out["samples"][task]
        elif task in out.get("results", {}) and out.get("samples"):  # a group (mmlu): its aggregate
            samples = [s for member in out["samples"].values() for s in member]
        else:
            raise TestbedError(f"task {task!r} is a group of tasks without an aggregate; name its members")
        results = out["results"][task]
        samples = [s for s in samples if s.get("filter") == samples[0].get("filter")] if samples else []
        shots = int(out["n-shot"].get(task, next(iter(out["n-shot"].values()), self.num_fewshot)))
        p_per_item = [p_correct(sample) for sample in samples]
        rows = [
            row(task, metric, value, stderr, shots, self.harness) for metric, value, stderr in reported_metrics(results)
        ]
        known = [p for p in p_per_item if p is not None]
        if samples and len(known) == len(p_per_item):
            rows.append(row(task, "p_correct", mean(known), stderr_of_mean(known), shots, self.harness))
            guess = chance_accuracy(samples)
            rows = [dict(r, chance=guess) if r["metric"] in MC_METRICS else r for r in rows]
        if self.samples_dir is not None:
            record = {
                "task": task,
                "checkpoint": str(self.hf_dir),
                "backend": detect_backend(self.config),
                "model_type": self.config.get("model_type"),
                "harness": self.harness,
                "num_fewshot": shots,
                "batch_size": self.batch_size,
                "seed": self.seed,
                "device": self.device,
                "wall_s": round(seconds, 3),
                "n_samples": len(samples),
                "results": results,
                "task_version": out["versions"].get(task),
                "config": out.get("config"),
                "transformers_version": out.get("transformers_version"),
                "notes": list(self.notes),
            }
            write_samples(Path(self.samples_dir), task, shots, samples, p_per_item, record)
        return rows

    def _simple_evaluate(self, task: str, manager) -> tuple[dict, float]:
        import lm_eval

        start = time.perf_counter()
        seeds = {
            "random_seed": self.seed,
            "numpy_random_seed": self.seed,
            "torch_random_seed": self.seed,
            "fewshot_random_seed": self.seed,
        }
        try:
            with _quiet_if_asked(), _environment_once():
                out = lm_eval.simple_evaluate(
                    model=self.lm,
                    tasks=[task],
                    task_manager=manager,
                    num_fewshot=self.num_fewshot,
                    batch_size=self.batch_size,
                    device=self.device,
                    log_samples=True,
                    **seeds,
                )
        except Exception as exc:
            raise TestbedError(f"task {task!r} on {self.hf_dir}: lm-eval failed ({one_line(exc)})") from exc
        return out, time.perf_counter() - start


def reported_metrics(results: dict) -> list[tuple[str, float, Any]]:
    """(metric, value, stderr) of one task's lm-eval results: acc and acc_norm for multiple choice;
    every other numeric metric (exact_match, f1, ...) of generation tasks, suffixed by a filter other than
    'none' (`exact_match_flexible-extract`). Nothing else of lm-eval's results dict is a metric."""
    out = []
    for key, value in results.items():
        metric, _, filt = key.partition(",")
        if not filt or metric.endswith("_stderr") or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if metric in ("acc", "acc_norm") and filt != "none":
            continue
        if metric not in ("acc", "acc_norm") and any(m in results for m in ("acc,none",)):
            continue  # a multiple-choice task: acc, acc_norm (and p_correct) only
        name = metric if filt == "none" else f"{metric}_{filt}"
        out.append((name, value, results.get(f"{metric}_stderr,{filt}")))
    order = {"acc": 0, "acc_norm": 1}
    return sorted(out, key=lambda m: (order.get(m[0], 2), m[0]))


def row(task: str, metric: str, value: Any, stderr: Any, num_fewshot: int, harness: str) -> dict:
    return {
        "name": task,
        "metric": metric,
        "value": float(value),
        "stderr": as_float(stderr),
        "num_fewshot": num_fewshot,
        "harness": harness,
    }


MC_METRICS = ("acc", "acc_norm", "p_correct")  # the metrics of a multiple-choice task that chance bounds


def chance_accuracy(samples: list[dict]) -> float:
    """The accuracy of guessing on multiple-choice samples: the mean over items of 1 / choices (one scored
    continuation per choice; acc_mutual_info scores each twice)."""
    counts = [len(s.get("filtered_resps") or []) // (2 if "acc_mutual_info" in s.get("metrics", []) else 1)
              for s in samples]  # fmt: skip
    return mean([1 / n for n in counts if n])


def p_correct(sample: dict) -> float | None:
    """Softmax probability of the gold choice from one lm-eval multiple-choice sample; None if n/a.

    `filtered_resps` holds one (log-likelihood, is_greedy) pair per choice, in choice order; `target`
    is the gold index (or the gold choice's text, which is matched against the scored continuations).
    """
    resps = sample.get("filtered_resps") or []
    try:
        lls = [float(resp[0]) for resp in resps]
    except (TypeError, ValueError, IndexError):
        return None  # not log-likelihoods: a generation task
    if "acc_mutual_info" in sample.get("metrics", []):
        lls = lls[: len(lls) // 2]  # the second half are the unconditional log-likelihoods
    gold = sample.get("target")
    if isinstance(gold, str) and not gold.isdigit():
        continuations = [args[1].strip() for args in sample.get("arguments", [])[: len(lls)]]
        gold = continuations.index(gold.strip()) if gold.strip() in continuations else None
    elif isinstance(gold, str):
        gold = int(gold)
    if isinstance(gold, bool) or not isinstance(gold, int) or not 0 <= gold < len(lls):
        return None  # several gold answers or none: no single probability to report
    top = max(lls)
    weights = [math.exp(ll - top) for ll in lls]
    return weights[gold] / sum(weights)


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def stderr_of_mean(values: list[float]) -> float | None:
    """Sample standard deviation over sqrt(n): what lm-eval reports as the stderr of acc."""
    n = len(values)
    if n < 2:
        return None
    mu = mean(values)
    return math.sqrt(sum((v - mu) ** 2 for v in values) / (n - 1) / n)


def as_float(value: Any) -> float | None:
    """lm-eval's stderr, or None where it has none ('N/A', NaN)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def write_samples(samples_dir: Path, task: str, shots: int, samples: list[dict], p_per_item: list, meta: dict) -> None:
    from lm_eval.utils import handle_non_serializable

    samples_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{task}-{shots}shot"
    lines = "".join(
        json.dumps({**sample, "p_correct": p}, default=handle_non_serializable, ensure_ascii=False) + "\n"
        for sample, p in zip(samples, p_per_item, strict=True)
    )
    write_text(samples_dir / f"{stem}.samples.jsonl", lines)
    write_text(
        samples_dir / f"{stem}.json",
        json.dumps(meta, indent=2, default=handle_non_serializable, sort_keys=True) + "\n",
    )
