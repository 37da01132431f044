"""One training run, end to end: plan, data, model, loop, checkpoints, rows, DONE.

The run directory is the only state. A run that finds DONE returns at once; one that finds a
training checkpoint resumes from it and ends bit-for-bit where an uninterrupted run would (on CPU).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import time
from importlib import metadata
from pathlib import Path

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

from testbed import checkpoint, rundir, tracking
from testbed.config import RunConfig, load_run_config, to_yaml
from testbed.data.sources import known_sources
from testbed.data.stream import MixtureBatcher, TokenStream, rows_tensor
from testbed.data.tokenizer import load_tokenizer, tokenizer_key
from testbed.errors import TestbedError
from testbed.evaluate.loss import token_loss, validation_loss
from testbed.ladder import RunPlan, model_config, plan_run, run_id
from testbed.models import build_decoder
from testbed.results import append_rows, drop_rows_after


class NonFiniteLoss(RuntimeError):
    pass


class Preempted(RuntimeError):
    """SIGTERM arrived: the state was checkpointed and the run can resume."""


def run_dir_of(config: RunConfig) -> Path:
    return Path(config.out_dir) / config.sweep / run_id(config)


def lr_factor(step: int, plan: RunPlan) -> float:
    """Linear warmup to the peak, then cosine to final_lr at the run's last step (horizon = this run)."""
    if step < plan.warmup_steps:
        return (step + 1) / plan.warmup_steps
    progress = (step - plan.warmup_steps) / max(plan.steps - plan.warmup_steps - 1, 1)
    floor = plan.final_lr / plan.lr
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def _injected_nan_step(rid: str) -> int | None:
    """Fault injection for tests of the failure path: TESTBED_INJECT_NAN=<run_id>@<step>."""
    target, _, step = os.environ.get("TESTBED_INJECT_NAN", "").partition("@")
    return int(step) if target == rid and step else None


def _versions() -> dict:
    versions = {pkg: metadata.version(pkg) for pkg in ("torch", "transformers", "accelerate", "lm_eval", "tokenizers")}
    try:
        import subprocess

        sha = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    versions["testbed"] = sha or "unknown"
    return versions


def prepare_run_dir(config: RunConfig) -> Path:
    """Create the run dir with config.yaml, or check that an existing one holds the same config.

    The saved file is read through the current schema, so fields added since it was written take
    their defaults and do not orphan finished runs.
    """
    run_dir = run_dir_of(config)
    saved = run_dir / "config.yaml"
    if saved.is_file():
        if load_run_config(saved) != config:
            raise TestbedError(f"{saved}: the run dir holds a different config; use another sweep name or remove it")
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        tmp = saved.with_name("config.yaml.tmp")
        tmp.write_text(to_yaml(config))
        os.replace(tmp, saved)
    return run_dir


def base_row(config: RunConfig, plan: RunPlan, step: int) -> dict:
    tokens = plan.tokens_before(step)
    return {
        "run_id": run_id(config), "sweep": config.sweep, "arch": config.model.arch, "size": config.model.size,
        "params": plan.params, "params_nonembed": plan.params_nonembed, "dataset": config.data.name,
        "multiplier": config.train.multiplier, "seed": config.train.seed, "step": step, "tokens": tokens,
        "flops": 6.0 * plan.params * tokens, "final": step == plan.steps,
    }


def train(config: RunConfig, progress: bool = True) -> Path:
    """Train (or resume, or skip) the run of `config`; returns its run dir."""
    plan = plan_run(config)
    run_dir = prepare_run_dir(config)
    if (run_dir / rundir.DONE).is_file():
        return run_dir
    (run_dir / rundir.LOCK).write_text(f"{os.getpid()}\n")
    tracking.start(config, run_dir, plan)
    step = None
    try:
        step = _train(config, plan, run_dir, progress)
    except Preempted:
        raise
    except Exception as err:
        reason = f"{type(err).__name__}: {err}".splitlines()[0]
        rundir.mark_failed(run_dir, reason, getattr(err, "step", step))
        raise
    finally:
        (run_dir / rundir.LOCK).unlink(missing_ok=True)
        tracking.finish(ok=step is not None)
    rundir.mark_done(run_dir)
    return run_dir


def _validation_sets(config: RunConfig, plan: RunPlan, tokenizer, key: str) -> dict[str, torch.Tensor]:
    sources = known_sources()
    names = config.data.validation or list(sources)
    n_rows = max(1, config.data.val_tokens // plan.seq_len)
    return {
        name: rows_tensor(TokenStream(sources[name], "valid", tokenizer, key, config.data.world_seed), 0, n_rows,
                          plan.seq_len)
        for name in names
    }


def _train(config: RunConfig, plan: RunPlan, run_dir: Path, progress: bool) -> int:
    train_cfg = config.train
    if train_cfg.threads:
        torch.set_num_threads(train_cfg.threads)
    accelerator = Accelerator(cpu=train_cfg.device == "cpu", mixed_precision="bf16" if
                              train_cfg.device != "cpu" and torch.cuda.is_available() else "no")
    device = accelerator.device
    rundir.write_json(run_dir / "meta.json", {
        "versions": _versions(), "run_id": run_id(config), "device": str(device),
        "plan": dataclasses.asdict(plan), "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
    })

    key = tokenizer_key(plan.vocab_size, config.data.world_seed)
    tokenizer = load_tokenizer(plan.vocab_size, config.data.world_seed)
    sources = known_sources()
    streams = {name: TokenStream(sources[name], "train", tokenizer, key, config.data.world_seed)
               for name in config.data.mixture}
    batcher = MixtureBatcher(streams, config.data.mixture, plan.seq_len, plan.batch_size, plan.tokens)
    batcher.prefetch()
    val_sets = _validation_sets(config, plan, tokenizer, key)

    model = build_decoder(model_config(config), seed=train_cfg.seed)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": train_cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=plan.lr, betas=(0.9, train_cfg.beta2), eps=1e-8,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, plan))

    start = 0
    state = checkpoint.load_train_state(run_dir / "ckpt")
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        batcher.load_state_dict(state["data"])
        torch.set_rng_state(state["rng"])
        start = state["step"]
    drop_rows_after(run_dir, start, kinds=("val_loss", "train"))
    model, optimizer = accelerator.prepare(model, optimizer)

    nan_step = _injected_nan_step(run_id(config))
    stop = {"flag": False}
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.update(flag=True))
    bar = tqdm(total=plan.steps, initial=start, unit="step", disable=not progress, mininterval=1.0,
               desc=run_id(config), dynamic_ncols=True)
    losses: list[float] = []
    rate = None
    t0, tokens0 = time.perf_counter(), plan.tokens_before(start)
    try:
        for step in range(start, plan.steps):
            inputs, labels = (t.to(device) for t in batcher.next_batch())
            with accelerator.autocast():
                loss = token_loss(model, inputs, labels)
            if step + 1 == nan_step:
                loss = loss * float("nan")
            if not torch.isfinite(loss):
                err = NonFiniteLoss(f"non-finite loss {loss.item()} at step {step + 1}")
                err.step = step + 1
                raise err
            accelerator.backward(loss)
            if train_cfg.grad_clip:
                accelerator.clip_grad_norm_(model.parameters(), train_cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            done = step + 1
            rate = (plan.tokens_before(done) - tokens0) / (time.perf_counter() - t0)
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}", tok_s=f"{rate:,.0f}", refresh=False)
            if done in plan.checkpoint_steps or stop["flag"]:
                _checkpoint(config, plan, run_dir, done, model, optimizer, scheduler, batcher, tokenizer,
                            val_sets, losses, accelerator, measured=done in plan.checkpoint_steps)
                losses = []
            if stop["flag"] and done < plan.steps:
                raise Preempted(f"SIGTERM: checkpointed at step {done}")
    finally:
        bar.close()
        signal.signal(signal.SIGTERM, previous)
    seen = batcher.tokens_by_source()
    if sum(seen.values()) != plan.tokens:
        raise RuntimeError(f"tokens seen {sum(seen.values())} != budget {plan.tokens}")
    meta = json.loads((run_dir / "meta.json").read_text())
    meta.update(finished=time.strftime("%Y-%m-%dT%H:%M:%S"), tokens_per_second=rate,
                tokens_seen=plan.tokens, tokens_by_source=seen)
    rundir.write_json(run_dir / "meta.json", meta)
    return plan.steps


def _checkpoint(config, plan, run_dir, step, model, optimizer, scheduler, batcher, tokenizer, val_sets,
                losses, accelerator, measured: bool) -> None:
    """Measure and export at a checkpoint step (rows first, then the resumable state)."""
    unwrapped = accelerator.unwrap_model(model)
    if measured:
        base = base_row(config, plan, step)
        rows = [dict(base, kind="val_loss", name=name, metric="loss",
                     value=validation_loss(unwrapped, rows, plan.batch_size, accelerator.device))
                for name, rows in val_sets.items()]
        if losses:
            rows.append(dict(base, kind="train", name="train", metric="loss", value=sum(losses) / len(losses)))
        rows += [dict(base, kind="train", name=source, metric="tokens", value=float(count))
                 for source, count in batcher.tokens_by_source().items()]
        append_rows(run_dir, rows)
        tracking.log_rows(rows)
        checkpoint.save_hf(run_dir / "hf", step, unwrapped, tokenizer)
    state = {
        "model": unwrapped.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "data": batcher.state_dict(), "rng": torch.get_rng_state(), "step": step,
        "tokens": plan.tokens_before(step),
    }
    checkpoint.save_train_state(run_dir / "ckpt", step, state, keep=config.train.keep_train_states)
