"""Size ladders and the one place where a run's derived numbers are computed.

From (ladder, size, multiplier) follow: exact parameter counts, the token budget D = M * N,
FLOPs 6 N D, batch, steps, peak and final LR, warmup, and the checkpoint steps.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

from testbed.config import CONFIG_ROOT, RunConfig, _fail, _merge, _read_yaml
from testbed.errors import TestbedError
from testbed.models import count_params, decoder_config


@dataclass
class Rung:
    d_model: int
    layers: int
    heads: int
    lr: float | None = None
    batch_size: int | None = None
    warmup_steps: int | None = None


@dataclass
class Ladder:
    vocab_size: int = 512
    seq_len: int = 128
    batch_size: int = 16
    lr: float = 3e-3
    warmup_steps: int = 20
    sizes: dict[str, Rung] = field(default_factory=dict)


@functools.cache
def load_ladder(name: str, source: str = "config") -> Ladder:
    path = CONFIG_ROOT / "ladders" / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise _fail(source, "model.ladder", name, f"unknown ladder (known: {', '.join(known)})")
    ladder = _merge(Ladder, str(path), [_read_yaml(path)])
    for size, rung in ladder.sizes.items():
        if rung.d_model % rung.heads:
            raise _fail(str(path), f"sizes.{size}.heads", rung.heads, f"does not divide d_model={rung.d_model}")
    return ladder


@dataclass(frozen=True)
class RunPlan:
    """Everything a run needs that follows from its config."""

    params: int
    params_nonembed: int
    tokens: int  # the exact budget D = round(M * N)
    flops: float  # 6 N D
    seq_len: int
    vocab_size: int
    batch_size: int  # sequences per step
    steps: int
    lr: float
    final_lr: float
    warmup_steps: int
    checkpoint_steps: tuple[int, ...]  # ascending; the last is `steps`

    def tokens_before(self, step: int) -> int:
        """Tokens consumed by steps [0, step): full batches, except that the last step takes the rest."""
        return min(step * self.batch_size * self.seq_len, self.tokens)


def model_config(config: RunConfig):
    ladder = load_ladder(config.model.ladder)
    rung = ladder.sizes[config.model.size]
    return decoder_config(rung.d_model, rung.layers, rung.heads, ladder.vocab_size, ladder.seq_len)


@functools.cache
def _params(ladder_name: str, size: str) -> tuple[int, int]:
    ladder = load_ladder(ladder_name)
    rung = ladder.sizes[size]
    return count_params(decoder_config(rung.d_model, rung.layers, rung.heads, ladder.vocab_size, ladder.seq_len))


def log_spaced_steps(steps: int, count: int) -> tuple[int, ...]:
    """steps / 2^k for k = 0..count, deduplicated: early checkpoints for learning curves."""
    return tuple(sorted({max(1, round(steps / 2**k)) for k in range(count + 1)}))


def plan_run(config: RunConfig) -> RunPlan:
    ladder = load_ladder(config.model.ladder)
    rung = ladder.sizes[config.model.size]
    train = config.train
    params, nonembed = _params(config.model.ladder, config.model.size)
    tokens = round(train.multiplier * params)
    batch = train.batch_size or rung.batch_size or ladder.batch_size
    steps = math.ceil(tokens / (batch * ladder.seq_len))
    if steps < 2:
        raise TestbedError(
            f"config: train.multiplier={train.multiplier!r}: a budget of {tokens} tokens is under two steps "
            f"of {batch} x {ladder.seq_len} tokens"
        )
    lr = train.lr or rung.lr or ladder.lr
    if train.warmup_steps is not None:
        warmup = train.warmup_steps
    else:
        warmup = min(rung.warmup_steps or ladder.warmup_steps, steps // 5)
    if warmup >= steps:
        raise TestbedError(f"config: train.warmup_steps={warmup}: not shorter than the run's {steps} steps")
    return RunPlan(
        params=params,
        params_nonembed=nonembed,
        tokens=tokens,
        flops=6.0 * params * tokens,
        seq_len=ladder.seq_len,
        vocab_size=ladder.vocab_size,
        batch_size=batch,
        steps=steps,
        lr=lr,
        final_lr=lr * train.final_lr_ratio,
        warmup_steps=warmup,
        checkpoint_steps=log_spaced_steps(steps, train.log_spaced_checkpoints),
    )


def run_id(config: RunConfig) -> str:
    """Readable and stable: dec-s3-syn_en-m20-seed0."""
    arch = {"decoder": "dec", "t5": "t5"}[config.model.arch]
    return f"{arch}-{config.model.size}-{config.data.name}-m{config.train.multiplier:g}-seed{config.train.seed}"
