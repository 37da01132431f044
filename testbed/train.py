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
import os
import signal
import time
from pathlib import Path

import numpy as np
import torch
from accelerate.utils import DistributedType
from tqdm.auto import tqdm

from testbed import checkpoint, preempt, tracking
from testbed.config import RunConfig
from testbed.errors import TestbedError
from testbed.ladder import RunPlan, plan_run, run_id
from testbed.models import attention_backend, batch_loss
from testbed.preempt import Preempted
from testbed.rundir import RunDir, main_process
from testbed.training_run import TrainingRun, world_size
from testbed.trunk import Trunk, trunk_dir

__all__ = ["NonFiniteLoss", "train", "train_stage"]


class NonFiniteLoss(RuntimeError):
    step: int  # the optimizer step (1-based) whose loss was not finite, set where raised


def _injected_step(fault: str, rid: str) -> int | None:
    """Fault injection for tests: TESTBED_INJECT_NAN=<run_id>@<step> makes that step's loss NaN;
    TESTBED_INJECT_SIGTERM=<run_id>@<step> sends the process a SIGTERM during that step."""
    target, _, step = os.environ.get(f"TESTBED_INJECT_{fault}", "").partition("@")
    return int(step) if target == rid and step else None


def check_fit(config: RunConfig, plan: RunPlan, world: int) -> None:
    """Refuse, before anything is written, a run whose batch cannot be split over `world` processes."""
    if plan.batch_size % (plan.micro_batch(world) * world):
        raise TestbedError(
            f"config: train.batch_size={plan.batch_size}: not a multiple of {world} processes x micro-batch "
            f"{plan.micro_batch(world)} (train.micro_batch_size)"
        )
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
    run_dir = RunDir.of(config).prepare(config, against="given") if main else RunDir.of(config)
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


def _train(config: RunConfig, plan: RunPlan, run_dir: RunDir, progress: bool) -> int:
    run = TrainingRun.build(config, plan, run_dir)
    if run.main:
        run.write_meta()
    state = checkpoint.load_train_state(run_dir.ckpt)
    start = run.load_state_dict(state) if state is not None else 0
    if run.main:
        run_dir.drop_rows_after(start, kinds=("val_loss", "train", "train_loss"))
    if preempt.requested():  # SIGTERM during setup: nothing new to checkpoint
        raise Preempted(f"SIGTERM before training resumed at step {start}")
    bar = tqdm(
        total=plan.steps,
        initial=start,
        unit="step",
        disable=not progress,
        mininterval=1.0,
        desc=run_id(config),
        dynamic_ncols=True,
    )
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
    run.finish()
    return plan.steps


def _through_trunk(run: TrainingRun, bar) -> int:
    """Bring a WSD run to its cooldown start from the shared trunk, extending the trunk if needed."""
    plan = run.plan
    trunk = Trunk(trunk_dir(run.config, plan, run.run_dir.path))
    if run.main:
        trunk.request(plan.cooldown_start)
    with trunk.lock(enabled=run.main):
        run.accelerator.wait_for_everyone()
        state = trunk.load(at_most=plan.cooldown_start)
        start = run.load_state_dict(state) if state is not None else 0
        run.steps_computed = 0  # the trunk's steps so far were computed by whoever wrote the state
        bar.update(start)

        def act(done: int, save: bool) -> None:
            if save or run.stop:
                state = run.state_dict(done)
                if run.main:
                    trunk.save(done, state)
            if run.stop and done < plan.cooldown_start:
                raise Preempted(f"SIGTERM: trunk checkpointed at step {done}")

        _loop(run, start, plan.cooldown_start, bar, lambda done: run.main and trunk.requested(done), act)
        run.accelerator.wait_for_everyone()
    return plan.cooldown_start


def _loop(run: TrainingRun, start: int, stop: int, bar, propose, act) -> None:
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
        run.record_step(step + 1, loss)  # the train_loss rows and the progress record
        run.steps_computed += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
        if run.warm:  # everything of the step but checkpoints (act), which are timed apart from training
            spent = (
                plan.tokens_before(step + 1) - plan.tokens_before(step),
                time.perf_counter() - began,
                time.process_time() - cpu,
            )
            for meter in (run.window, run.total):
                meter[:] = [a + b for a, b in zip(meter, spent, strict=True)]
        run.warm = True
        act(step + 1, save)


def _micro_batches(run: TrainingRun, step: int) -> tuple[list[dict], int]:
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


def _step(run: TrainingRun, step: int, nan_step: int | None, want_save: bool) -> tuple[float, bool]:
    """One optimizer step; returns the global batch's mean cross-entropy and the agreed save flag."""
    accelerator, model = run.accelerator, run.model
    micro_batches, labelled = _micro_batches(run, step)
    scale = run.world / labelled  # DDP averages gradients over processes; undo that, divide by global tokens
    ce_sum = torch.zeros((), device=accelerator.device)
    for i, micro in enumerate(micro_batches):
        micro = {name: value.to(accelerator.device, non_blocking=True) for name, value in micro.items()}
        last = i == len(micro_batches) - 1
        with contextlib.nullcontext() if last else accelerator.no_sync(model):
            with accelerator.autocast(), attention_backend(run.config.train.attention):
                ce, total = batch_loss(model, micro, run.config.train.z_loss)
            accelerator.backward(total * scale)  # runs the kernels the forward chose
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


def _checkpoint(run: TrainingRun, step: int, measured: bool) -> None:
    """Measure and export at a checkpoint step (rows first, then the resumable state)."""
    dicts = run.full_state_dicts()
    if measured:
        losses = {name: run.validation_loss(batches) for name, batches in run.val_sets.items()}
        if run.main:
            base, floors = run.run_dir.base_row(run.config, run.plan, step), run.val_floors
            rows = [
                dict(base, kind="val_loss", name=name, metric="loss", value=loss, entropy_floor=floors.get(name))
                for name, loss in losses.items()
            ]
            if run.losses:
                rows.append(
                    dict(base, kind="train", name="train", metric="loss", value=sum(run.losses) / len(run.losses))
                )
            rows += [
                dict(base, kind="train", name=source, metric="tokens", value=float(count))
                for source, count in run.batcher.tokens_by_source().items()
            ]
            rows += run.throughput_rows(base)
            run.run_dir.append_rows(rows)
            tracking.log_rows(rows)
            sharded = run.accelerator.distributed_type == DistributedType.FSDP
            checkpoint.save_hf(
                run.run_dir.hf,
                step,
                run.accelerator.unwrap_model(run.model),
                run.tokenizer,
                state_dict=dicts[0] if sharded else None,
            )
        run.losses = []
    if run.main:
        checkpoint.save_train_state(
            run.run_dir.ckpt, step, run.state_dict(step, dicts), keep=run.config.train.keep_train_states
        )
    run.accelerator.wait_for_everyone()
