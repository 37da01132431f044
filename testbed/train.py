"""One training run, end to end: plan, data, model, loop, checkpoints, rows, DONE.

The run directory is the only state. A run that finds DONE returns at once; one that finds a
training checkpoint resumes from it and ends bit-for-bit where an uninterrupted run would (on CPU).

One code path for every device: the CPU, one GPU (bf16 autocast, fused AdamW, optional torch.compile), and
several GPUs under `accelerate launch` (DDP, or FSDP2 with `train.distributed=fsdp`). Each optimizer step
takes one global batch of `batch_size` sequences: every process draws the same batch from the data cursor,
keeps its 1/world share and runs it in micro-batches of `micro_batch_size`, accumulating gradients. The
loss is normalised by the labelled tokens of the whole global batch, so the update does not depend on how
the batch was split. Training states hold full (unsharded) weights and optimizer moments keyed by
parameter name: a run resumes on any number of processes.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import os
import signal
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict
from tqdm.auto import tqdm

from testbed import checkpoint, preempt, throughput, tracking
from testbed.arch import get_arch
from testbed.config import RunConfig
from testbed.data.sources import known_sources, resolve_tokenizer, validation_sources
from testbed.data.span_corruption import VALID_SEED
from testbed.data.stream import MixtureBatcher, TokenStream, rows_tensor
from testbed.data.tokenizer import load_tokenizer, tokenizer_key
from testbed.errors import TestbedError
from testbed.ladder import RunPlan, load_ladder, model_config, plan_run, run_id
from testbed.models import batch_loss, build_model, optimizer_groups
from testbed.preempt import Preempted
from testbed.rundir import RunDir, main_process
from testbed.schedule import lr_factor
from testbed.trunk import Trunk, trunk_dir

__all__ = ["NonFiniteLoss", "keep_freed_memory", "lr_factor", "train", "train_stage"]


class NonFiniteLoss(RuntimeError):
    step: int  # the optimizer step (1-based) whose loss was not finite, set where raised


def _injected_step(fault: str, rid: str) -> int | None:
    """Fault injection for tests: TESTBED_INJECT_NAN=<run_id>@<step> makes that step's loss NaN;
    TESTBED_INJECT_SIGTERM=<run_id>@<step> sends the process a SIGTERM during that step."""
    target, _, step = os.environ.get(f"TESTBED_INJECT_{fault}", "").partition("@")
    return int(step) if target == rid and step else None


def _versions() -> dict:
    versions: dict[str, str | None] = {}
    for pkg in ("torch", "transformers", "accelerate", "lm_eval", "tokenizers"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:  # lm_eval is not needed to train
            versions[pkg] = None
    try:
        import subprocess

        sha = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    versions["testbed"] = sha or "unknown"
    return versions


def world_size() -> int:
    """Processes of this run (set by `accelerate launch` / torchrun), known before anything starts."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def check_fit(config: RunConfig, plan: RunPlan, world: int) -> None:
    """Refuse, before anything is written, a run whose batch cannot be split over `world` processes."""
    if plan.batch_size % (plan.micro_batch(world) * world):
        raise TestbedError(
            f"config: train.batch_size={plan.batch_size}: not a multiple of {world} processes x micro-batch "
            f"{plan.micro_batch(world)} (train.micro_batch_size)")
    if config.train.device == "cuda" and not torch.cuda.is_available():
        raise TestbedError("config: train.device='cuda': no CUDA device is visible")


def train(config: RunConfig, progress: bool = True) -> Path:
    """Train (or resume, or skip) the run of `config`; returns its run dir.

    The main process owns the run dir while it trains (`RunDir.owned`): a second trainer of the same run is
    refused with one line (RunBusy) and changes nothing.
    """
    with preempt.handling():  # first: a SIGTERM during the slow setup still ends in a clean, resumable stop
        return _own_and_train(config, progress)



def train_stage(run_dir: Path, config: RunConfig, spec, progress: bool = False) -> None:
    """The sweep's train stage (testbed.sweep.stages.STAGES): train the run whose dir the stage runs in."""
    train(config, progress=progress)


def _own_and_train(config: RunConfig, progress: bool) -> Path:
    plan = plan_run(config)
    check_fit(config, plan, world_size())
    main = main_process()
    run_dir = RunDir.of(config).prepare(config) if main else RunDir.of(config)
    if run_dir.done():
        return run_dir.path
    with run_dir.owned() if main else contextlib.nullcontext():
        if run_dir.done():  # finished by the owner we may have waited for
            return run_dir.path
        if main:
            run_dir.remove_leftovers()
            tracking.start(config, run_dir.path, plan)
        step = None
        try:
            step = _train(config, plan, run_dir, progress and main)
        except Preempted:
            raise
        except Exception as err:
            if main:
                reason = f"{type(err).__name__}: {err}".splitlines()[0]
                run_dir.mark_failed(reason, getattr(err, "step", step))
            raise
        finally:
            if main:
                tracking.finish(ok=step is not None)
        if main:
            run_dir.mark_done()
    return run_dir.path


@dataclasses.dataclass
class _Run:
    """A run in progress: what the loop mutates, and what it needs to measure and save it."""

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

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def world(self) -> int:
        return self.accelerator.num_processes


def _accelerator(config: RunConfig) -> Accelerator:
    cuda = config.train.device != "cpu" and torch.cuda.is_available()
    kwargs = {}
    if config.train.distributed == "fsdp" and world_size() > 1:
        from accelerate.utils import FullyShardedDataParallelPlugin

        kwargs["fsdp_plugin"] = FullyShardedDataParallelPlugin(fsdp_version=2, auto_wrap_policy="transformer_based_wrap")
    return Accelerator(cpu=not cuda, mixed_precision="bf16" if cuda else "no",
                       dynamo_backend="inductor" if config.train.compile else "no", **kwargs)


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


def training_data(config: RunConfig, plan: RunPlan) -> TrainingData:
    """What a run trains on, drawn as its loop draws it: the batcher yields (inputs, labels) per step."""
    corpus = resolve_tokenizer(config.data.tokenizer, config.data.mixture)
    key = tokenizer_key(plan.vocab_size, config.data.world_seed, corpus)
    tokenizer = load_tokenizer(plan.vocab_size, config.data.world_seed, corpus)
    sources = known_sources()
    streams = {name: TokenStream(sources[name], "train", tokenizer, key, config.data.world_seed)
               for name in config.data.mixture}
    batcher = MixtureBatcher(streams, config.data.mixture, plan.seq_len, plan.batch_size, plan.tokens)
    return TrainingData(tokenizer, key, _objective(config, tokenizer), batcher)


def _validation_sets(config: RunConfig, plan: RunPlan, tokenizer, key: str, objective) -> dict[str, list[dict]]:
    """Fixed validation batches per source (T5: corrupted with a fixed seed, the same for every run)."""
    sources = known_sources()
    names = validation_sources(config.data.validation, config.data.tokenizer, config.data.mixture)
    n_rows = max(1, config.data.val_tokens // plan.seq_len)
    sets = {}
    for name in names:
        rows = rows_tensor(TokenStream(sources[name], "valid", tokenizer, key, config.data.world_seed), 0, n_rows,
                           plan.seq_len)
        chunks = rows.split(plan.micro_batch_size)
        sets[name] = [objective(c[:, :-1], c[:, 1:], (VALID_SEED, i)) for i, c in enumerate(chunks)]
    return sets


def _train(config: RunConfig, plan: RunPlan, run_dir: RunDir, progress: bool) -> int:
    train_cfg = config.train
    if train_cfg.threads:
        torch.set_num_threads(train_cfg.threads)
    accelerator = _accelerator(config)
    device = accelerator.device
    if device.type == "cpu":
        keep_freed_memory()
    if config.train.distributed == "fsdp" and accelerator.num_processes > 1 \
            and accelerator.distributed_type != DistributedType.FSDP and accelerator.is_main_process:
        # accelerate shards only on GPUs; CPU processes fall back to DDP (meta.json records which ran)
        print(f"testbed: train.distributed=fsdp: running as {accelerator.distributed_type.value}, "
              "not FSDP (accelerate shards only on GPUs)", file=sys.stderr, flush=True)

    tokenizer, key, objective, batcher = training_data(config, plan)
    batcher.prefetch()
    val_sets = _validation_sets(config, plan, tokenizer, key, objective)

    model = build_model(model_config(config), seed=train_cfg.seed)
    if len(tokenizer) > model.config.vocab_size:
        raise TestbedError(f"tokenizer of {len(tokenizer)} tokens > model vocabulary {model.config.vocab_size}")
    arch = get_arch(config.model.arch)
    flops_per_token = arch.flops_per_token(model, plan.seq_len)
    optimizer = torch.optim.AdamW(
        optimizer_groups(model, train_cfg.weight_decay),
        lr=plan.lr, betas=(0.9, train_cfg.beta2), eps=1e-8, fused=True,  # one kernel per step, CUDA and CPU
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, plan))
    if accelerator.distributed_type == DistributedType.FSDP:
        arch.prepare_fsdp(model)  # T5: one embedding module for both stacks
    model, optimizer = accelerator.prepare(model, optimizer)
    run = _Run(config, plan, run_dir, accelerator, model, optimizer, scheduler, batcher, objective, tokenizer,
               val_sets, flops_per_token, throughput.peak_flops(device))
    if run.main:
        run_dir.write_meta({
            "versions": _versions(), "run_id": run_id(config), "device": str(device),
            "device_name": throughput.device_name(device), "processes": run.world,
            "precision": accelerator.mixed_precision, "distributed": str(accelerator.distributed_type),
            "compile": train_cfg.compile, "flops_per_token": flops_per_token, "peak_flops_per_device": run.peak,
            "plan": dataclasses.asdict(plan), "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        })

    state = checkpoint.load_train_state(run_dir.ckpt)
    start = _restore(run, state) if state is not None else 0
    if run.main:
        run_dir.drop_rows_after(start, kinds=("val_loss", "train"))

    if preempt.requested():  # SIGTERM during setup: nothing new to checkpoint
        raise Preempted(f"SIGTERM before training resumed at step {start}")
    bar = tqdm(total=plan.steps, initial=start, unit="step", disable=not progress, mininterval=1.0,
               desc=run_id(config), dynamic_ncols=True)
    try:
        if plan.schedule == "wsd" and start < plan.cooldown_start:  # the stable phase: from the shared trunk
            start = _through_trunk(run, bar)
            run.losses = []  # the trunk's losses belong to the trunk, not to this run's first row
            _checkpoint(run, start, measured=True)

        def act(done: int, _save: bool) -> None:
            if done in plan.checkpoint_steps or run.stop:
                _checkpoint(run, done, measured=done in plan.checkpoint_steps)
            if run.stop and done < plan.steps:
                raise Preempted(f"SIGTERM: checkpointed at step {done}")

        _loop(run, start, plan.steps, bar, lambda done: False, act)
    finally:
        bar.close()
    seen = batcher.tokens_by_source()
    if sum(seen.values()) != plan.tokens:
        raise RuntimeError(f"tokens seen {sum(seen.values())} != budget {plan.tokens}")
    if run.main:
        rate = run.total[0] / run.total[1] if run.total[1] else None
        meta = run_dir.meta()
        meta.update(finished=time.strftime("%Y-%m-%dT%H:%M:%S"), tokens_per_second=rate,
                    # per second of this process's CPU time: the steadier measure on a shared CPU
                    tokens_per_cpu_second=run.total[0] / run.total[2] if run.total[2] else None,
                    mfu=throughput.mfu(rate, flops_per_token, run.peak, run.world),
                    tokens_seen=plan.tokens, tokens_by_source=seen, steps_computed=run.steps_computed,
                    tokens_computed=run.steps_computed * plan.batch_size * plan.seq_len)
        run_dir.write_meta(meta)
    return plan.steps


def _through_trunk(run: _Run, bar) -> int:
    """Bring a WSD run to its cooldown start from the shared trunk, extending the trunk if needed."""
    plan = run.plan
    trunk = Trunk(trunk_dir(run.config, plan, run.run_dir.path))
    if run.main:
        trunk.request(plan.cooldown_start)
    with trunk.lock(enabled=run.main):
        run.accelerator.wait_for_everyone()
        state = trunk.load(at_most=plan.cooldown_start)
        start = _restore(run, state) if state is not None else 0
        run.steps_computed = 0  # the trunk's steps so far were computed by whoever wrote the state
        bar.update(start)

        def act(done: int, save: bool) -> None:
            if save or run.stop:
                state = _state(run, done)
                if run.main:
                    trunk.save(done, state)
            if run.stop and done < plan.cooldown_start:
                raise Preempted(f"SIGTERM: trunk checkpointed at step {done}")

        _loop(run, start, plan.cooldown_start, bar, lambda done: run.main and trunk.requested(done), act)
        run.accelerator.wait_for_everyone()
    return plan.cooldown_start


def _loop(run: _Run, start: int, stop: int, bar, propose, act) -> None:
    """Optimizer steps [start, stop). Before step k, propose(k + 1) says whether this process wants a save
    after it; after it, act(k + 1, save) acts on the save and SIGTERM flags that every process agrees on."""
    plan = run.plan
    nan_step, term_step = (_injected_step(fault, run_id(run.config)) for fault in ("NAN", "SIGTERM"))
    for step in range(start, stop):
        began, cpu = time.perf_counter(), time.process_time()
        if step + 1 == term_step:  # arrives during the step: every process sees it in the step's all-reduce
            os.kill(os.getpid(), signal.SIGTERM)
        loss, save = _step(run, step, nan_step, propose(step + 1))
        if run.world == 1:  # several processes agree on the flag inside the step
            run.stop = run.stop or preempt.requested()
        run.losses.append(loss)
        run.steps_computed += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
        if run.warm:  # everything of the step but checkpoints (act), which are timed apart from training
            spent = (plan.tokens_before(step + 1) - plan.tokens_before(step), time.perf_counter() - began,
                     time.process_time() - cpu)
            for meter in (run.window, run.total):
                meter[:] = [a + b for a, b in zip(meter, spent, strict=True)]
        run.warm = True
        act(step + 1, save)


def _micro_batches(run: _Run, step: int) -> tuple[list[dict], int]:
    """This process's micro-batches of the step's global batch, and the global batch's labelled tokens."""
    plan, world = run.plan, run.world
    batch = run.objective(*run.batcher.next_batch(), (run.config.train.seed, step))
    labelled = int((batch["labels"] != -100).sum())
    rows = len(batch["labels"])
    if world > 1:  # every process gets the same number of micro-batches: pad the short last batch
        missing = plan.batch_size - rows
        if missing:
            for name, value in batch.items():
                pad = torch.full((missing, *value.shape[1:]), -100 if name == "labels" else 0, dtype=value.dtype)
                if name == "attention_mask":
                    pad[:, 0] = 1
                batch[name] = torch.cat([value, pad])
        share = plan.batch_size // world
        rank = run.accelerator.process_index
        batch = {name: value[rank * share : (rank + 1) * share] for name, value in batch.items()}
    size = plan.micro_batch(world)
    count = -(-len(batch["labels"]) // size)
    return [{name: value[i * size : (i + 1) * size] for name, value in batch.items()} for i in range(count)], labelled


def _step(run: _Run, step: int, nan_step: int | None, want_save: bool) -> tuple[float, bool]:
    """One optimizer step; returns the global batch's mean cross-entropy and the agreed save flag."""
    accelerator, model = run.accelerator, run.model
    micro_batches, labelled = _micro_batches(run, step)
    scale = run.world / labelled  # DDP averages gradients over processes; undo that, divide by global tokens
    ce_sum = torch.zeros((), device=accelerator.device)
    for i, micro in enumerate(micro_batches):
        micro = {name: value.to(accelerator.device, non_blocking=True) for name, value in micro.items()}
        last = i == len(micro_batches) - 1
        with contextlib.nullcontext() if last else accelerator.no_sync(model):
            with accelerator.autocast():
                ce, total = batch_loss(model, micro, run.config.train.z_loss)
            accelerator.backward(total * scale)
        ce_sum += ce.detach()
    if run.world > 1:  # one small all-reduce: the global loss, and flags every process must agree on
        flags = torch.tensor([float(run.stop or preempt.requested()), float(want_save)], device=accelerator.device)
        stats = accelerator.reduce(torch.cat([ce_sum.reshape(1), flags]), reduction="sum").tolist()
        loss, run.stop, want_save = stats[0] / labelled, stats[1] > 0, stats[2] > 0
    else:
        loss = ce_sum.item() / labelled
    if step + 1 == nan_step:
        loss = float("nan")
    if not np.isfinite(loss):
        err = NonFiniteLoss(f"non-finite loss {loss} at step {step + 1}")
        err.step = step + 1
        raise err
    if run.config.train.grad_clip:
        accelerator.clip_grad_norm_(model.parameters(), run.config.train.grad_clip)
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    return loss, want_save


@torch.no_grad()
def _validation_loss(run: _Run, batches: list[dict]) -> float:
    """Mean cross-entropy per labelled token; the batches are shared out over the processes."""
    model, accelerator, world = run.model, run.accelerator, run.world
    model.eval()
    total = torch.zeros(2, device=accelerator.device, dtype=torch.float64)
    for k in range(-(-len(batches) // world)):  # the same number of forwards on every process (FSDP)
        index = k * world + accelerator.process_index
        batch = {n: v.to(accelerator.device) for n, v in batches[index % len(batches)].items()}
        with accelerator.autocast():
            ce, _ = batch_loss(model, batch)
        if index < len(batches):
            total += torch.stack([ce.double(), (batch["labels"] != -100).sum().double()])
    model.train()
    if world > 1:
        total = accelerator.reduce(total, reduction="sum")
    return (total[0] / total[1]).item()


def _full_state_dicts(run: _Run) -> tuple[dict, dict]:
    """Full model and optimizer state, keyed by parameter name (a collective under FSDP)."""
    return get_state_dict(run.accelerator.unwrap_model(run.model), run.optimizer.optimizer,
                          options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def _state(run: _Run, step: int, dicts: tuple[dict, dict] | None = None) -> dict:
    model_state, optim_state = dicts or _full_state_dicts(run)
    state = {
        "model": model_state, "optimizer": optim_state, "scheduler": run.scheduler.state_dict(),
        "data": run.batcher.state_dict(), "rng": torch.get_rng_state(), "step": step,
        "tokens": run.plan.tokens_before(step), "steps_computed": run.steps_computed,
        "losses": list(run.losses),  # since the last measured step: the next train-loss row needs them
    }
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    return state


def _restore(run: _Run, state: dict) -> int:
    model = run.accelerator.unwrap_model(run.model)
    lacking = model.state_dict().keys() - state["model"].keys()
    if lacking:  # set_state_dict would keep the current (initial) weights of these without a word
        raise TestbedError(f"the training state of step {state['step']} lacks {len(lacking)} model tensors, "
                           f"e.g. {min(lacking)}")
    optim = state["optimizer"]
    if optim["state"] and all(isinstance(k, int) for k in optim["state"]):  # a state written before names
        model.load_state_dict(state["model"])
        run.optimizer.optimizer.load_state_dict(optim)
    else:
        # One key per tensor: torch shards a weight that several modules share (T5's embeddings) under its
        # first name only, and the other names would be copied as plain tensors into sharded ones. Not
        # strict about those other names; `lacking` above has checked that the state holds every name.
        owners = dict(model.named_parameters()) | dict(model.named_buffers())
        weights = {name: value for name, value in state["model"].items() if name in owners}
        set_state_dict(model, run.optimizer.optimizer, model_state_dict=weights, optim_state_dict=optim,
                       options=StateDictOptions(full_state_dict=True, strict=False))
    run.scheduler.load_state_dict(state["scheduler"])
    # The LR of the next step from this run's own schedule: a trunk state carries the LR its writer's
    # schedule set for the step after it, which may already be that run's cooldown.
    for group, base in zip(run.optimizer.param_groups, run.scheduler.base_lrs, strict=True):
        group["lr"] = base * lr_factor(state["step"], run.plan)
    run.scheduler._last_lr = [group["lr"] for group in run.optimizer.param_groups]
    run.batcher.load_state_dict(state["data"])
    run.losses = list(state.get("losses", []))
    torch.set_rng_state(state["rng"])
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    run.steps_computed = state.get("steps_computed", state["step"])
    return state["step"]


def _throughput_rows(run: _Run, base: dict) -> list[dict]:
    tokens, seconds, _ = run.window
    run.window = [0.0, 0.0, 0.0]
    if not seconds:
        return []
    rate = tokens / seconds
    rows = [dict(base, kind="train", name="throughput", metric="tokens_per_second", value=rate)]
    utilisation = throughput.mfu(rate, run.flops_per_token, run.peak, run.world)
    if utilisation is not None:
        rows.append(dict(base, kind="train", name="throughput", metric="mfu", value=utilisation))
    return rows


def _checkpoint(run: _Run, step: int, measured: bool) -> None:
    """Measure and export at a checkpoint step (rows first, then the resumable state)."""
    dicts = _full_state_dicts(run)
    if measured:
        losses = {name: _validation_loss(run, batches) for name, batches in run.val_sets.items()}
        if run.main:
            base = RunDir.base_row(run.config, run.plan, step)
            rows = [dict(base, kind="val_loss", name=name, metric="loss", value=value) for name, value in losses.items()]
            if run.losses:
                rows.append(dict(base, kind="train", name="train", metric="loss",
                                 value=sum(run.losses) / len(run.losses)))
            rows += [dict(base, kind="train", name=source, metric="tokens", value=float(count))
                     for source, count in run.batcher.tokens_by_source().items()]
            rows += _throughput_rows(run, base)
            run.run_dir.append_rows(rows)
            tracking.log_rows(rows)
            sharded = run.accelerator.distributed_type == DistributedType.FSDP
            checkpoint.save_hf(run.run_dir.hf, step, run.accelerator.unwrap_model(run.model), run.tokenizer,
                               state_dict=dicts[0] if sharded else None)
        run.losses = []
    if run.main:
        checkpoint.save_train_state(run.run_dir.ckpt, step, _state(run, step, dicts),
                                    keep=run.config.train.keep_train_states)
    run.accelerator.wait_for_everyone()
