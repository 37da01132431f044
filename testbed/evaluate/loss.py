"""Validation loss: mean next-token cross-entropy (nats) over a fixed set of rows."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def token_loss(model, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over labelled positions (labels of -100 are ignored)."""
    logits = model(input_ids=inputs, use_cache=False).logits
    return F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100)


@torch.no_grad()
def validation_loss(model, rows: torch.Tensor, batch_size: int, device) -> float:
    """rows: (n, seq_len + 1) token ids. Equal-length rows, so the mean of batch means is the token mean."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size].to(device)
        total += token_loss(model, chunk[:, :-1], chunk[:, 1:]).item() * len(chunk)
        count += len(chunk)
    model.train(was_training)
    return total / count
