"""A rung's model as the benchmark scripts measure it (scripts/gpu_check.py, scripts/profile_gpu_step.py)."""

from __future__ import annotations

import torch

from testbed.arch import get_arch
from testbed.ladder import model_config, plan_run
from testbed.models import build_model
from testbed.resolve import load_run_config


def rung_model(ladder: str, size: str, heads: int | None = None, device: str | torch.device = "cpu"):
    """(run config, plan, a freshly built model of the rung on `device`, its model FLOPs per token);
    `heads` replaces the rung's head count (head_dim = d_model / heads)."""
    config = load_run_config(None, [f"model.ladder={ladder}", f"model.size={size}"])
    plan = plan_run(config)
    hf = model_config(config)
    if heads:
        hf.num_attention_heads = hf.num_key_value_heads = heads
        hf.head_dim = hf.hidden_size // heads
    model = build_model(hf, seed=0)
    torch.nn.Module.to(model, device)  # in place; PreTrainedModel.to's wrapper confuses mypy
    return config, plan, model, get_arch(config.model.arch).flops_per_token(model, plan.seq_len)
