"""Typed configuration: dataclass schemas merged from YAML and `key=value` overrides with OmegaConf.

Every problem is raised as a TestbedError naming the file, the key and the value, before anything runs.
Values that follow from others (tokens, batch, LR, warmup) are not configured here but derived in
`testbed.ladder`, so they are never typed twice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from testbed.errors import TestbedError

CONFIG_ROOT = Path(__file__).resolve().parents[1] / "configs"


@dataclass
class ModelConfig:
    arch: str = "decoder"  # decoder (stock Llama; Qwen3 with qk_norm) | t5 (T5ForConditionalGeneration)
    ladder: str = "micro"  # configs/ladders/<ladder>.yaml
    size: str = "s1"  # a rung of that ladder (of its `sizes` for the decoder, `t5_sizes` for t5)
    qk_norm: bool = False  # decoder only: RMSNorm on queries and keys (as the over-training study)


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
    final_lr_ratio: float = 0.01  # cosine ends at lr * ratio (3e-5 / 3e-3 in the over-training study)
    warmup_steps: int | None = None  # None: the ladder's rule
    weight_decay: float = 0.033
    beta2: float = 0.95
    grad_clip: float = 1.0
    log_spaced_checkpoints: int = 6  # extra checkpoints at D/2, D/4, ... (plus the final one)
    keep_train_states: int = 1  # newest full training states kept for resume
    device: str = "auto"  # auto | cpu | cuda (bf16 autocast on cuda)
    distributed: str = "ddp"  # ddp | fsdp (several processes under `accelerate launch`; fsdp for the largest rungs)
    compile: bool = False  # torch.compile the model
    threads: int = 0  # torch CPU threads; 0: leave torch's default


@dataclass
class RunConfig:
    sweep: str = "adhoc"
    out_dir: str = "runs"  # the run lives in <out_dir>/<sweep>/<run_id>
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    track: str = "wandb"  # wandb (offline unless WANDB_MODE=online) | none; env TESTBED_TRACK overrides


@dataclass
class GridBlock:
    """One rectangular block of a sweep: every combination of its lists is a run."""

    sizes: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    multipliers: list[float] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0])


@dataclass
class SlurmConfig:
    """How the slurm backend asks for resources; each run's share follows from its planned FLOPs."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    device: str = "h100"  # row of testbed/sweep/plan.py DEVICES that estimates a run's hours
    max_gpus: int = 8  # a run gets 1, 2, 4 ... GPUs (one node) until it fits target_hours; 0: CPU-only jobs
    target_hours: float = 12.0
    cpus_per_gpu: int = 8  # with max_gpus=0: CPUs per run
    mem_gb_per_gpu: float = 64.0  # with max_gpus=0: memory per run
    time_factor: float = 1.5  # time limit = estimate x factor + 15 min for data and eval, bucketed
    max_hours: float = 48.0  # time limit cap: longer runs are requeued and resume from their checkpoint
    array_parallelism: int = 64
    setup: list[str] = field(default_factory=list)  # shell lines before each job (module load ...)
    additional: dict[str, str] = field(default_factory=dict)  # extra #SBATCH flags


@dataclass
class FinetuneSweepConfig:
    """Translation finetuning of every trained run of a sweep (`testbed finetune SWEEP.yaml`)."""

    tasks: list[str] = field(default_factory=list)  # translation tasks (testbed/evaluate/finetune.py); empty: none
    sizes: list[int] = field(default_factory=list)  # finetuning-set sizes in tokens
    steps: str = "all"  # final | all: which pretraining checkpoints
    protocol: str = "finetune"  # configs/eval/<protocol>.yaml


@dataclass
class SweepConfig:
    name: str = "sweep"
    out_dir: str = "runs"
    defaults: RunConfig = field(default_factory=RunConfig)  # applied to every run before its grid values
    grid: list[GridBlock] = field(default_factory=list)
    eval_suite: str | None = None  # configs/eval/<suite>.yaml, evaluated on each finished run
    cpu_workers: int = 1  # local backend without GPUs: runs side by side, one torch thread each
    # Grid datasets may be roles (c4, rpj, rw) that `corpora[data]` maps to mixtures; data=None: mixture names.
    data: str | None = None
    corpora: dict[str, dict[str, str]] = field(default_factory=dict)
    slurm: SlurmConfig = field(default_factory=SlurmConfig)
    finetune: FinetuneSweepConfig = field(default_factory=FinetuneSweepConfig)


def _fail(source: str, key: str, value: object, why: str) -> TestbedError:
    where = key if value is None else f"{key}={value!r}"
    return TestbedError(f"{source}: {where}: {why}")


def _merge(schema: type, source: str, layers: list) -> object:
    """Merge YAML/dict/dotlist layers onto a structured schema; OmegaConf errors become one line."""
    merged = OmegaConf.structured(schema)
    for layer in layers:
        try:
            merged = OmegaConf.merge(merged, layer)
        except OmegaConfBaseException as err:
            value = getattr(err, "value", None)
            message = str(err).splitlines()[0]
            raise _fail(source, err.full_key or "?", value, message) from None
    return OmegaConf.to_object(merged)


def _read_yaml(path: Path) -> object:
    if not path.is_file():
        raise TestbedError(f"{path}: no such config file")
    try:
        return OmegaConf.load(path)
    except Exception as err:  # yaml parser errors carry multi-line context
        raise TestbedError(f"{path}: not valid YAML: {str(err).splitlines()[0]}") from None


def _dotlist(source: str, overrides: list[str]) -> object:
    for item in overrides:
        if "=" not in item:
            raise _fail(source, item, None, "an override must read key=value")
    return OmegaConf.from_dotlist(list(overrides))


def load_run_config(path: str | Path | None, overrides: list[str] = ()) -> RunConfig:
    """A run config from a YAML file (or the defaults), with `key=value` overrides, validated."""
    layers = [] if path is None else [_read_yaml(Path(path))]
    source = " + ".join([str(path or "defaults")] + (["command line"] if overrides else []))
    if overrides:
        layers.append(_dotlist("command line", overrides))
    config = _merge(RunConfig, source, layers)
    if not config.data.mixture:
        from testbed.data.sources import mixture  # late: data imports config

        config.data.mixture = mixture(config.data.name, f"{source}: data.name")
    validate_run(config, source)
    return config


def load_sweep_config(path: str | Path, overrides: list[str] = ()) -> SweepConfig:
    """A sweep from YAML. Overrides address the sweep (`name=...`) or every run (`defaults.train.seed=1`)."""
    path = Path(path)
    layers = [_read_yaml(path)]
    if overrides:
        layers.append(_dotlist("command line", overrides))
    sweep = _merge(SweepConfig, str(path), layers)
    if sweep.cpu_workers < 1:
        raise _fail(str(path), "cpu_workers", sweep.cpu_workers, "must be at least 1")
    if not sweep.grid:
        raise _fail(str(path), "grid", [], "a sweep needs at least one grid block")
    for i, block in enumerate(sweep.grid):
        for key in ("sizes", "datasets", "multipliers"):
            if not getattr(block, key):
                raise _fail(str(path), f"grid[{i}].{key}", [], "must list at least one value")
    if sweep.data is not None and sweep.data not in sweep.corpora:
        raise _fail(str(path), "data", sweep.data, f"no corpora.{sweep.data} (known: {', '.join(sweep.corpora)})")
    if sweep.eval_suite is not None:
        suite = CONFIG_ROOT / "eval" / f"{sweep.eval_suite}.yaml"
        if not suite.is_file():
            raise _fail(str(path), "eval_suite", sweep.eval_suite, f"no suite file {suite}")
    if sweep.finetune.tasks and not sweep.finetune.sizes:
        raise _fail(str(path), "finetune.sizes", [], "finetuning needs at least one size (tokens)")
    if sweep.finetune.steps not in ("final", "all"):
        raise _fail(str(path), "finetune.steps", sweep.finetune.steps, "known: final, all")
    return sweep


def validate_run(config: RunConfig, source: str) -> None:
    """Reject impossible values with the key that holds them. Ladder and data names are checked too."""
    from testbed.data.sources import known_sources  # late: data imports config
    from testbed.ladder import load_ladder

    train, data, model = config.train, config.data, config.model
    if config.track not in ("wandb", "none"):
        raise _fail(source, "track", config.track, "known trackers: wandb, none")
    if model.arch not in ("decoder", "t5"):
        raise _fail(source, "model.arch", model.arch, "known architectures: decoder, t5")
    if model.qk_norm and model.arch != "decoder":
        raise _fail(source, "model.qk_norm", model.qk_norm, "qk-norm is a decoder option")
    ladder = load_ladder(model.ladder, source)
    rungs = ladder.rungs(model.arch)
    if model.size not in rungs:
        raise _fail(source, "model.size", model.size,
                    f"not a {model.arch} size of ladder {model.ladder!r} ({', '.join(rungs) or 'none'})")
    if not (train.multiplier > 0 and math.isfinite(train.multiplier)):
        raise _fail(source, "train.multiplier", train.multiplier, "must be a positive number")
    if train.schedule not in ("cosine", "wsd"):
        raise _fail(source, "train.schedule", train.schedule, "known schedules: cosine, wsd")
    if not 0 < train.cooldown_fraction < 1:
        raise _fail(source, "train.cooldown_fraction", train.cooldown_fraction, "must be within (0, 1)")
    if train.cooldown_shape not in ("linear", "1-sqrt"):
        raise _fail(source, "train.cooldown_shape", train.cooldown_shape, "known shapes: linear, 1-sqrt")
    if not (train.z_loss >= 0 and math.isfinite(train.z_loss)):
        raise _fail(source, "train.z_loss", train.z_loss, "must be a non-negative number")
    if train.distributed not in ("ddp", "fsdp"):
        raise _fail(source, "train.distributed", train.distributed, "known: ddp, fsdp")
    if train.device not in ("auto", "cpu", "cuda"):
        raise _fail(source, "train.device", train.device, "known devices: auto, cpu, cuda")
    for key in ("batch_size", "micro_batch_size", "seq_len", "warmup_steps", "lr"):
        value = getattr(train, key)
        if value is not None and value <= 0 and not (key == "warmup_steps" and value == 0):
            raise _fail(source, f"train.{key}", value, "must be positive")
    if not 0 <= train.final_lr_ratio <= 1:
        raise _fail(source, "train.final_lr_ratio", train.final_lr_ratio, "must be within [0, 1]")
    if not data.mixture:
        raise _fail(source, "data.mixture", {}, "a mixture needs at least one source")
    sources = known_sources()
    for name, weight in data.mixture.items():
        if name not in sources:
            raise _fail(source, f"data.mixture.{name}", weight, f"unknown source (known: {', '.join(sources)})")
        if weight < 0:
            raise _fail(source, f"data.mixture.{name}", weight, "weights must be non-negative")
    total = sum(data.mixture.values())
    if abs(total - 1.0) > 1e-6:
        raise _fail(source, "data.mixture", dict(data.mixture), f"weights sum to {total:g}, not 1")
    for name in data.validation:
        if name not in sources:
            raise _fail(source, "data.validation", name, f"unknown source (known: {', '.join(sources)})")
    if data.val_tokens <= 0:
        raise _fail(source, "data.val_tokens", data.val_tokens, "must be positive")
    if data.tokenizer:
        from testbed.data.sources import tokenizer_corpus

        tokenizer_corpus(data.tokenizer, source)


def to_yaml(config: object) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(config))
