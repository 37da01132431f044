"""Stock Hugging Face model classes built from a ladder rung. Nothing custom: checkpoints load anywhere."""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedModel


def ffn_width(d_model: int) -> int:
    """SwiGLU hidden width: 8/3 d (so the MLP costs about 8 d^2), rounded up to a multiple of 8."""
    return -(-8 * d_model // 3 // 8) * 8


def decoder_config(d_model: int, layers: int, heads: int, vocab_size: int, seq_len: int) -> LlamaConfig:
    """Pre-norm, rotary, SwiGLU, untied embeddings: the over-training study's decoder in Llama's clothes."""
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=d_model,
        intermediate_size=ffn_width(d_model),
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=seq_len,
        tie_word_embeddings=False,
        rms_norm_eps=1e-5,
        bos_token_id=None,
        eos_token_id=0,
        pad_token_id=0,
        attn_implementation="sdpa",
    )


def build_decoder(config: LlamaConfig, seed: int | None = None) -> PreTrainedModel:
    if seed is not None:
        torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def count_params(config: LlamaConfig) -> tuple[int, int]:
    """(total, non-embedding) parameters of the built model, counted on the meta device (no memory).

    Non-embedding excludes only the input embedding, as the over-training study counts it
    (its output head is untied and counted).
    """
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    total = sum(p.numel() for p in model.parameters())
    return total, total - model.get_input_embeddings().weight.numel()
