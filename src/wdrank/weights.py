"""Open a model's weights lazily, whatever the format, as a name → tensor mapping plus a config dict.

Supported: a Hugging Face model directory (config.json + model.safetensors, sharded or not; or a
pytorch_model.bin read with `torch.load(weights_only=True)`), a timm checkpoint (.safetensors, or .pth/.bin read
with weights_only=True), and a llama.cpp GGUF file (tensors dequantised one at a time with the `gguf` package).
Tensors are read only when asked for, so auditing a 7B model layer by layer needs little memory beyond the page
cache. Untrusted pickles are never unpickled: `weights_only=True` refuses arbitrary objects.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

PICKLE_SUFFIXES = (".bin", ".pt", ".pth")


class LazySafetensors(Mapping):
    """Tensors of one or several .safetensors files, each read from disk (memory-mapped) when accessed.

    As NumPy arrays, so that reading a float32/float16 checkpoint never imports torch (a second of start-up per
    spectra job); bfloat16, which NumPy lacks, is read through torch."""

    def __init__(self, files: list[Path]):
        from safetensors import safe_open

        self._files = {str(f): safe_open(str(f), framework="numpy") for f in files}
        self._where = {key: name for name, handle in self._files.items() for key in handle.keys()}

    def __getitem__(self, key: str):
        name = self._where[key]
        handle = self._files[name]
        if handle.get_slice(key).get_dtype() == "BF16":
            from safetensors import safe_open

            with safe_open(name, framework="pt") as torch_handle:
                return torch_handle.get_tensor(key)
        return handle.get_tensor(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)


def _unpermute_rope_rows(weight: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's Q/K row permutation (its converter interleaves the two rotary halves within each head).

    It permutes rows within each head and identically for Q and K, so W_Q W_Kᵀ is unchanged; undoing it makes
    individual factors match the Hugging Face layout."""
    rows, cols = weight.shape
    return weight.reshape(n_head, rows // n_head // 2, 2, cols).swapaxes(1, 2).reshape(rows, cols)


class GGUFLlama(Mapping):
    """A llama-architecture GGUF file seen through Hugging Face LLaMA parameter names (attention weights only)."""

    NAMES = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output"}

    def __init__(self, path: Path):
        import gguf

        self._reader = gguf.GGUFReader(str(path))
        self._tensors = {t.name: t for t in self._reader.tensors}
        architecture = self._field("general.architecture")
        if architecture not in ("llama", "mistral"):
            raise ValueError(f"{path}: GGUF architecture {architecture!r} is not supported; supported: llama, mistral")
        self.config = {
            "model_type": "llama",
            "num_hidden_layers": int(self._field(f"{architecture}.block_count")),
            "num_attention_heads": int(self._field(f"{architecture}.attention.head_count")),
            "num_key_value_heads": int(self._field(f"{architecture}.attention.head_count_kv")),
            "hidden_size": int(self._field(f"{architecture}.embedding_length")),
            "quantization": sorted({t.tensor_type.name for t in self._reader.tensors if t.name.startswith("blk.")}),
        }
        self._keys = [f"model.layers.{layer}.self_attn.{name}.weight"
                      for layer in range(self.config["num_hidden_layers"]) for name in self.NAMES]

    def _field(self, key: str) -> Any:
        import gguf

        field = self._reader.fields[key]
        value = field.parts[field.data[0]]
        return bytes(value).decode() if field.types[0] == gguf.GGUFValueType.STRING else value[0]

    def __getitem__(self, key: str) -> np.ndarray:
        import gguf

        parts = key.split(".")  # model.layers.<l>.self_attn.<name>.weight
        name = self.NAMES[parts[4]]
        tensor = self._tensors[f"blk.{parts[2]}.{name}.weight"]
        weight = np.asarray(gguf.quants.dequantize(tensor.data, tensor.tensor_type), dtype=np.float64)  # HF layout
        if name == "attn_q":
            weight = _unpermute_rope_rows(weight, self.config["num_attention_heads"])
        elif name == "attn_k":
            weight = _unpermute_rope_rows(weight, self.config["num_key_value_heads"])
        return weight

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


def _load_pickle(path: Path) -> dict:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:
        raise ValueError(f"{path}: refused or unreadable with torch.load(weights_only=True) (untrusted pickles are "
                         f"never unpickled; convert it to safetensors): {error}") from error
    return state.get("state_dict", state.get("model", state)) if isinstance(state, dict) else state


def _timm_config(state: Mapping, n_head: int | None, path: Path) -> dict:
    if "blocks.0.attn.qkv.weight" not in state:
        raise ValueError(f"{path}: not a recognised checkpoint (no config.json, no timm 'blocks.0.attn.qkv.weight'); "
                         f"supported: Hugging Face model folders (gpt2, llama, mistral, bert), timm ViT, GGUF llama")
    d_model = state["blocks.0.attn.qkv.weight"].shape[1]
    n_layer = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks.") and k.endswith(".attn.qkv.weight"))
    # timm does not store the head count; ViTs use 64-dimensional heads (Ti/S/B/L), so that is the default
    return {"model_type": "timm_vit", "n_head": n_head or d_model // 64, "n_layer": n_layer, "d_model": d_model}


def open_weights(path: str | Path, n_head: int | None = None) -> tuple[Mapping, dict]:
    """(name → tensor mapping, config dict with `model_type`) of a model folder or checkpoint file.

    Args:
        n_head: heads per layer for formats that do not store it (timm); ignored otherwise.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no model at {path}")
    if path.is_dir():
        config_file = path / "config.json"
        if not config_file.exists():
            raise ValueError(f"{path}: a model folder needs a config.json (Hugging Face layout)")
        config = json.loads(config_file.read_text())
        shards = sorted(path.glob("*.safetensors"))
        if shards:
            return LazySafetensors(shards), config
        pickles = sorted(p for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if not pickles:
            raise ValueError(f"{path}: no *.safetensors or pytorch_model.bin weights found")
        state = {k: v for p in pickles for k, v in _load_pickle(p).items()}
        return state, config
    if path.suffix == ".gguf":
        state = GGUFLlama(path)
        return state, state.config
    if path.suffix == ".safetensors":
        state = LazySafetensors([path])
        return state, _timm_config(state, n_head, path)
    if path.suffix in PICKLE_SUFFIXES:
        state = _load_pickle(path)
        return state, _timm_config(state, n_head, path)
    raise ValueError(f"{path}: unknown model format; give a model folder, a .safetensors, .pth/.bin or .gguf file")
