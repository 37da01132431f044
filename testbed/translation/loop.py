"""The models of translation finetuning: loading one, finetuning it over an LR grid, its reference
cross-entropy and its greedy translations."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn.functional as F

from testbed.checkpoint import step_dir
from testbed.errors import TestbedError, one_line
from testbed.models import optimizer_groups
from testbed.translation.data import Encoded, Formatter
from testbed.translation.protocol import Protocol


class Diverged(TestbedError):
    """Finetuning reached a non-finite loss: that LR loses the grid."""


def summed_ce(model, inputs: dict, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(cross-entropy summed over labelled tokens, per-row sums) of one batch."""
    logits = model(**inputs, use_cache=False).logits.float()
    per_token = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="none")
    per_row = per_token.view(labels.shape).sum(dim=1)
    return per_row.sum(), per_row


@torch.no_grad()
def reference_ce(model, fmt: Formatter, items: list[Encoded], batch_size: int) -> tuple[float, list[float]]:
    """Mean cross-entropy per reference token (nats) and per-sentence means, teacher-forced."""
    model.eval()
    total, tokens, per_sentence = 0.0, 0, []
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        inputs, labels = fmt.batch(chunk)
        ce, rows = summed_ce(model, inputs, labels)
        counts = (labels != -100).sum(dim=1)
        total += ce.item()
        tokens += int(counts.sum())
        per_sentence += (rows / counts).tolist()
    return total / tokens, per_sentence


def finetune(model, fmt: Formatter, train: list[Encoded], protocol: Protocol, lr: float, seed: int):
    """Full-weight AdamW at a constant LR for protocol.train_steps(len(train)) steps over shuffled epochs of
    `train`; `seed` orders the epochs."""
    model.train()
    optimizer = torch.optim.AdamW(optimizer_groups(model, protocol.weight_decay), lr=lr, betas=(0.9, 0.98))
    generator = torch.Generator().manual_seed(seed)
    order: list[int] = []
    losses = []
    for _ in range(protocol.train_steps(len(train))):
        batch: list[Encoded] = []
        while len(batch) < min(protocol.batch_size, len(train)):
            if not order:
                order = torch.randperm(len(train), generator=generator).tolist()
            batch.append(train[order.pop()])
        inputs, labels = fmt.batch(batch)
        ce, _ = summed_ce(model, inputs, labels)
        loss = ce / (labels != -100).sum()
        if not torch.isfinite(loss):
            raise Diverged(f"finetuning diverged at lr={lr:g} (loss {loss.item()})")
        loss.backward()
        if protocol.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), protocol.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    model.eval()
    return losses


def trained_copy(model, fmt: Formatter, train: list[Encoded], protocol: Protocol, lr: float, seed: int):
    """(a copy of `model` finetuned at `lr`, its training losses); `seed` fixes its batch order and dropout."""
    torch.manual_seed(seed)
    candidate = copy.deepcopy(model)
    return candidate, finetune(candidate, fmt, train, protocol, lr, seed)


def tune(model, fmt: Formatter, train: list[Encoded], valid: list[Encoded], protocol: Protocol, seed: int):
    """(LR, finetuned copy, grid): a copy finetuned with `seed` at each LR of the protocol (`model` is not
    modified); the lowest validation cross-entropy wins. The grid lists each LR's outcome for the summary."""
    grid, best = [], None
    for lr in protocol.lrs:
        try:
            candidate, losses = trained_copy(model, fmt, train, protocol, lr, seed)
            valid_ce = reference_ce(candidate, fmt, valid, protocol.decode_batch)[0]
        except Diverged as err:  # a diverged LR loses the grid, it does not fail the combo
            grid.append({"lr": lr, "valid_cross_entropy": None, "error": str(err)})
            continue
        grid.append({"lr": lr, "valid_cross_entropy": valid_ce, "train_loss_last": losses[-1]})
        if best is None or valid_ce < best[0]:
            best = (valid_ce, lr, candidate)
    if best is None:
        raise Diverged(f"finetuning diverged at every LR of {protocol.lrs}")
    return best[1], best[2], grid


@torch.no_grad()
def greedy_decode(model, fmt: Formatter, prompts: list[list[int]], protocol: Protocol) -> list[str]:
    """Greedy continuations (HF generate, KV cache), cut at EOS. Prompts are batched in order of length, so a
    batch wastes few steps on rows already done; decoder prompts are left-padded (masked, positions from the
    mask), T5 sources right-padded."""
    model.eval()
    out: dict[int, str] = {}  # prompt index -> its continuation: the batches cover every prompt
    by_length = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    for start in range(0, len(prompts), protocol.decode_batch):
        group = by_length[start : start + protocol.decode_batch]
        ids, mask = _padded([prompts[i] for i in group], fmt.pad, left=not fmt.seq2seq)
        generated = model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=protocol.max_new_tokens,
            do_sample=False,
            num_beams=1,
            eos_token_id=fmt.eos,
            pad_token_id=fmt.pad,
            use_cache=True,
        )
        if not fmt.seq2seq:
            generated = generated[:, ids.shape[1] :]
        for row, i in enumerate(group):
            tokens = generated[row].tolist()
            if fmt.seq2seq and tokens and tokens[0] == fmt.pad:
                tokens = tokens[1:]  # the decoder start token
            if fmt.eos in tokens:
                tokens = tokens[: tokens.index(fmt.eos)]
            out[i] = fmt.tok.decode(tokens, skip_special_tokens=True).strip()
    return [out[i] for i in range(len(prompts))]


def _padded(rows: list[list[int]], pad: int, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention mask) of token lists padded to the longest, on the left or on the right."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        where = slice(width - len(r), width) if left else slice(0, len(r))
        ids[i, where] = torch.tensor(r)
        mask[i, where] = 1
    return ids, mask


def load_checkpoint(hf_dir: Path):
    """(model, tokenizer, seq2seq) of a save_pretrained dir; TestbedError naming it when unusable."""
    from transformers import AutoTokenizer

    from testbed.arch import checkpoint_arch
    from testbed.evaluate.harness import check_checkpoint

    arch = checkpoint_arch(check_checkpoint(hf_dir))
    try:
        tokenizer = AutoTokenizer.from_pretrained(hf_dir)
        model = arch.auto_model().from_pretrained(hf_dir, dtype=torch.float32)
    except Exception as exc:
        raise TestbedError(f"{hf_dir}: cannot load the checkpoint ({one_line(exc)})") from exc
    arch.after_load(model, hf_dir)
    check_vocab(hf_dir, tokenizer, model)
    return model, tokenizer, arch.finetune_format == "seq2seq"


def initial_model(run_dir: Path, like_step: int, seed: int):
    """The run's initialisation: the checkpoint's architecture built from the run's seed (as train does)."""
    from transformers import AutoConfig, AutoTokenizer

    from testbed.arch import checkpoint_arch
    from testbed.evaluate.harness import check_checkpoint
    from testbed.models import build_model

    hf_dir = step_dir(run_dir / "hf", like_step)
    check_checkpoint(hf_dir)
    model_config = AutoConfig.from_pretrained(hf_dir)
    model = build_model(model_config, seed=seed)
    tokenizer = AutoTokenizer.from_pretrained(hf_dir)
    check_vocab(hf_dir, tokenizer, model)
    return model.float().eval(), tokenizer, checkpoint_arch(model_config.to_dict()).finetune_format == "seq2seq"


def check_vocab(where, tokenizer, model) -> None:
    embeddings = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > embeddings or tokenizer.eos_token_id is None:
        raise TestbedError(
            f"{where}: tokenizer has {len(tokenizer)} tokens (eos {tokenizer.eos_token_id}) but the "
            f"model embeds {embeddings}; the tokenizer does not belong to this model"
        )
