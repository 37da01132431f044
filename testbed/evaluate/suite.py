"""Downstream evaluation of a run's checkpoints with a suite from configs/eval/, skipping what is done.

A suite is a YAML file (configs/eval/<name>.yaml, or any path):

    generator: synthetic | cloze | none   # synthetic: the world's tasks are written to the cache first;
                                  # cloze: next-word items from the test split of `source` (testbed.evaluate.cloze);
                                  # none: lm-eval tasks by name (built-in ones need the hub)
    source: docs_en               # cloze: a data-registry source; its test split is read
    language: en                  # the language of the items (default: synthetic syn_en, cloze its source's;
                                  # none: unknown unless given); a model trained on none of it is warned about
    items: 1000                   # items per generated task (default: each generator's own)
    world: {persons: 30000, zipf: 1.5}  # synthetic: the world the items are about, as the training source's
                                  # `world:` (default: the built-in world); a model trained on another is warned about
    include_path: null            # optional dir of task YAMLs looked up before lm-eval's built-ins
    num_fewshot: 0                # default for entries that do not say
    batch_size: 32
    seed: 0
    tasks:
      - smooth                                                  # row name = lm-eval task name
      - {name: inverse, intended: inverse}                      # lm_eval defaults to the name
      - {name: home_city, items: 1000}                          # a generated task's own item count
      - {name: hellaswag_zeroshot, lm_eval: hellaswag, num_fewshot: 0}
      - {name: jeopardy, unmapped: "no lm-eval task: MosaicML's Jeopardy subset"}

Rows are named by the entry's `name` (for the Gadre suites: the paper's task name, so hellaswag with 10
shots and hellaswag_zeroshot stay apart). Unmapped entries are listed, never evaluated, never dropped.
`intended` (one of the classifier's classes, analysis.verdicts.CLASSES) is the class a designed task is meant
to show; it goes into the task's rows (column `intended`) so the analysis can score the design.

Each task is evaluated on its own with the checkpoint's model loaded once (`lm=`): a task that fails is
recorded in `<run_dir>/eval_failures.json` (step, task, shots, harness, reason) and the others still run;
a later success removes its record. When every attempted task fails on bad input the call raises
TestbedError (the command's exit code 2); when only some fail, `testbed eval` exits 1.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from analysis.registry import Registry
from analysis.verdicts import CLASSES
from testbed.checkpoint import step_dir
from testbed.errors import TestbedError, one_line
from testbed.ladder import plan_run
from testbed.paths import cache_root, config_names, find_config
from testbed.rundir import RunDir, StageFailures

FAILURES_FILE = RunDir.FAILURES["eval"]
SUITE_KEYS = {
    "generator",
    "include_path",
    "num_fewshot",
    "batch_size",
    "seed",
    "tasks",
    "description",
    "source",
    "items",
    "language",
    "world",
}
CLOZE_ITEMS = 1000
ITEM_GENERATORS = ("synthetic", "cloze")  # the generators that draw their items (an item count applies)
TASK_KEYS = {"name", "lm_eval", "num_fewshot", "unmapped", "note", "intended", "items"}


@dataclass(frozen=True)
class TaskSpec:
    name: str  # the rows' name
    lm_eval: str | None  # the lm-eval task; None: unmapped
    num_fewshot: int
    unmapped: str | None = None  # why there is no lm-eval counterpart
    note: str | None = None  # how the counterpart differs from the original
    intended: str | None = None  # the class (analysis.verdicts.CLASSES) a designed task is meant to show
    items: int | None = None  # a generated task's items, instead of the suite's count


@dataclass
class Suite:
    name: str
    path: Path
    tasks: list[TaskSpec] = field(default_factory=list)
    generator: str = "synthetic"  # who writes the task files
    include_path: Path | None = None
    num_fewshot: int = 0
    batch_size: int = 32
    seed: int = 0
    source: str | None = None  # cloze: the data-registry source whose test split the items come from
    items: int | None = None  # items per generated task; None: the generator's default
    language: str | None = None  # the language of the items (a data-registry `language`); None: not known
    world: dict = field(default_factory=dict)  # synthetic: knobs of the world the items are about (WORLD_KNOBS)

    @property
    def mapped(self) -> list[TaskSpec]:
        return [t for t in self.tasks if t.lm_eval is not None]

    @property
    def unmapped(self) -> list[TaskSpec]:
        return [t for t in self.tasks if t.lm_eval is None]


def suite_path(name: str | Path) -> Path:
    """eval/<name>.yaml of the config directories (testbed.paths), or `name` itself when it is a YAML path."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise TestbedError(f"--suite {name}: no such suite file")
        return path
    found = find_config("eval", str(name))
    if found is None:
        raise TestbedError(f"--suite {name!r}: unknown suite (known: {', '.join(suite_names())})")
    return found


def suite_names() -> list[str]:
    """The eval suites of the config directories (eval/*.yaml but the finetuning protocols, finetune*.yaml)."""
    return [n for n in config_names("eval") if not n.startswith("finetune")]


def _int(where: str, value: object, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise TestbedError(f"{where}={value!r}: must be an integer >= {minimum}")
    return value


def load_suite(name: str | Path) -> Suite:
    path = suite_path(name)
    try:
        raw = OmegaConf.to_container(OmegaConf.load(path), resolve=True) or {}
    except Exception as err:  # yaml parser errors carry multi-line context
        raise TestbedError(f"{path}: not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(raw, Mapping):
        raise TestbedError(f"{path}: a suite is a mapping with at least `tasks`")
    unknown = set(raw) - SUITE_KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise TestbedError(f"{path}: {key}: unknown key (known: {', '.join(sorted(SUITE_KEYS))})")
    generator = raw.get("generator", "synthetic")
    if generator not in GENERATORS:
        raise TestbedError(f"{path}: generator={generator!r}: known generators: {', '.join(GENERATORS.names())}")
    source = raw.get("source")
    if (generator == "cloze") != (source is not None) or not isinstance(source, str | None):
        raise TestbedError(f"{path}: source={source!r}: a cloze suite names a data source, other suites none")
    items = None if raw.get("items") is None else _int(f"{path}: items", raw["items"], 1)
    shots = _int(f"{path}: num_fewshot", raw.get("num_fewshot", 0))
    include = raw.get("include_path")
    if include is not None:
        include = Path(include).expanduser()
        include = include if include.is_absolute() else (path.parent / include)
        if not include.is_dir():
            raise TestbedError(f"{path}: include_path={str(include)!r}: not a directory")
    tasks: list[TaskSpec] = []
    seen: set[tuple[str, int]] = set()
    for i, entry in enumerate(raw.get("tasks") or []):
        where = f"{path}: tasks[{i}]"
        if isinstance(entry, str):
            entry = {"name": entry, "lm_eval": entry}
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str) or not entry["name"]:
            raise TestbedError(f"{where}={entry!r}: a task is a name or {{name, lm_eval, num_fewshot, intended}}")
        unknown = set(entry) - TASK_KEYS
        if unknown:
            key = sorted(unknown)[0]
            raise TestbedError(f"{where}.{key}: unknown key (known: {', '.join(sorted(TASK_KEYS))})")
        mapped, why = entry.get("lm_eval"), entry.get("unmapped")
        if mapped is not None and why is not None:
            raise TestbedError(f"{where} ({entry['name']}): give lm_eval (the task) or unmapped (why not), not both")
        if mapped is None and why is None:
            mapped = entry["name"]
        intended = entry.get("intended")
        if intended is not None and intended not in CLASSES:
            raise TestbedError(f"{where}.intended={intended!r}: must be one of {', '.join(CLASSES)}")
        task_shots = _int(f"{where}.num_fewshot", entry.get("num_fewshot", shots))
        own_items = entry.get("items")
        if own_items is not None:
            own_items = _int(f"{where}.items", own_items, 1)
            if generator not in ITEM_GENERATORS:
                raise TestbedError(
                    f"{where}.items={own_items}: only generated tasks ({', '.join(ITEM_GENERATORS)}) have items"
                )
        spec = TaskSpec(entry["name"], mapped, task_shots, why, entry.get("note"), intended, own_items)
        if spec.lm_eval is not None and any(t.lm_eval == spec.lm_eval and t.items != spec.items for t in tasks):
            raise TestbedError(f"{where}.items: task {spec.lm_eval!r} is listed with two item counts")
        if (spec.name, spec.num_fewshot) in seen:
            raise TestbedError(f"{where}: task {spec.name!r} with {spec.num_fewshot} shots listed twice")
        seen.add((spec.name, spec.num_fewshot))
        tasks.append(spec)
    if not tasks:
        raise TestbedError(f"{path}: tasks: a suite lists at least one task")
    world = _world_knobs(path, generator, raw.get("world"))
    language = raw.get("language", _default_language(generator, source, path))
    if language is not None and not isinstance(language, str):
        raise TestbedError(f"{path}: language={language!r}: a language name, as the data registry's `language`")
    return Suite(
        name=path.stem,
        language=language,
        path=path,
        tasks=tasks,
        generator=generator,
        include_path=include,
        num_fewshot=shots,
        batch_size=_int(f"{path}: batch_size", raw.get("batch_size", 32), 1),
        seed=_int(f"{path}: seed", raw.get("seed", 0)),
        source=source,
        items=items,
        world=world,
    )


def _world_knobs(path: Path, generator: str, world: object) -> dict:
    """A synthetic suite's world knobs, checked as a data source's `world:` is; a knob spelled out at its default
    is dropped, so that the default world has one spelling (its task cache dir among them)."""
    from testbed.data.synthetic_world import WORLD_KNOBS, SyntheticError, check_knobs

    if world is None:
        return {}
    if generator != "synthetic" or not isinstance(world, Mapping):
        raise TestbedError(f"{path}: world={world!r}: a synthetic suite's world knobs: {{persons: N, zipf: s}}")
    try:
        return {knob: value for knob, value in check_knobs(world).items() if value != WORLD_KNOBS[knob]}
    except SyntheticError as err:
        raise TestbedError(f"{path}: world.{err}") from None


# The synthetic world's tasks are written in its English (testbed.data.synthetic_tasks.task_items)
SYNTHETIC_TASK_LANGUAGE = "syn_en"


def _default_language(generator: str, source: str | None, path: Path) -> str | None:
    """The language a suite's items are in when the suite does not say: the synthetic world's tasks are in
    syn_en, cloze items in their source's language; lm-eval's own tasks: not known."""
    if generator == "synthetic":
        return SYNTHETIC_TASK_LANGUAGE
    if generator == "cloze":
        from testbed.data.sources import known_sources

        found = known_sources().get(str(source))
        if found is None:
            raise TestbedError(f"{path}: source={source!r}: unknown data source (known: {', '.join(known_sources())})")
        return found.language
    return None


def task_dir(suite: Suite, world_seed: int) -> Path:
    """The lm-eval include dir of the suite, written by its generator (GENERATORS)."""
    return GENERATORS.get(suite.generator)(suite, world_seed)


def _synthetic_tasks(suite: Suite, world_seed: int) -> Path:
    """The synthetic world's tasks the suite lists, written to the cache."""
    from testbed.data.synthetic import TASKS, write_task_suite

    unknown = [t.lm_eval for t in suite.mapped if t.lm_eval not in TASKS]
    if unknown:
        raise TestbedError(f"{suite.path}: task(s) {unknown} not among the generated tasks {TASKS.names()}")
    # one folder per item count and world: suites of different sizes may be written at the same time
    knobs = "".join(f"-{knob}{value}" for knob, value in sorted(suite.world.items()))
    out = cache_root() / "tasks" / (f"synthetic-{world_seed}{knobs}" + _counts_suffix(suite))
    for n_items, tasks in _tasks_by_items(suite).items():
        write_task_suite(out, seed=world_seed, tasks=tasks, n_items=n_items, world=suite.world)
    return out


def _tasks_by_items(suite: Suite) -> dict[int | None, list[str]]:
    """The suite's generated tasks by their item count (a task's own, else the suite's; None: the default)."""
    groups: dict[int | None, list[str]] = {}
    for task in suite.mapped:
        groups.setdefault(task.items or suite.items, []).append(str(task.lm_eval))
    return groups


def _counts_suffix(suite: Suite) -> str:
    """The part of a task cache dir's name that says the item counts: suites of different counts may be
    written at the same time, so each combination gets its own dir."""
    own = sorted({(str(t.lm_eval), t.items) for t in suite.mapped if t.items})
    return (f"-n{suite.items}" if suite.items else "") + "".join(f"-{task}{n}" for task, n in own)


def _cloze_tasks(suite: Suite, world_seed: int) -> Path:
    """Every listed task as cloze items from the test split of the suite's source (never its train split)."""
    from testbed.data.readers import documents
    from testbed.data.sources import known_sources
    from testbed.evaluate.cloze import cloze_items
    from testbed.evaluate.tasks import write_mc_task

    sources = known_sources()
    if suite.source not in sources:
        raise TestbedError(f"{suite.path}: source={suite.source!r}: unknown data source (known: {', '.join(sources)})")
    where = f"{suite.path}: source {suite.source}, test split"
    out = cache_root() / "tasks" / (f"cloze-{suite.source}-{suite.seed}" + _counts_suffix(suite))
    texts = list(documents(sources[suite.source], "test", world_seed))  # read once for every item count
    for n_items, tasks in _tasks_by_items(suite).items():
        items = cloze_items(texts, n_items or CLOZE_ITEMS, suite.seed, where)
        for task in tasks:
            write_mc_task(task, items, out)
    return out


def _lm_eval_tasks(suite: Suite, world_seed: int) -> Path:
    """lm-eval's own tasks: include_path, or an empty dir."""
    if suite.include_path is not None:
        return suite.include_path
    empty = cache_root() / "tasks" / "none"
    empty.mkdir(parents=True, exist_ok=True)
    return empty


# Who writes a suite's task files: one entry per `generator:` value, a function (suite, world_seed) -> the
# lm-eval include dir.
GENERATORS: Registry[Callable[[Suite, int], Path]] = Registry("suite generator", error=TestbedError)
GENERATORS.register("synthetic", _synthetic_tasks)
GENERATORS.register("cloze", _cloze_tasks)
GENERATORS.register("none", _lm_eval_tasks)


@dataclass
class EvalReport:
    written: int = 0
    failed: list[dict] = field(default_factory=list)  # this call's failures
    attempted: int = 0
    unmapped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # e.g. the suite's language is not the model's


def _failure_key(step: int, task: TaskSpec) -> str:
    return f"step_{step:06d}/{task.name}/{task.num_fewshot}shot"


def evaluate_run(run_dir: Path, suite: str | Path | Suite, steps: str = "final") -> EvalReport:
    """Evaluate the run's HF checkpoints (the final one, or all) task by task; see the module doc."""
    from testbed.evaluate.harness import harness_version, load_lm
    from testbed.evaluate.mismatch import language_mismatch, world_mismatch

    run = RunDir(run_dir)
    _, selected = run.exported_steps(steps)
    config = run.config()
    plan = plan_run(config)
    suite = suite if isinstance(suite, Suite) else load_suite(suite)
    include = task_dir(suite, config.data.world_seed)
    harness = harness_version()
    done = {(r["step"], r["name"], r["num_fewshot"], r["harness"]) for r in run.read_rows() if r["kind"] == "task"}
    failures = StageFailures(run, "eval")
    report = EvalReport(unmapped=[t.name for t in suite.unmapped])
    mismatches = [language_mismatch(suite.name, suite.language, config.data.name, config.data.mixture)]
    if suite.generator == "synthetic":
        mismatches.append(world_mismatch(suite.name, suite.world, config.data.name, config.data.mixture))
    for mismatch in filter(None, mismatches):  # one line now, and in every task's record of this call
        report.warnings.append(mismatch)  # (eval_samples/step_N/<task>-<k>shot.json)
        print(f"testbed: warning: {run.path}: {mismatch}", file=sys.stderr, flush=True)
    bad_input = 0
    for step in selected:
        todo = [t for t in suite.mapped if (step, t.name, t.num_fewshot, harness) not in done]
        if not todo:
            continue
        lm = load_lm(step_dir(run.hf, step), batch_size=suite.batch_size)  # a broken checkpoint stops the call: exit 2
        base = run.base_row(config, plan, step)
        for task in todo:
            report.attempted += 1
            record = _evaluate_task(run, step, task, suite, include, lm, base, harness, report.warnings)
            key = _failure_key(step, task)
            if isinstance(record, dict):  # a failure: recorded; the other tasks still run
                bad_input += record.pop("bad_input")
                report.failed.append(failures.record(key, record))
                continue
            report.written += record
            failures.clear(key)
    names = {t.name for t in suite.mapped}
    measured_before = any(key[1] in names and key[3] == harness for key in done)
    if report.attempted and len(report.failed) == report.attempted == bad_input and not measured_before:
        first = report.failed[0]
        raise TestbedError(
            f"{run.path}: every task failed ({len(report.failed)}); first: {first['task']}: "
            f"{first['reason']} (all in {run.failures_file('eval')})"
        )
    return report


def _evaluate_task(
    run: RunDir, step: int, task: TaskSpec, suite: Suite, include: Path, lm, base: dict, harness: str, notes: list[str]
) -> int | dict:
    """Evaluate one task on one checkpoint: the number of rows written, or the failure's record."""
    from testbed.evaluate.harness import evaluate_checkpoint

    assert task.lm_eval is not None  # only mapped tasks are evaluated
    try:
        measured = evaluate_checkpoint(
            step_dir(run.hf, step),
            include,
            [task.lm_eval],
            num_fewshot=task.num_fewshot,
            batch_size=suite.batch_size,
            seed=suite.seed,
            lm=lm,
            samples_dir=run.samples_dir(step),
            notes=notes,
        )
        if not measured:
            raise TestbedError(f"task {task.lm_eval!r} reported none of the metrics the table keeps")
    except Exception as err:
        bad_input = isinstance(err, TestbedError)
        return {
            "step": step,
            "task": task.name,
            "lm_eval": task.lm_eval,
            "num_fewshot": task.num_fewshot,
            "harness": harness,
            "suite": suite.name,
            "bad_input": bad_input,
            "reason": str(err).splitlines()[0] if bad_input else one_line(err),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
    rows = [dict(base, kind="task", **dict(m, name=task.name, intended=task.intended)) for m in measured]
    run.append_rows(rows)
    return len(rows)
