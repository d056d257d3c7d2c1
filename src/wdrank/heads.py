"""Per-head factor pairs of attention, from parameter names: how each architecture lays out its heads.

For head h of a layer (d = d_model, r = d_head), both attention products are M = A Bᵀ with A, B of shape d x r:
- QK: M_QK = W_Q^h (W_K^h)ᵀ, the bilinear form of the attention scores x_i M_QK x_jᵀ (paper: W_Kᵀ W_Q);
- OV: M_OV = W_V^h W_O^h, what head h writes to the residual stream per attended token (paper: P W_V);
  A = W_V^h (d x r) and B = (W_O^h)ᵀ (d x r), so ‖AᵀA − BᵀB‖ = ‖W_VᵀW_V − W_O W_Oᵀ‖.
Biases are not part of the products. Supported here: GPT-2, LLaMA / Mistral (grouped KV heads: query head h
uses KV head h // (n_head / n_kv_head)) and BERT as written by `transformers`, timm's VisionTransformer, and the
toy Transformer of Fig. 2. (Which parameters are attention for weight decay is `wdrank.optim`'s rule; how
files are opened is `wdrank.weights`.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from wdrank import spectra


@dataclass(frozen=True)
class LayerFactors:
    """The factors of every head of one layer for one product: `a`, `b` of shape (n_head, d, r)."""

    layer: int
    product: str  # "QK" or "OV"
    a: np.ndarray
    b: np.ndarray


def _array(state: Mapping, key: str) -> np.ndarray:
    if key not in state:
        raise KeyError(f"parameter {key!r} not found; the state has e.g. {sorted(state)[:6]}")
    value = state[key]
    # torch tensors (any dtype, bf16 included) go to float64 directly: no detour through float32
    return np.asarray(value.detach().double() if hasattr(value, "double") else value, dtype=np.float64)


def _split_columns(matrix: np.ndarray, n_head: int) -> np.ndarray:
    """(d, n_head * r) → (n_head, d, r): head h owns columns h*r:(h+1)*r."""
    d, width = matrix.shape
    return matrix.reshape(d, n_head, width // n_head).transpose(1, 0, 2)


def gpt2_factors(state: Mapping, config: Mapping) -> Iterator[LayerFactors]:
    """GPT-2 (transformers): Conv1D weights act as x @ W; c_attn fuses [W_Q | W_K | W_V] along columns."""
    n_head, d = config["n_head"], config["n_embd"]
    prefix = "transformer." if any(k.startswith("transformer.") for k in state) else ""
    for layer in range(config["n_layer"]):
        c_attn = _array(state, f"{prefix}h.{layer}.attn.c_attn.weight")  # (d, 3d)
        c_proj = _array(state, f"{prefix}h.{layer}.attn.c_proj.weight")  # (d, d): rows h*r:(h+1)*r read head h
        w_q, w_k, w_v = (_split_columns(c_attn[:, i * d:(i + 1) * d], n_head) for i in range(3))
        w_o_t = _split_columns(c_proj.T, n_head)  # (n_head, d, r): (W_O^h)ᵀ
        yield LayerFactors(layer, "QK", w_q, w_k)
        yield LayerFactors(layer, "OV", w_v, w_o_t)


def llama_factors(state: Mapping, config: Mapping) -> Iterator[LayerFactors]:
    """LLaMA / Mistral (transformers): nn.Linear weights act as x @ Wᵀ; K/V heads shared by groups of queries."""
    n_head = config["num_attention_heads"]
    n_kv = config.get("num_key_value_heads") or n_head
    if n_head % n_kv:
        raise ValueError(f"num_attention_heads={n_head} is not a multiple of num_key_value_heads={n_kv}")
    kv_of_head = np.arange(n_head) // (n_head // n_kv)
    prefix = "model." if any(k.startswith("model.") for k in state) else ""
    for layer in range(config["num_hidden_layers"]):
        attn = f"{prefix}layers.{layer}.self_attn"
        w_q = _split_columns(_array(state, f"{attn}.q_proj.weight").T, n_head)
        w_k = _split_columns(_array(state, f"{attn}.k_proj.weight").T, n_kv)[kv_of_head]
        w_v = _split_columns(_array(state, f"{attn}.v_proj.weight").T, n_kv)[kv_of_head]
        w_o_t = _split_columns(_array(state, f"{attn}.o_proj.weight"), n_head)  # o_proj: (d, n_head * r)
        yield LayerFactors(layer, "QK", w_q, w_k)
        yield LayerFactors(layer, "OV", w_v, w_o_t)


def bert_factors(state: Mapping, config: Mapping) -> Iterator[LayerFactors]:
    """BERT-style encoders (transformers): separate nn.Linear query/key/value and attention.output.dense."""
    n_head = config["num_attention_heads"]
    prefix = "bert." if any(k.startswith("bert.") for k in state) else ""
    for layer in range(config["num_hidden_layers"]):
        attn = f"{prefix}encoder.layer.{layer}.attention"
        w_q, w_k, w_v = (_split_columns(_array(state, f"{attn}.self.{name}.weight").T, n_head)
                         for name in ("query", "key", "value"))
        w_o_t = _split_columns(_array(state, f"{attn}.output.dense.weight"), n_head)  # (d, n_head * r)
        yield LayerFactors(layer, "QK", w_q, w_k)
        yield LayerFactors(layer, "OV", w_v, w_o_t)


def timm_vit_factors(state: Mapping, config: Mapping) -> Iterator[LayerFactors]:
    """timm VisionTransformer: fused nn.Linear qkv of shape (3d, d), rows [Q; K; V]; proj of shape (d, d)."""
    n_head, d = config["n_head"], config["d_model"]
    for layer in range(config["n_layer"]):
        qkv = _array(state, f"blocks.{layer}.attn.qkv.weight")  # (3d, d): x @ qkvᵀ
        w_q, w_k, w_v = (_split_columns(qkv[i * d:(i + 1) * d].T, n_head) for i in range(3))
        w_o_t = _split_columns(_array(state, f"blocks.{layer}.attn.proj.weight"), n_head)
        yield LayerFactors(layer, "QK", w_q, w_k)
        yield LayerFactors(layer, "OV", w_v, w_o_t)


def toy_factors(state: Mapping, config: Mapping) -> Iterator[LayerFactors]:
    """The toy Transformer of Fig. 2 (`wdrank.models.toy`): GPT-2's layout without biases."""
    n_head, inner = config["n_head"], config["n_head"] * config["d_head"]
    for layer in range(config["n_layer"]):
        qkv = _array(state, f"layers.{layer}.attn.qkv")  # (d, 3 * inner)
        w_q, w_k, w_v = (_split_columns(qkv[:, i * inner:(i + 1) * inner], n_head) for i in range(3))
        w_o_t = _split_columns(_array(state, f"layers.{layer}.attn.out").T, n_head)
        yield LayerFactors(layer, "QK", w_q, w_k)
        yield LayerFactors(layer, "OV", w_v, w_o_t)


FACTOR_READERS: dict[str, Callable[[Mapping, Mapping], Iterator[LayerFactors]]] = {
    "gpt2": gpt2_factors,
    "llama": llama_factors,
    "mistral": llama_factors,
    "bert": bert_factors,
    "timm_vit": timm_vit_factors,
    "toy": toy_factors,
}


def attention_factors(state: Mapping, config: Mapping) -> Iterator[LayerFactors]:
    """Per-layer, per-product head factors of a model given its weights and its (transformers) config dict."""
    model_type = config.get("model_type")
    if model_type not in FACTOR_READERS:
        raise ValueError(f"architecture {model_type!r} is not supported; supported: {', '.join(FACTOR_READERS)}")
    return FACTOR_READERS[model_type](state, config)


def factor_spectra_table(factors: Iterator[LayerFactors], rank_thresholds: tuple[float, ...]) -> pd.DataFrame:
    """One row per (layer, head, product) with every statistic of `wdrank.spectra.summarize`.

    Also, relative to the Frobenius side: `nuclear_to_frobenius` (1 when weight decay and nuclear-norm
    regularisation coincide, the paper's Fig. 4), `gap_relative` and `balance_relative`.
    """
    frames = []
    for layer_factors in factors:
        stats = spectra.summarize(layer_factors.a, layer_factors.b, rank_thresholds)
        n_head, _, rank = layer_factors.a.shape
        frame = pd.DataFrame({
            "layer": layer_factors.layer, "head": np.arange(n_head), "product": layer_factors.product,
            "head_dim": rank,
            **{name: value for name, value in stats.items() if name != "singular_values"},
        })
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True)
    frobenius = table["frobenius_side"].where(table["frobenius_side"] > 0)
    table["nuclear_to_frobenius"] = table["nuclear_norm"] / frobenius
    table["gap_relative"] = table["gap"] / frobenius
    table["balance_relative"] = table["balance_discrepancy"] / frobenius
    return table
