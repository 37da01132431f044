"""Size ladders and the one place where a run's derived numbers are computed.

From (ladder, architecture, size, multiplier) follow: exact parameter counts, the token budget D = M * N,
FLOPs 6 N D, batch and micro-batch, steps, peak and final LR, warmup, cooldown, and the checkpoint steps.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field

from testbed.arch import arch_names, get_arch
from testbed.config import RunConfig
from testbed.config_layers import config_error, config_value, load_schema, read_yaml
from testbed.errors import TestbedError
from testbed.models import count_params
from testbed.paths import config_names, find_config
from testbed.schedule import cooldown_start


@dataclass
class Rung:
    d_model: int
    layers: int  # decoder: blocks; t5: blocks of each stack
    heads: int
    d_ff: int | None = None  # t5 only; None: 8/3 d_model, as the decoder's SwiGLU
    lr: float | None = None
    batch_size: int | None = None
    micro_batch_size: int | None = None
    warmup_steps: int | None = None


@dataclass
class Ladder:
    vocab_size: int = 512  # the tokenizer's; t5 adds its sentinels on top
    seq_len: int = 128  # training sequence length
    context: int | None = None  # the model's maximum sequence length; None: seq_len
    batch_size: int = 16  # sequences per optimizer step (global, over all devices)
    micro_batch_size: int | None = None  # at most this many sequences per device per forward; None: no cap
    lr: float = 3e-3  # peak LR of every rung, or with lr_width set, of a rung of that width
    # The LR rule: lr * (lr_width / d_model) ** lr_exponent (exponent 1: Adam's step per weight shrinks as
    # 1/width, as muP prescribes for hidden matrices). None: every rung at `lr`. A rung's own lr overrides it.
    lr_width: int | None = None
    lr_exponent: float = 1.0
    warmup_steps: int = 20
    # One matrix for the input embedding and the output head (GPT-2's choice): at widths of 16-64 an untied
    # head over 512 tokens would be most of a model's non-embedding parameters.
    tie_embeddings: bool = False
    # The rungs of each architecture, under its spec's `rung_key` (testbed/arch.py)
    sizes: dict[str, Rung] = field(default_factory=dict)  # decoder rungs
    t5_sizes: dict[str, Rung] = field(default_factory=dict)  # encoder-decoder rungs

    def rungs(self, arch: str) -> dict[str, Rung]:
        return getattr(self, get_arch(arch).rung_key)

    def peak_lr(self, rung: Rung) -> float:
        """The rung's peak LR: its own, else the ladder's rule."""
        if rung.lr is not None:
            return rung.lr
        if self.lr_width is None:
            return self.lr
        return self.lr * (self.lr_width / rung.d_model) ** self.lr_exponent

    @property
    def max_len(self) -> int:
        return self.context or self.seq_len


@functools.cache
def load_ladder(name: str, source: str = "config") -> Ladder:
    path = find_config("ladders", name)
    if path is None:
        known = config_names("ladders")
        raise config_error(source, "model.ladder", name, f"unknown ladder (known: {', '.join(known)})")
    ladder = load_schema(Ladder, str(path), [read_yaml(path)])
    for key in dict.fromkeys(get_arch(name).rung_key for name in arch_names()):
        for size, rung in getattr(ladder, key).items():
            if rung.d_model % rung.heads:
                raise config_error(
                    str(path), f"{key}.{size}.heads", rung.heads, f"does not divide d_model={rung.d_model}"
                )
    return ladder


@dataclass(frozen=True)
class RunPlan:
    """Everything a run needs that follows from its config."""

    params: int
    params_nonembed: int
    tokens: int  # the exact budget D = round(M * N) (t5: raw stream tokens, before span corruption)
    flops: float  # 6 N D
    seq_len: int
    vocab_size: int  # the tokenizer's (a t5 model adds its sentinels)
    batch_size: int  # sequences per optimizer step, over all devices
    micro_batch_size: int  # at most this many sequences per device per forward pass (see micro_batch)

    def micro_batch(self, world: int) -> int:
        """Sequences per forward on each of `world` devices, each taking batch / world per step."""
        return min(self.micro_batch_size, self.batch_size // world)

    steps: int
    lr: float
    final_lr: float
    warmup_steps: int
    schedule: str  # cosine | wsd
    cooldown_start: int  # wsd: first cooldown step (steps before it are the shared trunk); cosine: steps
    cooldown_shape: str
    checkpoint_steps: tuple[int, ...]  # ascending; the last is `steps`

    def tokens_before(self, step: int) -> int:
        """Tokens consumed by steps [0, step): full batches, except that the last step takes the rest."""
        return min(step * self.batch_size * self.seq_len, self.tokens)


def model_config(config: RunConfig):
    """The Hugging Face config of the run's model."""
    return _model_config(config.model.ladder, config.model.arch, config.model.size, config.model.qk_norm)


def _model_config(ladder_name: str, arch: str, size: str, qk_norm: bool):
    ladder = load_ladder(ladder_name)
    return get_arch(arch).model_config(ladder, ladder.rungs(arch)[size], qk_norm)


@functools.cache
def _params(ladder_name: str, arch: str, size: str, qk_norm: bool) -> tuple[int, int]:
    return count_params(_model_config(ladder_name, arch, size, qk_norm))


def log_spaced_steps(steps: int, count: int, per_doubling: int = 1) -> tuple[int, ...]:
    """steps / 2^(j / per_doubling) down to steps / 2^count, deduplicated: early checkpoints for learning curves."""
    return tuple(sorted({max(1, round(steps / 2 ** (j / per_doubling))) for j in range(count * per_doubling + 1)}))


def plan_run(config: RunConfig) -> RunPlan:
    ladder = load_ladder(config.model.ladder)
    rung = ladder.rungs(config.model.arch)[config.model.size]
    train = config.train
    params, nonembed = _params(config.model.ladder, config.model.arch, config.model.size, config.model.qk_norm)
    tokens = round(train.multiplier * params)
    seq_len = train.seq_len or ladder.seq_len
    if seq_len > ladder.max_len:
        raise TestbedError(
            f"config: train.seq_len={seq_len}: longer than the model's context of "
            f"{ladder.max_len} (ladder {config.model.ladder!r})"
        )
    batch = train.batch_size or rung.batch_size or ladder.batch_size
    micro = min(train.micro_batch_size or rung.micro_batch_size or ladder.micro_batch_size or batch, batch)
    if batch % micro:
        raise TestbedError(f"config: train.micro_batch_size={micro}: does not divide the batch of {batch} sequences")
    steps = math.ceil(tokens / (batch * seq_len))
    if steps < 2:
        raise TestbedError(
            f"config: train.multiplier={train.multiplier!r}: a budget of {tokens} tokens is under two steps "
            f"of {batch} x {seq_len} tokens"
        )
    lr = (train.lr or ladder.peak_lr(rung)) * train.lr_factor
    warmup = rung.warmup_steps or ladder.warmup_steps
    if train.schedule == "wsd":
        # The warmup must not depend on the horizon, or runs of different multipliers could not share a trunk.
        start = cooldown_start(steps, train.cooldown_fraction)
        warmup = warmup if train.warmup_steps is None else train.warmup_steps
        if warmup > start:
            raise TestbedError(
                f"config: train.warmup_steps={warmup}: does not end before the cooldown starts "
                f"at step {start} of {steps}"
            )
        # the branch point (the trunk's model) and the cooled-down end
        checkpoints: tuple[int, ...] = (start, steps)
    else:
        start = steps
        warmup = min(warmup, steps // 5) if train.warmup_steps is None else train.warmup_steps
        if warmup >= steps:
            raise TestbedError(f"config: train.warmup_steps={warmup}: not shorter than the run's {steps} steps")
        checkpoints = log_spaced_steps(steps, train.log_spaced_checkpoints, train.checkpoints_per_doubling)
    return RunPlan(
        params=params,
        params_nonembed=nonembed,
        tokens=tokens,
        flops=6.0 * params * tokens,
        seq_len=seq_len,
        vocab_size=ladder.vocab_size,
        batch_size=batch,
        micro_batch_size=micro,
        steps=steps,
        lr=lr,
        final_lr=lr * train.final_lr_ratio,
        warmup_steps=warmup,
        schedule=train.schedule,
        cooldown_start=start,
        cooldown_shape=train.cooldown_shape,
        checkpoint_steps=checkpoints,
    )


# Short names of the common axis keys in run ids (`-lr0.003`, `-bs64`); any other key: its last component.
AXIS_NAMES = {
    "train.lr": "lr",
    "train.lr_factor": "lrx",
    "train.batch_size": "bs",
    "train.micro_batch_size": "mbs",
    "train.seq_len": "seq",
    "train.warmup_steps": "warmup",
    "train.weight_decay": "wd",
    "train.z_loss": "zloss",
    "train.final_lr_ratio": "flr",
    "train.beta2": "b2",
    "train.grad_clip": "clip",
    "train.cooldown_fraction": "cd",
    "model.qk_norm": "qknorm",
    "model.ladder": "ladder",
    "data.world_seed": "world",
    "data.val_tokens": "valtok",
}
# Keys the id shows without a suffix: the architecture's prefix, the schedule's marker (-wsd, -wsd1sqrt).
IN_BASE_ID = ("model.arch", "train.schedule", "train.cooldown_shape")
UNSAFE = re.compile(r"[^A-Za-z0-9_.+-]+")


def axis_suffix(key: str, value: object) -> str:
    """`-lr0.003`, `-bs64`, `-qknorm1`: the short name of the key and its value, compact and safe in a path."""
    if key in IN_BASE_ID:
        return ""
    if isinstance(value, bool):
        text = str(int(value))
    elif isinstance(value, float):
        text = f"{value:g}"
    elif value is None:
        text = "default"
    elif isinstance(value, list | tuple):
        text = "+".join(str(v) for v in value) or "none"
    else:
        text = str(value)
    return f"-{AXIS_NAMES.get(key, key.rpartition('.')[2])}{UNSAFE.sub('_', text).strip('_') or '_'}"


def run_columns(config: RunConfig, plan: RunPlan) -> dict:
    """Which run, by its numbers: the columns a result row and a sweep plan's row both start with."""
    return {
        "run_id": run_id(config),
        "size": config.model.size,
        "params": plan.params,
        "params_nonembed": plan.params_nonembed,
        "dataset": config.data.name,
        "multiplier": config.train.multiplier,
        "seed": config.train.seed,
    }


def run_id(config: RunConfig) -> str:
    """Readable and stable: dec-s3-syn_en-m20-seed0 (a WSD run: dec-s3-syn_en-m20-wsd-seed0); a run whose
    sweep varied other keys (`config.axes`) adds one suffix per key, in key order: dec-s3-syn_en-m20-seed0-lr0.003."""
    arch = get_arch(config.model.arch).run_prefix
    schedule = ""
    if config.train.schedule == "wsd":
        schedule = "-wsd" if config.train.cooldown_shape == "linear" else "-wsd1sqrt"
    axes = "".join(axis_suffix(key, config_value(config, key)) for key in sorted(config.axes))
    return (
        f"{arch}-{config.model.size}-{config.data.name}-m{config.train.multiplier:g}{schedule}"
        f"-seed{config.train.seed}{axes}"
    )
