"""Stock Hugging Face model classes built from a ladder rung, and the training objective on their logits.

Nothing custom is registered: every checkpoint loads through the Auto classes anywhere.
- decoder: LlamaForCausalLM (pre-norm, rotary, SwiGLU, untied), or Qwen3ForCausalLM when qk-norm is on
  (the same block plus an RMSNorm on each head's queries and keys: Llama with qk-norm, no patching).
- t5: T5ForConditionalGeneration, v1.1 style (gated-GELU, untied output head, no dropout).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    PretrainedConfig,
    PreTrainedModel,
    Qwen3Config,
    Qwen3ForCausalLM,
    T5Config,
    T5ForConditionalGeneration,
)

from testbed.config import ATTENTION_BACKENDS

CLASSES = {LlamaConfig: LlamaForCausalLM, Qwen3Config: Qwen3ForCausalLM, T5Config: T5ForConditionalGeneration}


def ffn_width(d_model: int) -> int:
    """Gated MLP hidden width: 8/3 d (so the MLP costs about 8 d^2), rounded up to a multiple of 8."""
    return -(-8 * d_model // 3 // 8) * 8


def decoder_config(
    d_model: int, layers: int, heads: int, vocab_size: int, context: int, qk_norm: bool = False
) -> PretrainedConfig:
    """Pre-norm, rotary, SwiGLU, untied embeddings: the over-training study's decoder in Llama's clothes."""
    common: dict[str, Any] = dict(
        vocab_size=vocab_size,
        hidden_size=d_model,
        intermediate_size=ffn_width(d_model),
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=context,
        # No pad id: it would make the embedding's padding_idx, whose row starts at zero and never learns. The
        # EOS that separates documents (id 0) would then enter the network as a zero vector; at position 0
        # it stays zero through every block, each RMSNorm multiplies its gradient by 1/sqrt(eps), and a deep
        # model's gradients overflow to NaN on the first batch that has a row starting with EOS (seen at the
        # reduced ladder's r6 on a GPU). Padding, where there is any, is masked and needs no id in the model.
        tie_word_embeddings=False,
        rms_norm_eps=1e-5,
        bos_token_id=None,
        eos_token_id=0,
        pad_token_id=None,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        attn_implementation="sdpa",
    )
    if qk_norm:
        return Qwen3Config(**common, head_dim=d_model // heads, attention_bias=False, use_sliding_window=False)
    return LlamaConfig(**common)


def t5_config(
    d_model: int, layers: int, heads: int, vocab_size: int, d_ff: int | None = None, tied: bool = False
) -> T5Config:
    """T5 v1.1: gated-GELU MLP, RMS layer norm, relative position buckets, untied head, no dropout.

    tied: the original T5's head instead, the shared embedding with the decoder output scaled by d_model^-0.5
    (a ladder's `tie_embeddings: true`). transformers 5 builds and reads every T5 tied, so stock clients
    (lm-eval's HFLM included) score a tied checkpoint exactly as testbed does; an untied one needs load_lm.

    `layers` is the depth of each stack (encoder and decoder alike). Pad, EOS and decoder start are all
    id 0, the tokenizer's <|endoftext|>.
    """
    # T5Config's dataclass signature omits the PreTrainedConfig keys its __post_init__ takes as **kwargs
    return T5Config(  # type: ignore[call-arg]
        vocab_size=vocab_size,
        d_model=d_model,
        d_kv=d_model // heads,
        d_ff=d_ff or ffn_width(d_model),
        num_layers=layers,
        num_decoder_layers=layers,
        num_heads=heads,
        feed_forward_proj="gated-gelu",
        dropout_rate=0.0,
        tie_word_embeddings=tied,  # transformers 5 ties anyway; this sets scale_decoder_outputs (v1.0 semantics)
        layer_norm_epsilon=1e-6,
        pad_token_id=0,
        eos_token_id=0,
        decoder_start_token_id=0,
        use_cache=False,
        attn_implementation="sdpa",
    )


def _instantiate(config: PretrainedConfig) -> PreTrainedModel:
    model = CLASSES[type(config)](config)
    if isinstance(config, T5Config) and not config.scale_decoder_outputs:  # v1.1; a tied T5 keeps HF's head
        # transformers 5 builds every T5 with lm_head tied to the shared embedding (T5Config forces
        # tie_word_embeddings=True; passing False only switches off the d_model^-0.5 output scaling), so a
        # v1.1 model needs its own head. Saved, both matrices are written; from_pretrained sees they differ
        # and keeps them apart (it logs a one-line warning about it).
        #
        # The head's init: T5 draws word embeddings with std 1, which suits the embedding (it enters
        # pre-norm blocks through RMSNorm, where its scale is harmless) but not an output head whose input is
        # the final RMSNorm's unit-scale output: each logit would have std ~ sqrt(d_model), and the first loss
        # is tens of nats instead of ln(vocab) (measured here: 17 at d_model 24, 165 at d_model 512). The tied original
        # hides this with the output scaling; Mesh-TF T5 v1.1 draws its untied head with std d_model^-0.5
        # (fan-in). Do the same: logits start at unit scale and the first loss is ln(vocab) + ~0.5.
        head = torch.empty_like(model.shared.weight)
        if head.device.type != "meta":
            head.normal_(0.0, config.d_model**-0.5)
        model.lm_head.weight = torch.nn.Parameter(head)
        _keep_head_untied(model)
    return model


def _keep_head_untied(model: PreTrainedModel) -> None:
    """Take the head out of this T5's tie map. A bare `tie_weights()` recomputes the map from the class
    attribute, so the instance gets its own copy without the head (the embeddings stay tied to `shared`)."""
    model._tied_weights_keys = {k: v for k, v in type(model)._tied_weights_keys.items() if k != "lm_head.weight"}
    model.all_tied_weights_keys.pop("lm_head.weight", None)


def untie_t5_head(model: PreTrainedModel, hf_dir: Path) -> None:
    """Keep a T5 v1.1 loaded from `hf_dir` on its own output head, now and after any `tie_weights()`.

    transformers 5 declares T5's head tied to `shared` (see `_instantiate`). from_pretrained keeps a v1.1
    head apart when the checkpoint's differs, but a later `tie_weights()` ties it again: lm-eval's HFLM
    makes that call after loading, and so evaluated another model, with the embedding as its head.
    """
    if not model.config.is_encoder_decoder:
        return
    head, shared = model.lm_head, model.shared
    assert isinstance(head, torch.nn.Linear) and isinstance(shared, torch.nn.Embedding)  # T5's
    if head.weight is shared.weight:
        saved = _saved_tensor(Path(hf_dir), "lm_head.weight")
        if saved is None or torch.equal(saved.to(shared.weight), shared.weight):
            return  # a truly tied checkpoint
        head.weight = torch.nn.Parameter(saved.to(shared.weight))
    _keep_head_untied(model)


def declare_untied_head(hf_dir: Path) -> None:
    """Make a saved T5's config.json say what the checkpoint is: an untied head, outputs not rescaled.

    transformers 5 writes `tie_word_embeddings: true` for every T5 (T5Config forces it; `scale_decoder_outputs:
    false` carries the v1.1 semantics). A reader that trusts the flag then ties the head to the embedding:
    transformers 4 at load time (it also rescales the decoder output by d_model^-0.5 when tied), any 5.x
    `tie_weights()` call. `false` is what Google's v1.1 checkpoints say; transformers 5 reads it as
    scale_decoder_outputs=false, so the numbers are the same; from_pretrained keeps the two matrices apart.
    """
    path = Path(hf_dir) / "config.json"
    config = json.loads(path.read_text())
    if config.get("model_type") != "t5" or config.get("scale_decoder_outputs"):  # not a T5, or a tied one
        return
    config.update(tie_word_embeddings=False, scale_decoder_outputs=False)
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _saved_tensor(hf_dir: Path, name: str) -> torch.Tensor | None:
    """One tensor of a safetensors checkpoint (single file or sharded), or None if it is not there."""
    from safetensors import safe_open

    index = hf_dir / "model.safetensors.index.json"
    if index.is_file():
        shard = json.loads(index.read_text())["weight_map"].get(name)
        path = hf_dir / shard if shard else None
    else:
        path = hf_dir / "model.safetensors"
    if path is None or not path.is_file():
        return None
    with safe_open(str(path), framework="pt") as handle:
        return handle.get_tensor(name) if name in handle.keys() else None


def build_model(config: PretrainedConfig, seed: int | None = None) -> PreTrainedModel:
    """The stock class for `config`, initialised from `seed` (the same seed gives the same weights)."""
    if seed is not None:
        torch.manual_seed(seed)
    return _instantiate(config)


def optimizer_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW parameter groups (as nanoGPT's configure_optimizers): weight decay on the >= 2-D tensors
    (matrices, embeddings), none on the rest (norms, biases)."""
    params = list(model.parameters())
    return [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]


def count_params(config: PretrainedConfig) -> tuple[int, int]:
    """(total, non-embedding) parameters of the built model, counted on the meta device (no memory).

    Non-embedding excludes only the input embedding (shared by T5's two stacks), as the over-training
    study counts it: the untied output head is a matrix multiply and is counted.
    """
    with torch.device("meta"):
        model = _instantiate(config)
    total = sum(p.numel() for p in model.parameters())
    embedding = model.get_input_embeddings().weight
    assert isinstance(embedding, torch.Tensor)  # a parameter, not a submodule
    return total, total - embedding.numel()


def attention_backend(name: str):
    """A context in which scaled_dot_product_attention runs on one backend (testbed.config.ATTENTION_BACKENDS);
    "auto": PyTorch's own choice per shape."""
    if name == "auto":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([getattr(SDPBackend, ATTENTION_BACKENDS[name])])


def batch_loss(model, batch: dict, z_loss: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(cross-entropy summed over labelled tokens, the same plus z-loss) for one (micro-)batch.

    The batch is the model's keyword arguments plus `labels` (-100: not counted); the loss is computed
    here from the logits rather than by the model, so z-loss (z_loss * logsumexp(logits)^2 per token, as in
    PaLM and the over-training study) and any normalisation stay in the loop's hands.
    """
    labels = batch["labels"]
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = model(**inputs, use_cache=False).logits.float().flatten(0, 1)
    flat = labels.flatten()
    ce = F.cross_entropy(logits, flat, ignore_index=-100, reduction="sum")
    if not z_loss:
        return ce, ce
    mask = flat != -100
    z = torch.logsumexp(logits[mask], dim=-1).square().sum()
    return ce, ce + z_loss * z
