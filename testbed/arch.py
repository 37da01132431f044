"""Architectures: one `ArchSpec` per model family, in one registry (torchtitan's `model_spec` style).

Everything a run does differently for a decoder-only and an encoder-decoder model is a field of its spec:
the Hugging Face config built from a ladder rung, the rung mapping of a ladder file, the run-id prefix,
the tokens the model adds to the tokenizer's vocabulary, the training objective, the FLOPs per token, how
lm-eval and finetuning load and feed a checkpoint, and the preparation FSDP needs. The rest of testbed asks
the spec (`get_arch(config.model.arch)`, or `checkpoint_arch(config.json)` for a saved checkpoint) and never
tests an architecture's name.

Adding an architecture is one entry (here, or from a plugin before the run is resolved):

    register(ArchSpec(
        name="wide_decoder", run_prefix="wdec", rung_key="sizes",      # rungs shared with the decoder
        build_config=my_hf_config,                                     # (rung, vocab_size, context, qk_norm)
        objective=next_token, flops_per_token=decoder_flops_per_token,
        encoder_decoder=False, lm_eval_backend="causal", auto_class="AutoModelForCausalLM",
        finetune_format="concat"))

or `register(dataclasses.replace(get_arch("decoder"), name=..., run_prefix=...))`. `model.arch=wide_decoder`
is then accepted, planned, trained, evaluated and named `wdec-...`. A spec with rungs of its own names a new
`rung_key`, which is also a field of `testbed.ladder.Ladder` (the ladder files' schema).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from transformers import PretrainedConfig, PreTrainedModel

from analysis.registry import Registry
from testbed.data.span_corruption import SpanCorruption, add_sentinels, sentinel_count
from testbed.errors import TestbedError
from testbed.models import decoder_config, t5_config, untie_t5_head
from testbed.throughput import decoder_flops_per_token, t5_flops_per_token

# objective(inputs, labels, key) -> the model batch (keyword arguments plus `labels`); `key` seeds any
# randomness of the objective ((seed, step) in training, a fixed seed for validation).
Objective = Callable[[Any, Any, Any], dict]


def _nothing(*_: object) -> None:
    return None


@dataclass(frozen=True)
class ArchSpec:
    name: str  # the value of `model.arch` and of the results' `arch` column
    run_prefix: str  # run and trunk ids: <prefix>-<size>-<dataset>-m<multiplier>-seed<seed>
    rung_key: str  # the ladder file's mapping of this architecture's rungs: sizes | t5_sizes
    build_config: Callable[..., PretrainedConfig]  # (rung, vocab_size, context, qk_norm) -> the HF config
    objective: Callable[[Any, int], Objective]  # (tokenizer, context) -> how stream rows become a batch
    flops_per_token: Callable[[PreTrainedModel, int], float]  # (model, seq_len): training FLOPs per budget token
    encoder_decoder: bool  # config.json's `is_encoder_decoder`: how a saved checkpoint is recognised
    lm_eval_backend: str  # lm-eval HFLM's `backend`: causal | seq2seq
    auto_class: str  # the transformers Auto class its checkpoints load with
    finetune_format: str  # concat: prompt + target in one sequence | seq2seq: source to the encoder, target decoded
    extra_vocab: Callable[[int], int] = lambda context: 0  # tokens added on top of the tokenizer's (T5's sentinels)
    prepare_fsdp: Callable[[PreTrainedModel], None] = _nothing  # before accelerate wraps it with FSDP
    after_load: Callable[[PreTrainedModel, Path], None] = _nothing  # (model, hf_dir) after any from_pretrained
    qk_norm: bool = False  # accepts `model.qk_norm=true`
    # its validation loss is the cross-entropy of the token stream itself (next-token prediction), so the
    # text's entropy, where a generator knows it, is a floor under it (not so for T5's span corruption)
    stream_loss: bool = False

    def __post_init__(self) -> None:
        for key, value, known in (
            ("lm_eval_backend", self.lm_eval_backend, ("causal", "seq2seq")),
            ("finetune_format", self.finetune_format, ("concat", "seq2seq")),
        ):
            if value not in known:
                raise TestbedError(f"architecture {self.name!r}: {key}={value!r}: known: {', '.join(known)}")

    def model_config(self, ladder, rung, qk_norm: bool = False) -> PretrainedConfig:
        """The HF config of `rung` of `ladder` (a testbed.ladder.Ladder): the tokenizer's vocabulary plus
        the architecture's own tokens, the ladder's context."""
        vocab = ladder.vocab_size + self.extra_vocab(ladder.max_len)
        config = self.build_config(rung, vocab, ladder.max_len, qk_norm)
        if ladder.tie_embeddings:
            config.tie_word_embeddings = True
            if self.encoder_decoder:  # the original T5's tied head: the decoder output is scaled by d_model^-0.5
                config.scale_decoder_outputs = True
        return config

    def auto_model(self) -> type[Any]:
        """The transformers Auto class (AutoModelForCausalLM, AutoModelForSeq2SeqLM) of its checkpoints."""
        import transformers

        return getattr(transformers, self.auto_class)


ARCHS: Registry[ArchSpec] = Registry("architecture", error=TestbedError)


def register(spec: ArchSpec) -> ArchSpec:
    """Add an architecture under its name (a name registered twice is refused)."""
    return ARCHS.register(spec.name, spec)


def get_arch(name: str) -> ArchSpec:
    """The spec registered as `name`; an unknown name is one line with a did-you-mean."""
    return ARCHS.get(name)


def arch_names() -> list[str]:
    return ARCHS.names()


def checkpoint_arch(config: Mapping) -> ArchSpec:
    """The architecture of a saved checkpoint from its config.json (a dict): the first registered spec that
    is encoder-decoder exactly when the checkpoint is, so any causal LM checkpoint reads as a decoder."""
    encoder_decoder = bool(config.get("is_encoder_decoder"))
    for _, spec in ARCHS.items():
        if spec.encoder_decoder == encoder_decoder:
            return spec
    kind = "encoder-decoder" if encoder_decoder else "decoder-only"
    raise TestbedError(f"no registered architecture loads a {kind} checkpoint ({', '.join(ARCHS.names())})")


# --- the decoder (Llama / Qwen3) --------------------------------------------------------------------------


def next_token(tokenizer, context: int) -> Objective:
    """Next-token prediction: the stream's rows are the batch (the labels are the inputs shifted by one)."""
    return lambda inputs, labels, key: {"input_ids": inputs, "labels": labels}


def decoder_hf_config(rung, vocab_size: int, context: int, qk_norm: bool = False) -> PretrainedConfig:
    return decoder_config(rung.d_model, rung.layers, rung.heads, vocab_size, context, qk_norm)


register(
    ArchSpec(
        name="decoder",
        run_prefix="dec",
        rung_key="sizes",
        build_config=decoder_hf_config,
        objective=next_token,
        flops_per_token=decoder_flops_per_token,
        encoder_decoder=False,
        lm_eval_backend="causal",
        auto_class="AutoModelForCausalLM",
        finetune_format="concat",
        qk_norm=True,
        stream_loss=True,
    )
)


# --- T5 v1.1 ------------------------------------------------------------------------------------------------


def span_corruption(tokenizer, context: int) -> Objective:
    """T5 span corruption: the tokenizer gains the sentinels (idempotent); `key` seeds the noise."""
    spans = SpanCorruption(
        add_sentinels(tokenizer, sentinel_count(context)), eos=tokenizer.eos_token_id, pad=tokenizer.pad_token_id
    )
    return lambda inputs, labels, key: spans.batch(inputs, labels, np.random.default_rng(key))


def t5_hf_config(rung, vocab_size: int, context: int, qk_norm: bool = False) -> PretrainedConfig:
    return t5_config(rung.d_model, rung.layers, rung.heads, vocab_size, rung.d_ff)


def share_t5_embedding(model: PreTrainedModel) -> None:
    """T5's stacks embed through modules of their own that share `shared`'s weight. accelerate gives the
    input embedding an FSDP2 group of its own, and torch refuses a weight seen by two groups: one module
    (set_input_embeddings puts `shared` into both stacks) serves all three."""
    model.set_input_embeddings(model.get_input_embeddings())


register(
    ArchSpec(
        name="t5",
        run_prefix="t5",
        rung_key="t5_sizes",
        build_config=t5_hf_config,
        objective=span_corruption,
        flops_per_token=t5_flops_per_token,
        encoder_decoder=True,
        lm_eval_backend="seq2seq",
        auto_class="AutoModelForSeq2SeqLM",
        finetune_format="seq2seq",
        extra_vocab=sentinel_count,
        prepare_fsdp=share_t5_embedding,
        after_load=untie_t5_head,
    )
)
