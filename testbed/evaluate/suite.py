"""Downstream evaluation of a run's checkpoints with a suite from configs/eval/, skipping what is done."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from testbed.checkpoint import list_steps, step_dir
from testbed.config import CONFIG_ROOT, _fail, _merge, _read_yaml, load_run_config
from testbed.data.tokenizer import cache_root
from testbed.errors import TestbedError
from testbed.ladder import plan_run
from testbed.results import append_rows, read_rows
from testbed.train import base_row


@dataclass
class Suite:
    tasks: list[str] = field(default_factory=list)
    generator: str = "synthetic"  # who writes the task files
    num_fewshot: int = 0
    batch_size: int = 32
    seed: int = 0


def load_suite(name: str) -> Suite:
    path = CONFIG_ROOT / "eval" / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise TestbedError(f"--suite {name!r}: unknown suite (known: {', '.join(known)})")
    suite = _merge(Suite, str(path), [_read_yaml(path)])
    if suite.generator != "synthetic":
        raise _fail(str(path), "generator", suite.generator, "known generators: synthetic")
    return suite


def task_dir(suite: Suite, world_seed: int) -> tuple[Path, list[str]]:
    """Write (once) the suite's task files; returns the lm-eval include dir and the lm-eval task names."""
    from testbed.data.synthetic import write_task_suite

    out = cache_root() / "tasks" / f"{suite.generator}-{world_seed}"
    written = write_task_suite(out, seed=world_seed)
    unknown = [t for t in suite.tasks if t not in written]
    if unknown:
        raise TestbedError(f"suite task(s) {unknown} not among the generated tasks {sorted(written)}")
    return out, [Path(written[t]).stem for t in suite.tasks]


def eval_run(run_dir: Path, suite_name: str, steps: str = "final") -> int:
    """Evaluate the run's HF checkpoints (the final one, or all); returns the number of rows written."""
    from testbed.evaluate.harness import evaluate_checkpoint

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise TestbedError(f"{run_dir}: not a run directory (no config.yaml)")
    available = list_steps(run_dir / "hf")
    if not available:
        raise TestbedError(f"{run_dir}: no checkpoints under hf/")
    config = load_run_config(run_dir / "config.yaml")
    plan = plan_run(config)
    suite = load_suite(suite_name)
    include, lm_tasks = task_dir(suite, config.data.world_seed)
    harness = f"lm_eval=={metadata.version('lm_eval')}"
    done = {(r["step"], r["name"], r["num_fewshot"], r["harness"]) for r in read_rows(run_dir) if r["kind"] == "task"}
    selected = available if steps == "all" else [available[-1]]
    written = 0
    for step in selected:
        todo = [t for t in lm_tasks if (step, t, suite.num_fewshot, harness) not in done]
        if not todo:
            continue
        measured = evaluate_checkpoint(step_dir(run_dir / "hf", step), include, todo,
                                       num_fewshot=suite.num_fewshot, batch_size=suite.batch_size,
                                       seed=suite.seed, samples_dir=run_dir / "eval_samples" / f"step_{step:06d}")
        base = base_row(config, plan, step)
        rows = [dict(base, kind="task", **m) for m in measured]
        append_rows(run_dir, rows)
        written += len(rows)
    return written
