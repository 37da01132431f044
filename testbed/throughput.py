"""Model FLOPs per token and model FLOPs utilisation (MFU) against a table of device peaks.

MFU = achieved model FLOP/s / (peak FLOP/s x devices; testbed/devices.py), with model FLOPs counted as PaLM
does (appendix B): 6 per matrix-multiply parameter per token, plus the attention score and value products, 12 x layers x
d_model x context per token. Recomputation and padding are not counted: this is MFU, not HFU.
Each architecture's spec (testbed/arch.py) names its count: `decoder_flops_per_token`, `t5_flops_per_token`.
"""

from __future__ import annotations

import os

import torch

from testbed.data.span_corruption import noise_layout
from testbed.devices import by_name


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type} ({torch.get_num_threads()} threads)"


def peak_flops(device: torch.device) -> float | None:
    """Peak FLOP/s of one device, or None when unknown (CPUs, unlisted GPUs: then no MFU is reported)."""
    if os.environ.get("TESTBED_PEAK_FLOPS"):
        return float(os.environ["TESTBED_PEAK_FLOPS"])
    if device.type != "cuda":
        return None
    known = by_name(device_name(device))
    return known.peak_flops if known else None


def _matmul_params(module: torch.nn.Module, exclude: torch.nn.Module | None = None) -> int:
    skip = {id(p) for p in exclude.parameters()} if exclude is not None else set()
    return sum(p.numel() for p in module.parameters() if p.ndim >= 2 and id(p) not in skip)


def decoder_flops_per_token(model, seq_len: int) -> float:
    """Training FLOPs per token of a stock HF decoder (Llama, Qwen3)."""
    config = model.config
    matmul = _matmul_params(model, model.get_input_embeddings())
    return 6 * matmul + 12 * config.num_hidden_layers * config.hidden_size * seq_len


def t5_flops_per_token(model, seq_len: int) -> float:
    """Training FLOPs per budget token of a stock HF T5: per raw token before span corruption, with the
    encoder and decoder lengths that corruption gives a row of `seq_len` tokens."""
    config = model.config
    embed = model.get_input_embeddings()
    noise, spans = noise_layout(seq_len)
    enc_len, dec_len = seq_len - noise + spans + 1, noise + spans + 1
    d = config.d_model
    encoder = 6 * _matmul_params(model.encoder, embed) + 12 * config.num_layers * d * enc_len
    decoder = 6 * (
        _matmul_params(model.decoder, embed) + model.lm_head.weight.numel()
    ) + 12 * config.num_decoder_layers * d * (dec_len + enc_len)  # self- and cross-attention
    return (encoder * enc_len + decoder * dec_len) / seq_len


def mfu(
    tokens_per_second: float | None, model_flops_per_token: float, peak: float | None, devices: int
) -> float | None:
    if not peak or not tokens_per_second:
        return None
    return tokens_per_second * model_flops_per_token / (peak * devices)
