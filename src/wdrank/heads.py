"""Per-head factor pairs of attention, from parameter names: how each architecture lays out its heads.

For head h of a layer (d = d_model, r = head_dim), both attention products are M = A Bᵀ with A, B of shape d x r:
- QK: M_QK = W_Q^h (W_K^h)ᵀ, the bilinear form of the attention scores x_i M_QK x_jᵀ (paper: W_Kᵀ W_Q);
- OV: M_OV = W_V^h W_O^h, what head h writes to the residual stream per attended token (paper: P W_V);
  A = W_V^h (d x r) and B = (W_O^h)ᵀ (d x r), so ‖AᵀA − BᵀB‖ = ‖W_VᵀW_V − W_O W_Oᵀ‖.
Biases are not part of the products. Each head's factor is a block of rows or columns of the tensor as stored
(`HeadFactor`): separate projections, fused [Q; K; V] rows, rows interleaved per head, grouped KV heads (query head
h uses KV head h // (n_head / n_kv)) and head_dim ≠ d / n_head are all block offsets, never copies of the layer.
The README's architecture table says how each model type is split. (Which parameters are attention for weight decay
is `wdrank.optim`'s rule; how files are opened is `wdrank.weights`.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from wdrank import spectra


class WeightsMismatch(ValueError):
    """The weights are not what the config (or the architecture) says: a name or a shape is missing or wrong."""


@dataclass(frozen=True)
class HeadFactor:
    """One factor (d x r per head) of one product for every head of a layer, as blocks of a stored 2-D tensor.

    `on_rows`: head h's factor is weight[s:s+r, :]ᵀ (an nn.Linear's output rows, or a Conv1D's input rows);
    otherwise weight[:, s:s+r] (columns). `starts[h]` is s for head h; heads sharing a KV head share a start."""

    weight: Any  # 2-D numpy array or torch tensor, in the dtype it was stored in
    on_rows: bool
    starts: np.ndarray
    size: int  # r, the head dimension

    def block(self, start: int) -> np.ndarray:
        """The (d, r) factor at `start`, as a contiguous float64 array (a per-head copy, cache-sized)."""
        part = self.weight[start:start + self.size] if self.on_rows else self.weight[:, start:start + self.size]
        matrix = _float64(part)
        return matrix.T if self.on_rows else matrix

    def stack(self) -> np.ndarray:
        """(n_head, d, r) float64: every head's factor."""
        unique, index = np.unique(self.starts, return_inverse=True)
        return np.stack([self.block(int(s)) for s in unique])[index]

    def grams(self) -> np.ndarray:
        """(n_head, r, r) float64: FᵀF per head, each distinct block converted and multiplied once (a symmetric
        rank-k product: half a general product's work)."""
        unique, index = np.unique(self.starts, return_inverse=True)
        grams = np.empty((len(unique), self.size, self.size))
        for i, start in enumerate(unique):
            block = self.block(int(start))  # (d, r), a transposed view when on_rows: block.T is contiguous
            grams[i] = block.T @ block
        return grams[index]


def _float64(part: Any) -> np.ndarray:
    """A block of a stored tensor as a C-contiguous float64 array. Torch tensors (bfloat16 included) go through
    float32, exact for every narrower float; NumPy converts float16 several times faster than torch."""
    if hasattr(part, "detach"):
        part = part.detach()
        part = part.numpy() if part.dtype == _torch().float64 else part.to(_torch().float32).numpy()
    return np.ascontiguousarray(part, dtype=np.float64)


def _torch():
    import torch

    return torch


@dataclass(frozen=True)
class LayerFactors:
    """Both factors of one product for every head of one layer."""

    layer: int
    product: str  # "QK" or "OV"
    first: HeadFactor  # A
    second: HeadFactor  # B

    @property
    def a(self) -> np.ndarray:
        return self.first.stack()

    @property
    def b(self) -> np.ndarray:
        return self.second.stack()

    names: tuple[str, str] = ("", "")  # the stored tensors A and B come from, for error messages

    def statistics(self, rank_thresholds: tuple[float, ...]) -> dict[str, np.ndarray]:
        """`wdrank.spectra.summarize_grams` of every head, from per-head Gram matrices; ValueError naming the
        tensors where a Gram matrix is not finite (NaN or inf weights, or weights too large to square)."""
        with np.errstate(over="ignore", invalid="ignore"):  # reported below, naming the tensor
            grams = self.first.grams(), self.second.grams()
        for gram, name in zip(grams, self.names, strict=True):
            if not np.isfinite(gram).all():
                raise ValueError(f"{name} (layer {self.layer}, {self.product}) holds NaN or infinite values, or values "
                                 "too large to square in float64: not the weights of a trained model")
        return spectra.summarize_grams(*grams, rank_thresholds)


@dataclass(frozen=True)
class Attention:
    """How to find one architecture's attention weights and split them into heads (see `ARCHITECTURES`)."""

    anchor: str  # the name of a layer-0 weight, after the model's prefix ("model.", "bert.", ...): finds the prefix
    names: tuple[str, ...]  # weight names per layer ({layer} filled in), read once each
    # (tensors, n_head, n_kv, config, names) -> the Q, K, V, O factors
    split: Callable[..., tuple[HeadFactor, HeadFactor, HeadFactor, HeadFactor]]
    layers: tuple[str, ...]  # config keys of the layer count, first present wins
    heads: tuple[str, ...]  # config keys of the (query) head count
    kv_heads: Callable[[Mapping, int], int] = lambda config, n_head: (
        _config_int(config, ("num_key_value_heads",), "key/value head count")
        if config.get("num_key_value_heads") is not None else n_head)


def _no_kv_groups(config: Mapping, n_head: int) -> int:
    """Architectures with one key/value head per query head."""
    return n_head


def _rows(weight, starts, size) -> HeadFactor:
    return HeadFactor(weight, True, np.asarray(starts), size)


def _cols(weight, starts, size) -> HeadFactor:
    return HeadFactor(weight, False, np.asarray(starts), size)


def _head_dim(rows: int, per: int, what: str, config: Mapping, axis: str = "rows") -> int:
    """r from the rows (or columns) of a tensor holding `per` head blocks; checked against the config's head_dim if
    it has one (Gemma's differs from d / heads)."""
    if rows % per:
        raise WeightsMismatch(f"{what} has {rows} {axis}, which do not split into {per} head blocks")
    size = rows // per
    if config.get("head_dim") not in (None, size):
        raise WeightsMismatch(f"{what} has {rows} {axis}: head_dim {size}, but the config says head_dim "
                              f"{config['head_dim']}")
    return size


def _separate(tensors, n_head, n_kv, config, names) -> tuple[HeadFactor, ...]:
    """nn.Linear q, k, v (out x in) and o (d x n_head·r): LLaMA, BERT and their relatives."""
    q, k, v, o = tensors
    size = _head_dim(q.shape[0], n_head, names[0], config)
    heads, kv = np.arange(n_head) * size, (np.arange(n_head) // (n_head // n_kv)) * size
    _expect(k, (n_kv * size, q.shape[1]), names[1])
    _expect(v, (n_kv * size, q.shape[1]), names[2])
    _expect(o, (q.shape[1], n_head * size), names[3])
    return _rows(q, heads, size), _rows(k, kv, size), _rows(v, kv, size), _cols(o, heads, size)


def _fused_rows(tensors, n_head, n_kv, config, names) -> tuple[HeadFactor, ...]:
    """One nn.Linear with rows [Q (n_head·r); K (n_kv·r); V (n_kv·r)] and o (d x n_head·r): Phi-3, timm, Falcon-7B
    (multi-query: one KV head)."""
    qkv, o = tensors
    size = _head_dim(qkv.shape[0], n_head + 2 * n_kv, names[0], config)
    kv = (np.arange(n_head) // (n_head // n_kv)) * size
    _expect(o, (qkv.shape[1], n_head * size), names[1])
    return (_rows(qkv, np.arange(n_head) * size, size), _rows(qkv, n_head * size + kv, size),
            _rows(qkv, (n_head + n_kv) * size + kv, size), _cols(o, np.arange(n_head) * size, size))


def _grouped_rows(tensors, n_head, n_kv, config, names) -> tuple[HeadFactor, ...]:
    """One nn.Linear whose rows are n_kv groups of [q_1 … q_g, k, v] blocks (g = n_head / n_kv query heads per KV
    head): GPT-NeoX / Pythia and Falcon without multi-query (g = 1: [q, k, v] per head), Falcon-40B/180B."""
    qkv, o = tensors
    group = n_head // n_kv
    size = _head_dim(qkv.shape[0], n_head + 2 * n_kv, names[0], config)
    head = np.arange(n_head)
    first = (head // group) * (group + 2) * size  # the first row of each head's group
    _expect(o, (qkv.shape[1], n_head * size), names[1])
    return (_rows(qkv, first + (head % group) * size, size), _rows(qkv, first + group * size, size),
            _rows(qkv, first + (group + 1) * size, size), _cols(o, head * size, size))


def _falcon_kv_heads(config: Mapping, n_head: int) -> int:
    if config.get("new_decoder_architecture"):
        return config.get("num_kv_heads") or n_head
    return 1 if config.get("multi_query", True) else n_head


def _falcon_split(tensors, n_head, n_kv, config, names) -> tuple[HeadFactor, ...]:
    """Falcon's three layouts of query_key_value (transformers' FalconAttention._split_heads)."""
    multi_query = config.get("multi_query", True) and not config.get("new_decoder_architecture")
    return (_fused_rows if multi_query else _grouped_rows)(tensors, n_head, n_kv, config, names)


def _conv1d(tensors, n_head, n_kv, config, names) -> tuple[HeadFactor, ...]:
    """GPT-2's Conv1D (x @ W): c_attn (d x 3d) fuses [W_Q | W_K | W_V] along columns; c_proj's rows h·r:(h+1)·r
    read head h. The toy Transformer of Fig. 2 is the same without biases."""
    qkv, o = tensors
    if qkv.shape[1] % 3:
        raise WeightsMismatch(f"{names[0]} has {qkv.shape[1]} columns, not three equal blocks Q, K, V")
    inner = qkv.shape[1] // 3
    size = _head_dim(inner, n_head, names[0], config, axis="columns per block")
    _expect(o, (inner, qkv.shape[0]), names[1])
    heads = np.arange(n_head) * size
    return (_cols(qkv, heads, size), _cols(qkv, inner + heads, size), _cols(qkv, 2 * inner + heads, size),
            _rows(o, heads, size))


def _expect(tensor, shape: tuple[int, ...], name: str) -> None:
    if tuple(tensor.shape) != tuple(shape):
        raise WeightsMismatch(f"{name} has shape {tuple(tensor.shape)}, expected {tuple(shape)} from the other "
                              "attention weights and the head counts")


LLAMA = Attention(
    "layers.0.self_attn.q_proj.weight",
    tuple(f"layers.{{layer}}.self_attn.{p}_proj.weight" for p in "qkvo"), _separate,
    ("num_hidden_layers",), ("num_attention_heads",))
BERT = Attention(
    "encoder.layer.0.attention.self.query.weight",
    tuple(f"encoder.layer.{{layer}}.attention.{p}.weight"
          for p in ("self.query", "self.key", "self.value", "output.dense")), _separate,
    ("num_hidden_layers",), ("num_attention_heads",), kv_heads=_no_kv_groups)
ARCHITECTURES: dict[str, Attention] = {
    "gpt2": Attention("h.0.attn.c_attn.weight", ("h.{layer}.attn.c_attn.weight", "h.{layer}.attn.c_proj.weight"),
                      _conv1d, ("n_layer",), ("n_head",), kv_heads=_no_kv_groups),
    # Qwen3, Gemma 3 and OLMo 2 add a QK norm between the projections and the scores (see the README)
    **dict.fromkeys(("llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "olmo",
                     "olmo2"), LLAMA),
    **dict.fromkeys(("bert", "roberta", "xlm-roberta"), BERT),
    "phi3": Attention("layers.0.self_attn.qkv_proj.weight",
                      ("layers.{layer}.self_attn.qkv_proj.weight", "layers.{layer}.self_attn.o_proj.weight"),
                      _fused_rows, ("num_hidden_layers",), ("num_attention_heads",)),
    "gpt_neox": Attention("layers.0.attention.query_key_value.weight",
                          ("layers.{layer}.attention.query_key_value.weight", "layers.{layer}.attention.dense.weight"),
                          _grouped_rows, ("num_hidden_layers",), ("num_attention_heads",),
                          kv_heads=_no_kv_groups),
    "falcon": Attention("h.0.self_attention.query_key_value.weight",
                        ("h.{layer}.self_attention.query_key_value.weight", "h.{layer}.self_attention.dense.weight"),
                        _falcon_split, ("num_hidden_layers", "n_layer"), ("num_attention_heads", "n_head"),
                        kv_heads=_falcon_kv_heads),
    "timm_vit": Attention("blocks.0.attn.qkv.weight", ("blocks.{layer}.attn.qkv.weight",
                                                       "blocks.{layer}.attn.proj.weight"),
                          _fused_rows, ("n_layer",), ("n_head",), kv_heads=_no_kv_groups),
    "toy": Attention("layers.0.attn.qkv", ("layers.{layer}.attn.qkv", "layers.{layer}.attn.out"), _conv1d,
                     ("n_layer",), ("n_head",), kv_heads=_no_kv_groups),
}


def timm_vit_config(n_head: int, n_layer: int, d_model: int, **extra: Any) -> dict:
    """The config `attention_factors` reads for a timm VisionTransformer's weights (fused qkv, then proj)."""
    return {"model_type": "timm_vit", "n_head": n_head, "n_layer": n_layer, "d_model": d_model, **extra}


def timm_blocks_config(blocks: Any, **extra: Any) -> dict:
    """`timm_vit_config` of a timm VisionTransformer's blocks (a model's own, or one built on the meta device)."""
    return timm_vit_config(blocks[0].attn.num_heads, len(blocks), blocks[0].attn.qkv.in_features, **extra)


def _config_int(config: Mapping, keys: tuple[str, ...], what: str) -> int:
    for key in keys:
        if config.get(key) is not None:
            value = config[key]
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"the config's {key} is {value!r}, not a positive integer")
            return value
    raise ValueError(f"the config has no {what} ({' or '.join(keys)})")


def _prefix(names: list[str], anchor: str, model_type: str) -> str:
    """What precedes the architecture's layer-0 weight name in this state ('model.', 'bert.', '' ...)."""
    for name in names:
        if name == anchor or name.endswith("." + anchor):
            return name[:len(name) - len(anchor)]
    looks_like = [other for other, spec in ARCHITECTURES.items()
                  if any(n == spec.anchor or n.endswith("." + spec.anchor) for n in names)]
    hint = f" (they look like {looks_like[0]})" if looks_like else f"; they have e.g. {names[:4]}"
    raise WeightsMismatch(f"the config says model_type {model_type!r}, but the weights have no {anchor!r}{hint}")


def attention_factors(state: Mapping, config: Mapping) -> Iterator[LayerFactors]:
    """Per-layer, per-product head factors of a model given its weights and its (transformers) config dict; each
    weight is read from `state` once. Raises ValueError naming the architecture, config key or weight at fault."""
    model_type = config.get("model_type")
    if not isinstance(model_type, str) or model_type not in ARCHITECTURES:
        raise ValueError(f"architecture {model_type!r} is not supported; supported: {', '.join(ARCHITECTURES)}")
    spec = ARCHITECTURES[model_type]
    n_layer = _config_int(config, spec.layers, "layer count")
    n_head = _config_int(config, spec.heads, "head count")
    n_kv = spec.kv_heads(config, n_head)
    if not isinstance(n_kv, int) or n_kv < 1 or n_head % n_kv:
        raise ValueError(f"{n_head} attention heads do not divide into {n_kv!r} key/value heads")
    names = list(state.keys())
    prefix = _prefix(names, spec.anchor, model_type)
    known = set(names)
    for layer in range(n_layer):
        layer_names = [prefix + name.format(layer=layer) for name in spec.names]
        missing = [name for name in layer_names if name not in known]
        if missing:
            raise WeightsMismatch(f"the config says {n_layer} layers of {model_type}, but the weights have no "
                                  f"{missing[0]!r}")
        tensors = [state[name] for name in layer_names]
        for tensor, name in zip(tensors, layer_names, strict=True):
            _check_matrix(tensor, name)
        q, k, v, o = spec.split(tensors, n_head, n_kv, config, layer_names)
        stored = {id(tensor): name for tensor, name in zip(tensors, layer_names, strict=True)}
        yield LayerFactors(layer, "QK", q, k, (stored[id(q.weight)], stored[id(k.weight)]))
        yield LayerFactors(layer, "OV", v, o, (stored[id(v.weight)], stored[id(o.weight)]))
    beyond = prefix + spec.names[0].format(layer=n_layer)
    if beyond in known:
        raise WeightsMismatch(f"the config says {n_layer} layers of {model_type}, but the weights also hold "
                              f"{beyond!r}: the config is not this model's")


def _check_matrix(tensor: Any, name: str) -> None:
    """An attention weight is a 2-D matrix of real floating-point numbers (any width, bfloat16 included)."""
    if len(tensor.shape) != 2:
        raise WeightsMismatch(f"{name} has shape {tuple(tensor.shape)}, not that of a 2-D weight matrix")
    dtype = tensor.dtype
    real_float = tensor.is_floating_point() if hasattr(tensor, "is_floating_point") else \
        np.issubdtype(dtype, np.floating)
    if not real_float:
        raise ValueError(f"{name} holds {dtype} values: the audit reads real floating-point weights (quantised "
                         "weights need their scales: dequantise first)")
