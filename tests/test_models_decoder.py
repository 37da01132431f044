"""The decoder's embedding: the EOS that separates documents is a learned token, not a frozen zero pad row."""

import pytest
import torch
import torch.nn.functional as F

from testbed.models import build_model, decoder_config


@pytest.mark.parametrize("qk_norm", [False, True])
def test_a_row_starting_with_eos_keeps_a_deep_models_gradients_finite(qk_norm):
    # 48 narrow blocks: with EOS as a padding_idx (a zero row) this row's gradient overflowed to NaN
    model = build_model(decoder_config(64, 48, 4, 512, 128, qk_norm=qk_norm), seed=0)
    embedding = model.get_input_embeddings()
    assert embedding.padding_idx is None and embedding.weight[0].norm() > 0
    ids = torch.randint(1, 512, (1, 128), generator=torch.Generator().manual_seed(1))
    ids[0, 0] = 0  # EOS, id 0
    logits = model(input_ids=ids, use_cache=False).logits
    F.cross_entropy(logits.flatten(0, 1), ids.roll(-1, 1).flatten()).backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf"))
    assert torch.isfinite(norm) and 0 < norm < 100
    assert embedding.weight.grad[0].norm() > 0  # and EOS learns
