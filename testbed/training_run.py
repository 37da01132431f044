"""A training run in progress (`TrainingRun`): its setup (device, data, model, optimizer, schedule), its
state (what a checkpoint holds, and restoring it), its measurements (validation loss, throughput). The loop
that drives it is testbed.train's.
"""

from __future__ import annotations

import ctypes
import dataclasses
import math
import os
import sys
import threading
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict

from testbed import progress, throughput, tracking
from testbed.arch import get_arch
from testbed.config import RunConfig
from testbed.data.sources import (
    KINDS,
    corpus_fingerprints,
    known_sources,
    resolve_tokenizer,
    run_sources,
    validation_sources,
)
from testbed.data.span_corruption import VALID_SEED
from testbed.data.stream import MixtureBatcher, TokenStream, rows_tensor
from testbed.data.tokenizer import load_tokenizer, tokenizer_key
from testbed.errors import TestbedError
from testbed.ladder import RunPlan, load_ladder, model_config, run_id
from testbed.models import attention_backend, batch_loss, build_model, optimizer_groups
from testbed.paths import cache_root
from testbed.rundir import RunDir
from testbed.schedule import lr_factor

TRAIN_LOSS_ROWS = 100  # train_loss rows per run: the mean training loss every ~1 % of the steps
SLOW_DATA_SECONDS = 5.0  # data preparation that takes longer says what it is doing


def world_size() -> int:
    """Processes of this run (set by `accelerate launch` / torchrun), known before anything starts."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


@dataclasses.dataclass
class TrainingRun:
    """A run in progress: what the loop mutates, and what it needs to measure and save it. It owns its
    state: `state_dict(step)` is the full training state a checkpoint holds, `load_state_dict` restores it
    (as torchtitan's Stateful objects); the batcher inside is Stateful the same way."""

    config: RunConfig
    plan: RunPlan
    run_dir: RunDir
    accelerator: Accelerator
    model: torch.nn.Module
    optimizer: Any  # accelerate's AcceleratedOptimizer (untyped); the torch optimizer is its .optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    batcher: MixtureBatcher
    objective: Callable[..., dict]  # (inputs, labels, step) -> model kwargs + labels
    tokenizer: object
    val_sets: dict[str, list[dict]]
    flops_per_token: float
    peak: float | None
    losses: list[float] = dataclasses.field(default_factory=list)
    steps_computed: int = 0  # optimizer steps this run's processes have computed (trunk steps included)
    stop: bool = False  # SIGTERM seen
    # timed tokens, wall-clock seconds, process CPU seconds: since the last measured checkpoint, and in all
    window: list[float] = dataclasses.field(default_factory=lambda: [0.0, 0.0, 0.0])
    total: list[float] = dataclasses.field(default_factory=lambda: [0.0, 0.0, 0.0])
    warm: bool = False  # the first step of a process (allocator, compilation) is not timed
    recent: list[float] = dataclasses.field(default_factory=list)  # losses since the last train_loss row
    progress_at: float = 0.0  # time.monotonic() of the last progress record
    # per validation set whose generator is known: the entropy of its text, nats per token (a loss floor)
    val_floors: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def loss_every(self) -> int:
        """Steps between train_loss rows."""
        return max(1, math.ceil(self.plan.steps / TRAIN_LOSS_ROWS))

    def record_step(self, step: int, loss: float) -> None:
        """After optimizer step `step` (1-based): keep its loss for the next checkpoint's train row; every
        loss_every steps (and at the last) a `train_loss` row (the mean since the previous one, never final) in
        rows.jsonl and wandb; every few seconds the run's progress record (testbed/progress.py). A WSD run's
        steps up to its branch point are the shared trunk's (testbed/trunk.py), which another run may have
        trained: like the checkpoints' train rows, its train_loss rows start after the trunk."""
        self.losses.append(loss)
        trunk = self.plan.schedule == "wsd" and step <= self.plan.cooldown_start
        if not trunk:
            self.recent.append(loss)
        if not self.main:
            return
        if not trunk and (step % self.loss_every == 0 or step == self.plan.steps):
            base = self.run_dir.base_row(self.config, self.plan, step)
            row = dict(base, kind="train_loss", name="train", metric="loss", value=sum(self.recent) / len(self.recent),
                       final=False)  # fmt: skip
            self.run_dir.append_rows([row])
            tracking.log_rows([row])
            self.recent = []
        now = time.monotonic()
        if now - self.progress_at >= progress.EVERY_SECONDS or step == self.plan.steps:
            progress.write(self.run_dir.path, "train", step, self.plan.steps, loss=loss)
            self.progress_at = now

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def world(self) -> int:
        return self.accelerator.num_processes

    @classmethod
    def build(cls, config: RunConfig, plan: RunPlan, run_dir: RunDir) -> TrainingRun:
        """Everything a run needs before its first step: device, data, validation sets, model, optimizer,
        schedule (the setup half of training; the loop is testbed.train's)."""
        if config.train.threads:
            torch.set_num_threads(config.train.threads)
        accelerator = _accelerator(config)
        if accelerator.device.type == "cpu":
            keep_freed_memory()
        if (
            config.train.distributed == "fsdp"
            and accelerator.num_processes > 1
            and accelerator.distributed_type != DistributedType.FSDP
            and accelerator.is_main_process
        ):
            # accelerate shards only on GPUs; CPU processes fall back to DDP (meta.json records which ran)
            print(
                f"testbed: train.distributed=fsdp: running as {accelerator.distributed_type.value}, "
                "not FSDP (accelerate shards only on GPUs)",
                file=sys.stderr,
                flush=True,
            )
        with _preparing(config, plan, run_dir, accelerator.is_main_process):
            tokenizer, key, objective, batcher = training_data(config, plan)
            batcher.prefetch()
            val_sets = _validation_sets(config, plan, tokenizer, key, objective)
            val_floors = _validation_floors(config, plan, tokenizer)
        model = build_model(model_config(config), seed=config.train.seed)
        if len(tokenizer) > model.config.vocab_size:
            raise TestbedError(f"tokenizer of {len(tokenizer)} tokens > model vocabulary {model.config.vocab_size}")
        arch = get_arch(config.model.arch)
        optimizer = torch.optim.AdamW(
            optimizer_groups(model, config.train.weight_decay),
            lr=plan.lr,
            betas=(0.9, config.train.beta2),
            eps=1e-8,
            fused=True,  # one kernel per step, CUDA and CPU
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, plan))
        flops_per_token = arch.flops_per_token(model, plan.seq_len)
        if accelerator.distributed_type == DistributedType.FSDP:
            arch.prepare_fsdp(model)  # T5: one embedding module for both stacks
        model, optimizer = accelerator.prepare(model, optimizer)
        return cls(
            config,
            plan,
            run_dir,
            accelerator,
            model,
            optimizer,
            scheduler,
            batcher,
            objective,
            tokenizer,
            val_sets,
            flops_per_token,
            throughput.peak_flops(accelerator.device),
            val_floors=val_floors,
        )

    def write_meta(self) -> None:
        """meta.json at the start: versions, device, precision, plan."""
        accelerator, device = self.accelerator, self.accelerator.device
        self.run_dir.write_meta(
            {
                "versions": _versions(),
                "run_id": run_id(self.config),
                "device": str(device),
                "device_name": throughput.device_name(device),
                "processes": self.world,
                "precision": accelerator.mixed_precision,
                "distributed": str(accelerator.distributed_type),
                "compile": self.config.train.compile,
                "flops_per_token": self.flops_per_token,
                "peak_flops_per_device": self.peak,
                "plan": dataclasses.asdict(self.plan),
                "epochs": self.batcher.epochs,  # passes over the training text the budget takes (None: unknown)
                "corpora": self.corpora(),  # built corpora's fingerprints: a rebuild since makes the run CHANGED
                "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            }
        )

    def corpora(self) -> dict[str, str]:
        data = self.config.data
        return corpus_fingerprints(run_sources(data.validation, data.tokenizer, data.mixture))

    def finish(self) -> None:
        """Check that the run saw its token budget; meta.json gets throughput and tokens."""
        plan = self.plan
        seen = self.batcher.tokens_by_source()
        if sum(seen.values()) != plan.tokens:
            raise RuntimeError(f"tokens seen {sum(seen.values())} != budget {plan.tokens}")
        if not self.main:
            return
        rate = self.total[0] / self.total[1] if self.total[1] else None
        meta = self.run_dir.meta()
        meta.update(
            finished=time.strftime("%Y-%m-%dT%H:%M:%S"),
            tokens_per_second=rate,
            # per second of this process's CPU time: the steadier measure on a shared CPU
            tokens_per_cpu_second=self.total[0] / self.total[2] if self.total[2] else None,
            mfu=throughput.mfu(rate, self.flops_per_token, self.peak, self.world),
            tokens_seen=plan.tokens,
            tokens_by_source=seen,
            steps_computed=self.steps_computed,
            tokens_computed=self.steps_computed * plan.batch_size * plan.seq_len,
        )
        self.run_dir.write_meta(meta)

    @torch.no_grad()
    def validation_loss(self, batches: list[dict]) -> float:
        """Mean cross-entropy per labelled token; the batches are shared out over the processes."""
        model, accelerator, world = self.model, self.accelerator, self.world
        model.eval()
        total = torch.zeros(2, device=accelerator.device, dtype=torch.float64)
        for k in range(-(-len(batches) // world)):  # the same number of forwards on every process (FSDP)
            index = k * world + accelerator.process_index
            batch = {n: v.to(accelerator.device) for n, v in batches[index % len(batches)].items()}
            with accelerator.autocast(), attention_backend(self.config.train.attention):
                ce, _ = batch_loss(model, batch)
            if index < len(batches):
                total += torch.stack([ce.double(), (batch["labels"] != -100).sum().double()])
        model.train()
        if world > 1:
            total = accelerator.reduce(total, reduction="sum")
        return (total[0] / total[1]).item()

    def full_state_dicts(self) -> tuple[dict, dict]:
        """Full model and optimizer state, keyed by parameter name (a collective under FSDP)."""
        return get_state_dict(
            self.accelerator.unwrap_model(self.model),
            self.optimizer.optimizer,
            options=StateDictOptions(full_state_dict=True, cpu_offload=True),
        )

    def state_dict(self, step: int, dicts: tuple[dict, dict] | None = None) -> dict:
        """The full training state after `step` (tensors and plain containers: it loads with weights_only)."""
        model_state, optim_state = dicts or self.full_state_dicts()
        state = {
            "model": model_state,
            "optimizer": optim_state,
            "scheduler": self.scheduler.state_dict(),
            "data": self.batcher.state_dict(),
            "rng": torch.get_rng_state(),
            "step": step,
            "tokens": self.plan.tokens_before(step),
            "steps_computed": self.steps_computed,
            "losses": list(self.losses),  # since the last measured step: the next train-loss row needs them
            "recent": list(self.recent),  # since the last train_loss row: a resumed run writes the same rows
        }
        if torch.cuda.is_available():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict) -> int:
        """Restore a state written by `state_dict` (or a trunk's); returns its step."""
        model = self.accelerator.unwrap_model(self.model)
        lacking = model.state_dict().keys() - state["model"].keys()
        if lacking:  # set_state_dict would keep the current (initial) weights of these without a word
            raise TestbedError(
                f"the training state of step {state['step']} lacks {len(lacking)} model tensors, e.g. {min(lacking)}"
            )
        optim = state["optimizer"]
        if optim["state"] and all(isinstance(k, int) for k in optim["state"]):  # a state written before names
            model.load_state_dict(state["model"])
            self.optimizer.optimizer.load_state_dict(optim)
        else:
            # One key per tensor: torch shards a weight that several modules share (T5's embeddings) under its
            # first name only, and the other names would be copied as plain tensors into sharded ones. Not
            # strict about those other names; `lacking` above has checked that the state holds every name.
            owners = dict(model.named_parameters()) | dict(model.named_buffers())
            weights = {name: value for name, value in state["model"].items() if name in owners}
            set_state_dict(
                model,
                self.optimizer.optimizer,
                model_state_dict=weights,
                optim_state_dict=optim,
                options=StateDictOptions(full_state_dict=True, strict=False),
            )
        self.scheduler.load_state_dict(state["scheduler"])
        # The LR of the next step from this run's own schedule: a trunk state carries the LR its writer's
        # schedule set for the step after it, which may already be that run's cooldown.
        for group, base in zip(self.optimizer.param_groups, self.scheduler.base_lrs, strict=True):
            group["lr"] = base * lr_factor(state["step"], self.plan)
        self.scheduler._last_lr = [group["lr"] for group in self.optimizer.param_groups]
        self.batcher.load_state_dict(state["data"])
        self.losses = list(state.get("losses", []))
        self.recent = list(state.get("recent", []))
        torch.set_rng_state(state["rng"])
        if "cuda_rng" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.steps_computed = state.get("steps_computed", state["step"])
        return state["step"]

    def throughput_rows(self, base: dict) -> list[dict]:
        tokens, seconds, _ = self.window
        self.window = [0.0, 0.0, 0.0]
        if not seconds:
            return []
        rate = tokens / seconds
        rows = [dict(base, kind="train", name="throughput", metric="tokens_per_second", value=rate)]
        utilisation = throughput.mfu(rate, self.flops_per_token, self.peak, self.world)
        if utilisation is not None:
            rows.append(dict(base, kind="train", name="throughput", metric="mfu", value=utilisation))
        return rows


def _accelerator(config: RunConfig) -> Accelerator:
    cuda = config.train.device != "cpu" and torch.cuda.is_available()
    kwargs = {}
    if config.train.distributed == "fsdp" and world_size() > 1:
        from accelerate.utils import FullyShardedDataParallelPlugin

        kwargs["fsdp_plugin"] = FullyShardedDataParallelPlugin(
            fsdp_version=2, auto_wrap_policy="transformer_based_wrap"
        )
    return Accelerator(
        cpu=not cuda,
        mixed_precision="bf16" if cuda else "no",
        dynamo_backend="inductor" if config.train.compile else "no",
        **kwargs,
    )


def keep_freed_memory() -> None:
    """Let glibc keep freed memory for reuse instead of returning it to the OS.

    By default a freed block above the mmap threshold (and free heap above the trim threshold) goes back to
    the OS, so every step's activations fault their pages in again and the kernel zeroes them: on the micro
    ladder that was a third of a CPU step (benchmarks/train.md). Raising both thresholds keeps the memory in
    the process (its resident size stays at its peak, as a training process's does anyway). Not glibc: no-op.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 32 << 20)  # the ceiling of glibc's own adaptive threshold (64-bit)
    libc.mallopt(m_trim_threshold, 1 << 30)


def _objective(config: RunConfig, tokenizer):
    """How rows of the token stream become a model batch: the architecture's objective (testbed/arch.py:
    next-token prediction, T5 span corruption).

    objective(inputs, labels, key): `key` seeds the objective's randomness ((seed, step) in training).
    """
    return get_arch(config.model.arch).objective(tokenizer, load_ladder(config.model.ladder).max_len)


class TrainingData(NamedTuple):
    tokenizer: Any
    key: str  # the tokenizer's cache key, which the token streams are cached under
    objective: Callable  # objective(inputs, labels, (seed, step)) -> the model batch
    batcher: MixtureBatcher


class _preparing:
    """Around a run's data preparation (tokenizer, training text into shards, validation sets): the progress
    record says so, and when it takes longer than SLOW_DATA_SECONDS (a tokenizer to train, text to tokenize:
    minutes on a CPU, once, then cached) a line on stderr says what is being prepared instead of silence."""

    def __init__(self, config: RunConfig, plan: RunPlan, run_dir: RunDir, main: bool):
        self.main, self.run_dir = main, run_dir
        corpus = resolve_tokenizer(config.data.tokenizer, config.data.mixture)
        cached = (cache_root() / "tokenizers" / tokenizer_key(plan.vocab_size, config.data.world_seed, corpus)
                  / "tokenizer.json").is_file()  # fmt: skip
        tokenizer = "" if cached else f"training the {corpus} tokenizer (vocabulary {plan.vocab_size:,}), then "
        self.what = (f"{tokenizer}tokenizing {', '.join(config.data.mixture)} into shards and the validation sets "
                     f"(once per world and tokenizer, then read from the cache under {cache_root()})")  # fmt: skip
        self.name = run_id(config)
        self.timer = threading.Timer(SLOW_DATA_SECONDS, self._announce)
        self.timer.daemon = True
        self.began = 0.0
        self.announced = False

    def _announce(self) -> None:
        self.announced = True
        print(f"testbed: {self.name}: preparing data: {self.what} ...", file=sys.stderr, flush=True)

    def __enter__(self) -> _preparing:
        self.began = time.monotonic()
        if self.main:
            progress.write(self.run_dir.path, "data", detail=self.what.split(" (")[0])
            self.timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self.timer.cancel()
        if self.announced and exc[0] is None:
            spent = time.monotonic() - self.began
            print(f"testbed: {self.name}: data ready in {spent:.0f} s", file=sys.stderr, flush=True)


def training_data(config: RunConfig, plan: RunPlan) -> TrainingData:
    """What a run trains on, drawn as its loop draws it: the batcher yields (inputs, labels) per step."""
    corpus = resolve_tokenizer(config.data.tokenizer, config.data.mixture)
    key = tokenizer_key(plan.vocab_size, config.data.world_seed, corpus)
    tokenizer = load_tokenizer(plan.vocab_size, config.data.world_seed, corpus)
    sources = known_sources()
    streams = {
        name: TokenStream(sources[name], "train", tokenizer, key, config.data.world_seed)
        for name in config.data.mixture
    }
    batcher = MixtureBatcher(
        streams, config.data.mixture, plan.seq_len, plan.batch_size, plan.tokens, config.data.allow_repeat
    )
    return TrainingData(tokenizer, key, _objective(config, tokenizer), batcher)


def _validation_sets(config: RunConfig, plan: RunPlan, tokenizer, key: str, objective) -> dict[str, list[dict]]:
    """Fixed validation batches per source (T5: corrupted with a fixed seed, the same for every run)."""
    sources = known_sources()
    names = validation_sources(config.data.validation, config.data.tokenizer, config.data.mixture)
    n_rows = max(1, config.data.val_tokens // plan.seq_len)
    sets = {}
    for name in names:
        rows = rows_tensor(
            TokenStream(sources[name], "valid", tokenizer, key, config.data.world_seed), 0, n_rows, plan.seq_len
        )
        chunks = rows.split(plan.micro_batch_size)
        sets[name] = [objective(c[:, :-1], c[:, 1:], (VALID_SEED, i)) for i, c in enumerate(chunks)]
    return sets


def _validation_floors(config: RunConfig, plan: RunPlan, tokenizer) -> dict[str, float]:
    """The entropy of each validation set's text where its source knows it (synthetic: readers.SyntheticKind),
    in nats per token of the windows `_validation_sets` reads; empty for objectives other than the stream's."""
    if not get_arch(config.model.arch).stream_loss:
        return {}
    sources = known_sources()
    n_tokens = max(1, config.data.val_tokens // plan.seq_len) * plan.seq_len + 1
    floors = {}
    for name in validation_sources(config.data.validation, config.data.tokenizer, config.data.mixture):
        source = sources[name]
        floor = KINDS.get(source.kind).entropy(source, "valid", config.data.world_seed, tokenizer, n_tokens)
        if floor is not None:
            floors[name] = floor
    return floors


def _versions() -> dict:
    versions: dict[str, str | None] = {}
    for pkg in ("torch", "transformers", "accelerate", "lm_eval", "tokenizers"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:  # lm_eval is not needed to train
            versions[pkg] = None
    try:
        import subprocess

        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    versions["testbed"] = sha or "unknown"
    return versions
