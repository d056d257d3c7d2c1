"""Autoregressive Transformers from scratch with `transformers`: GPT-2 (default) or LLaMA architecture.

No pretrained weights, no dropout (runs are pure functions of their seed), PyTorch SDPA attention.
Checkpoints saved with `save_pretrained` load back with `from_pretrained`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, PreTrainedModel

ARCHITECTURES = ("gpt2", "llama")


@dataclass(frozen=True)
class LMShape:
    architecture: str  # one of ARCHITECTURES
    n_layer: int
    n_embd: int  # d_model
    n_head: int
    context: int  # tokens per training sequence (the paper: 756)
    vocab_size: int
    n_kv_head: int | None = None  # LLaMA only: grouped KV heads (None: as many as query heads)

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture {self.architecture!r} is not supported; choose one of {ARCHITECTURES}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} must be divisible by n_head={self.n_head}")


def build_lm(shape: LMShape, seed: int) -> PreTrainedModel:
    """A freshly initialised causal LM; the same shape and seed give the same weights."""
    torch.manual_seed(seed)
    if shape.architecture == "gpt2":
        config = GPT2Config(
            vocab_size=shape.vocab_size, n_positions=shape.context, n_embd=shape.n_embd, n_layer=shape.n_layer,
            n_head=shape.n_head, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0,
        )
        model_class = GPT2LMHeadModel
    else:
        config = LlamaConfig(
            vocab_size=shape.vocab_size, max_position_embeddings=shape.context, hidden_size=shape.n_embd,
            intermediate_size=4 * shape.n_embd, num_hidden_layers=shape.n_layer, num_attention_heads=shape.n_head,
            num_key_value_heads=shape.n_kv_head or shape.n_head, tie_word_embeddings=True, bos_token_id=0,
            eos_token_id=0,
        )
        model_class = LlamaForCausalLM
    config._attn_implementation = "sdpa"
    return model_class(config)


def flops_per_token(model: PreTrainedModel, shape: LMShape) -> float:
    """Training FLOPs per token: 6·N for the N non-embedding parameters plus the output head (computed every token
    even when tied), and 6·n_layer·context·d_model for attention scores and mixing (Kaplan et al. 2020)."""
    embedding = sum(p.numel() for n, p in model.named_parameters() if "wte" in n or "wpe" in n or "embed" in n)
    non_embedding = sum(p.numel() for p in model.parameters()) - embedding
    output_head = shape.n_embd * shape.vocab_size
    return 6 * (non_embedding + output_head) + 6 * shape.n_layer * shape.context * shape.n_embd
