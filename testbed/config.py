"""Typed configuration: the dataclass schemas of runs and sweeps, merged from YAML and `key=value` overrides.

A leaf: it imports only paths and config_layers (the merging machinery). Every problem is raised as a
TestbedError naming the file, the key and the value, before anything runs. Each schema checks its own fields in
`__post_init__` and raises a ConfigValueError, which `load_schema` turns into one line with the full dotted key.
The checks of a run against the registries (architectures, ladder rungs, data sources) are one step above, in
`testbed.resolve`. Values that follow from others (tokens, batch, LR, warmup) are not configured here but
derived in `testbed.ladder`, so they are never typed twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed.config_layers import (
    ConfigValueError,
    check_choice,
    check_name,
    check_number,
    config_error,
    config_value,
    load_schema,
    parse_overrides,
    read_yaml,
)
from testbed.paths import config_names, find_config

MAX_MULTIPLIER = 10000.0  # tokens per parameter; the over-training study's largest is 640
MAX_SEED = 2**32 - 1
EVAL_STEPS = ("final", "all")  # which exported checkpoints a sweep's eval stage scores


# SDPA backends a run can pin (torch.nn.attention.SDPBackend members): train.attention
ATTENTION_BACKENDS = {
    "flash": "FLASH_ATTENTION",
    "efficient": "EFFICIENT_ATTENTION",
    "cudnn": "CUDNN_ATTENTION",
    "math": "MATH",
}


@dataclass
class ModelConfig:
    arch: str = "decoder"  # testbed/arch.py: decoder (Llama; Qwen3 with qk_norm) | t5 (T5ForConditionalGeneration)
    ladder: str = "micro"  # configs/ladders/<ladder>.yaml
    size: str = "s1"  # a rung of that ladder (of its `sizes` for the decoder, `t5_sizes` for t5)
    qk_norm: bool = False  # decoder only: RMSNorm on queries and keys (as the over-training study)

    def __post_init__(self) -> None:
        # `arch`, and the options it accepts (qk_norm), are checked against testbed.arch's registry in testbed.resolve
        check_name("ladder", self.ladder)
        check_name("size", self.size)


@dataclass
class DataConfig:
    name: str = "syn_en"  # the mixture's name: the `dataset` of every result row
    # source -> weight; empty: the mixture registered under `name` in configs/data/.
    # (YAML layers merge dicts key by key, so a default here would leak into every mixture.)
    mixture: dict[str, float] = field(default_factory=dict)
    validation: list[str] = field(default_factory=list)  # sources to validate on; empty: the mixture's + tokenizer's
    world_seed: int = 0  # seed of the synthetic world and of the shared tokenizer
    tokenizer: str = ""  # tokenizer corpus (configs/data `tokenizers:`); empty: the first that covers the mixture
    val_tokens: int = 8192  # tokens per validation set
    # a finite source smaller than its share of the budget is repeated (epochs > 1) instead of refused
    allow_repeat: bool = False

    def __post_init__(self) -> None:
        check_name("name", self.name)
        if not isinstance(self.allow_repeat, bool):
            raise ConfigValueError("allow_repeat", self.allow_repeat, "true or false")
        check_name("tokenizer", self.tokenizer or None)
        check_number("world_seed", self.world_seed, 0, MAX_SEED)
        check_number("val_tokens", self.val_tokens, 0, low_open=True)
        for source, weight in self.mixture.items():
            check_number(f"mixture.{source}", weight, 0)


@dataclass
class TrainConfig:
    multiplier: float = 20.0  # tokens per parameter: D = multiplier * N
    seed: int = 0
    schedule: str = "cosine"  # cosine | wsd (warmup-stable-decay; runs differing in multiplier share a trunk)
    cooldown_fraction: float = 0.2  # wsd: share of the run's steps spent cooling down
    cooldown_shape: str = "linear"  # wsd: linear | 1-sqrt
    z_loss: float = 0.0  # weight of z-loss, logsumexp(logits)^2 per token (the over-training study: 1e-4)
    micro_batch_size: int | None = None  # at most this many sequences per device per forward; None: the ladder's
    seq_len: int | None = None  # None: the ladder's; never longer than the model's context
    batch_size: int | None = None  # sequences per optimizer step; None: the ladder's rule
    lr: float | None = None  # peak learning rate; None: the ladder's rule
    lr_factor: float = 1.0  # multiplies the peak LR, whatever set it: an LR sweep around a ladder's rule
    final_lr_ratio: float = 0.01  # cosine ends at lr * ratio (3e-5 / 3e-3 in the over-training study)
    warmup_steps: int | None = None  # None: the ladder's rule
    weight_decay: float = 0.033
    beta2: float = 0.95
    grad_clip: float = 1.0
    log_spaced_checkpoints: int = 6  # extra checkpoints at D/2, D/4, ... (plus the final one)
    checkpoints_per_doubling: int = 1  # 2: also at D/sqrt(2), D/(2 sqrt(2)), ...: denser curves, same range
    keep_train_states: int = 1  # newest full training states kept for resume
    device: str = "auto"  # auto | cpu | cuda (bf16 autocast on cuda)
    distributed: str = "ddp"  # ddp | fsdp (several processes under `accelerate launch`; fsdp for the largest rungs)
    compile: bool = False  # torch.compile the model
    # scaled_dot_product_attention's kernel: auto (PyTorch picks per shape) or one of ATTENTION_BACKENDS,
    # which a shape that backend cannot take turns into an error instead of a silent fallback
    attention: str = "auto"
    threads: int = 0  # torch CPU threads; 0: leave torch's default

    def __post_init__(self) -> None:
        check_number(
            "multiplier",
            self.multiplier,
            0,
            MAX_MULTIPLIER,
            low_open=True,
            note=" (tokens per parameter; the over-training study's largest is 640)",
        )
        check_number("seed", self.seed, 0, MAX_SEED)
        check_choice("schedule", self.schedule, ("cosine", "wsd"), " schedules")
        check_number("cooldown_fraction", self.cooldown_fraction, 0, 1, low_open=True, high_open=True)
        check_choice("cooldown_shape", self.cooldown_shape, ("linear", "1-sqrt"), " shapes")
        check_number("z_loss", self.z_loss, 0)
        for key in ("micro_batch_size", "seq_len", "batch_size", "lr", "lr_factor"):
            check_number(key, getattr(self, key), 0, low_open=True)
        check_number("warmup_steps", self.warmup_steps, 0)
        check_number("final_lr_ratio", self.final_lr_ratio, 0, 1)
        check_number("weight_decay", self.weight_decay, 0)
        check_number("beta2", self.beta2, 0, 1, high_open=True)
        check_number("grad_clip", self.grad_clip, 0, note=" (0: no clipping)")
        check_number("log_spaced_checkpoints", self.log_spaced_checkpoints, 0, 64)
        check_number("checkpoints_per_doubling", self.checkpoints_per_doubling, 1, 8)
        check_number("keep_train_states", self.keep_train_states, 1, note=" (a run resumes from the newest)")
        check_number("threads", self.threads, 0, 4096, note=" (0: torch's default)")
        check_choice("device", self.device, ("auto", "cpu", "cuda"), " devices")
        check_choice("distributed", self.distributed, ("ddp", "fsdp"))
        check_choice("attention", self.attention, ("auto", *ATTENTION_BACKENDS), " attention backends")


@dataclass
class RunConfig:
    sweep: str = "adhoc"
    out_dir: str = "runs"  # the run lives in <out_dir>/<sweep>/<run_id>
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    track: str = "wandb"  # wandb (offline unless WANDB_MODE=online) | none; env TESTBED_TRACK overrides
    # The keys a sweep's grid block varies for this run (its `axes`): each adds `-<short name><value>` to the
    # run id (testbed.ladder.run_id). Empty (every run not from an axis): the id has no suffix.
    axes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_name("sweep", self.sweep)  # out_dir is a path, free
        check_choice("track", self.track, ("wandb", "none"), " trackers")
        for i, key in enumerate(self.axes):
            try:
                value = config_value(self, key)
            except KeyError:
                value = self  # not a key: refused below
            if hasattr(value, "__dataclass_fields__") or isinstance(value, dict):
                raise ConfigValueError(f"axes[{i}]", key, "not a key of the run config that holds a value")


# Run keys the grid's own lists set (and the sweep itself): never an axis.
GRID_KEYS = {
    "model.size": "sizes",
    "data.name": "datasets",
    "data.mixture": "datasets",
    "train.multiplier": "multipliers",
    "train.seed": "seeds",
    "sweep": "name",
    "out_dir": "out_dir",
    "axes": "axes",
}
GRID_LISTS = ("sizes", "datasets", "multipliers", "seeds")


def _overlaps(key: str, other: str) -> bool:
    """One of the dotted keys is the other or lies under it (`data` and `data.name`)."""
    return key == other or key.startswith(f"{other}.") or other.startswith(f"{key}.")


@dataclass
class GridBlock:
    """One rectangular block of a sweep: every combination of its lists is a run."""

    sizes: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    multipliers: list[float] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0])
    # Any other run key (dotted, as on the command line: train.lr, train.batch_size, model.qk_norm) -> its values;
    # every combination is a run, and each value is checked as a command-line override is (testbed.sweep.expand).
    axes: dict[str, list[Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:  # empty lists are refused by load_sweep_config
        for key, values in self.axes.items():
            owner = next((GRID_KEYS[k] for k in GRID_KEYS if _overlaps(k, key)), None)
            if owner is not None:
                where = f"the grid block's `{owner}`" if owner in GRID_LISTS else "the sweep"
                raise ConfigValueError(f"axes.{key}", values, f"set by {where}, not an axis")
            if not values:
                raise ConfigValueError(f"axes.{key}", values, "must list at least one value")
        for key in ("sizes", "datasets"):
            for i, name in enumerate(getattr(self, key)):
                check_name(f"{key}[{i}]", name)
        for i, multiplier in enumerate(self.multipliers):
            check_number(
                f"multipliers[{i}]",
                multiplier,
                0,
                MAX_MULTIPLIER,
                low_open=True,
                note=" (tokens per parameter; the over-training study's largest is 640)",
            )
        for i, seed in enumerate(self.seeds):
            check_number(f"seeds[{i}]", seed, 0, MAX_SEED)


@dataclass
class SlurmConfig:
    """How the slurm backend asks for resources; each run's share follows from its planned FLOPs."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    device: str = "h100"  # a key of testbed/devices.py: estimates a run's hours
    max_gpus: int = 8  # a run gets 1, 2, 4 ... GPUs (one node) until it fits target_hours; 0: CPU-only jobs
    target_hours: float = 12.0
    cpus_per_gpu: int = 8  # with max_gpus=0: CPUs per run
    mem_gb_per_gpu: float = 64.0  # with max_gpus=0: memory per run
    time_factor: float = 1.5  # time limit = estimate x factor + 15 min for data and eval, bucketed
    max_hours: float = 48.0  # time limit cap: longer runs are requeued and resume from their checkpoint
    array_parallelism: int = 64
    setup: list[str] = field(default_factory=list)  # shell lines before each job (module load ...)
    additional: dict[str, str] = field(default_factory=dict)  # extra #SBATCH flags

    def __post_init__(self) -> None:
        check_number("max_gpus", self.max_gpus, 0)
        check_number("cpus_per_gpu", self.cpus_per_gpu, 1)
        check_number("array_parallelism", self.array_parallelism, 1)
        for key in ("target_hours", "mem_gb_per_gpu", "time_factor", "max_hours"):
            check_number(key, getattr(self, key), 0, low_open=True)


@dataclass
class GpuConfig:
    """How the local and slurm backends share a GPU between runs (testbed/sweep/packing.py)."""

    # runs side by side on one GPU, each its own process: auto (sized per run from the device's memory and the
    # measured packing gain) or a number that forces it
    runs_per_device: str = "auto"
    max_runs_per_device: int = 4  # the most `auto` packs where no packing is measured for the rung
    mps: bool = False  # local backend: start CUDA MPS for packed runs where nvidia-cuda-mps-control exists

    def __post_init__(self) -> None:
        self.runs_per_device = str(self.runs_per_device)
        if self.runs_per_device != "auto" and not (self.runs_per_device.isdigit() and int(self.runs_per_device)):
            raise ConfigValueError("runs_per_device", self.runs_per_device, "must be auto or a positive integer")
        check_number("max_runs_per_device", self.max_runs_per_device, 1, 64)


@dataclass
class FinetuneSweepConfig:
    """Translation finetuning of every trained run of a sweep (`testbed finetune SWEEP.yaml`)."""

    tasks: list[str] = field(default_factory=list)  # translation tasks (testbed/translation/); empty: none
    sizes: list[int] = field(default_factory=list)  # finetuning-set sizes in tokens
    steps: str = "all"  # final | all: which pretraining checkpoints
    protocol: str = "finetune"  # configs/eval/<protocol>.yaml

    def __post_init__(self) -> None:
        for i, task in enumerate(self.tasks):
            check_name(f"tasks[{i}]", task)
        for i, size in enumerate(self.sizes):
            check_number(f"sizes[{i}]", size, 0, low_open=True)
        if self.tasks and not self.sizes:
            raise ConfigValueError("sizes", [], "finetuning needs at least one size (tokens)")
        check_choice("steps", self.steps, ("final", "all"))
        check_name("protocol", self.protocol)


@dataclass
class SweepConfig:
    name: str = "sweep"
    out_dir: str = "runs"
    defaults: RunConfig = field(default_factory=RunConfig)  # applied to every run before its grid values
    grid: list[GridBlock] = field(default_factory=list)
    eval_suite: str | None = None  # configs/eval/<suite>.yaml, evaluated on each finished run
    eval_suites: dict[str, str] = field(default_factory=dict)  # dataset -> its own suite (else eval_suite)
    # which exported checkpoints the eval stage scores: final | all (every log-spaced one too: (loss, error)
    # points along each run for analyze replicate's Err(L) fit; already scored ones are never redone)
    eval_steps: str = "final"
    cpu_workers: int = 1  # local backend without GPUs: runs side by side, one torch thread each
    # Grid datasets may be roles (c4, rpj, rw) that `corpora[data]` maps to mixtures; data=None: mixture names.
    data: str | None = None
    corpora: dict[str, dict[str, str]] = field(default_factory=dict)
    slurm: SlurmConfig = field(default_factory=SlurmConfig)
    gpu: GpuConfig = field(default_factory=GpuConfig)
    finetune: FinetuneSweepConfig = field(default_factory=FinetuneSweepConfig)

    def __post_init__(self) -> None:  # an empty grid, unknown corpora and suites: load_sweep_config
        check_name("name", self.name)  # out_dir is a path, free
        check_name("eval_suite", self.eval_suite)
        for dataset, suite in self.eval_suites.items():
            check_name(f"eval_suites.{dataset}", suite)
        check_choice("eval_steps", self.eval_steps, EVAL_STEPS)
        check_number("cpu_workers", self.cpu_workers, 1)
        check_name("data", self.data)
        for corpus, roles in self.corpora.items():
            check_name(f"corpora.{corpus}", corpus)
            for role, dataset in roles.items():
                check_name(f"corpora.{corpus}.{role}", role)
                check_name(f"corpora.{corpus}.{role}", dataset)


def load_sweep_config(path: str | Path, overrides: Sequence[str] = ()) -> SweepConfig:
    """A sweep from YAML (a path, or the name of a sweeps/<name>.yaml in the config directories). Overrides
    address the sweep (`name=...`) or every run (`defaults.train.seed=1`)."""
    path = Path(path)
    if not path.is_file() and path.suffix not in (".yaml", ".yml"):
        path = find_config("sweeps", str(path)) or path
    layers = [read_yaml(path)]
    if overrides:
        layers.append(parse_overrides("command line", overrides))
    source = f"{path} + command line" if overrides else str(path)
    sweep = load_schema(SweepConfig, source, layers)  # also checks `defaults`, every grid block, slurm, finetune
    if not sweep.grid:
        raise config_error(source, "grid", [], "a sweep needs at least one grid block")
    if sweep.defaults.axes:
        raise config_error(source, "defaults.axes", sweep.defaults.axes, "set from the grid blocks' axes")
    for i, block in enumerate(sweep.grid):
        for key in ("sizes", "datasets", "multipliers"):
            if not getattr(block, key):
                raise config_error(source, f"grid[{i}].{key}", [], "must list at least one value")
    if sweep.data is not None and sweep.data not in sweep.corpora:
        raise config_error(source, "data", sweep.data, f"no corpora.{sweep.data} (known: {', '.join(sweep.corpora)})")
    named = {"eval_suite": sweep.eval_suite} | {f"eval_suites.{d}": s for d, s in sweep.eval_suites.items()}
    for key, name in named.items():
        if name is not None and find_config("eval", name) is None:
            raise config_error(
                source, key, name, f"no suite file eval/{name}.yaml (known: {', '.join(config_names('eval'))})"
            )
    return sweep
