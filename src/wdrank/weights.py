"""Open a model's weights lazily, whatever the format, as a name → tensor mapping plus a config dict.

Supported: a Hugging Face model folder (config.json + model*.safetensors, sharded or not, or pytorch_model*.bin read
with `torch.load(weights_only=True)`; index files name the shards), a timm folder written by `save_for_hf`
(config.json with `architecture`), a timm checkpoint file (.safetensors, or .pth/.bin), and a llama.cpp GGUF file
(tensors dequantised one at a time with the `gguf` package). Only weight files are read (a Trainer folder's
optimizer.pt or training_args.bin is not). Tensors are read when asked for, so a 7B model is audited layer by layer
in little memory beyond the page cache. Untrusted pickles are never unpickled: `weights_only=True` refuses arbitrary
objects. Every unreadable input raises ValueError naming the file and what is wrong.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from wdrank.extras import needs_training_extra
from wdrank.heads import timm_blocks_config, timm_vit_config

PICKLE_SUFFIXES = (".bin", ".pt", ".pth")
# The weight files of a Hugging Face folder, safetensors preferred; each with the index that names its shards.
FOLDER_WEIGHTS = (("model*.safetensors", "model.safetensors.index.json"),
                  ("pytorch_model*.bin", "pytorch_model.bin.index.json"))
SUPPORTED = ("Hugging Face model folders, timm folders and .safetensors/.pth checkpoints, llama/mistral .gguf "
             "files")


def first_line(error: BaseException) -> str:
    """The first non-empty line of a library's error message (some span a page), for a one-line report."""
    return next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)


# safetensors dtypes the audit reads, as NumPy reads them (BF16: its 16 bits, widened to float32 when read)
SAFETENSORS_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.uint16}
# every dtype of the safetensors format, with its size in bytes: a header naming another is refused
SAFETENSORS_ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I64": 8, "U64": 8,
                        "I32": 4, "U32": 4, "I16": 2, "U16": 2, "I8": 1, "U8": 1, "BOOL": 1}


class LazySafetensors(Mapping):
    """Tensors of one or several .safetensors files as read-only NumPy views of the memory-mapped files: reading a
    tensor copies nothing (its pages come from the page cache as they are touched), so memory stays bounded by what
    the reader converts, not by the model. bfloat16, which NumPy lacks, is widened to float32 (exactly) when read.
    The header is checked against the file's size, so a truncated file fails when opened, naming itself."""

    def __init__(self, files: list[Path]):
        self._tensors: dict[str, tuple[Path, str, tuple[int, ...], int]] = {}
        self._maps: dict[Path, np.memmap] = {}
        for file in files:
            header, data_start = _safetensors_header(file)
            for key, entry in header.items():
                self._tensors[key] = (file, entry["dtype"], tuple(entry["shape"]), data_start + entry["data_offsets"][0])

    def __getitem__(self, key: str) -> np.ndarray:
        file, dtype, shape, offset = self._tensors[key]
        if dtype not in SAFETENSORS_DTYPES:
            raise ValueError(f"{file}: tensor {key!r} is {dtype}: the audit reads floating-point weights "
                             f"({', '.join(SAFETENSORS_DTYPES)}); quantised weights need their scales: dequantise "
                             "first")
        if file not in self._maps:
            self._maps[file] = np.memmap(file, dtype=np.uint8, mode="r")
        count = int(np.prod(shape, dtype=np.int64))
        array = np.frombuffer(self._maps[file], dtype=SAFETENSORS_DTYPES[dtype], count=count, offset=offset)
        if dtype == "BF16":
            array = (array.astype(np.uint32) << 16).view(np.float32)
        return array.reshape(shape)

    def __contains__(self, key: object) -> bool:
        return key in self._tensors

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)


def _safetensors_header(file: Path) -> tuple[dict, int]:
    """(tensor name → dtype, shape, data_offsets; where the data begins) of a .safetensors file, checked as the
    official library checks it: the header is a JSON object, every dtype is known, every shape and offset is a
    non-negative integer, each tensor's bytes are shape × dtype size and lie inside the data section, and no two
    tensors overlap. Anything else raises ValueError naming the file and the tensor."""
    try:
        size = file.stat().st_size
        with open(file, "rb") as handle:
            prefix = handle.read(8)
            length = int.from_bytes(prefix, "little") if len(prefix) == 8 else -1
            if not 0 < length <= size - 8:
                raise ValueError(f"{file}: not a valid safetensors file (header length {length}, file size {size})")
            raw = handle.read(length)
    except OSError as error:  # a symlink loop, a folder named .safetensors, no permission
        raise ValueError(f"{file}: cannot be read ({error.strerror or first_line(error)})") from error
    try:
        header = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{file}: not a valid safetensors file (header: {first_line(error)})") from error
    if not isinstance(header, dict):
        raise ValueError(f"{file}: not a valid safetensors file (its header is a JSON {type(header).__name__}, "
                         "not an object)")
    header.pop("__metadata__", None)
    data_size = size - 8 - length
    spans = []
    for name, entry in header.items():
        problem = _entry_problem(entry, data_size)
        if problem:
            raise ValueError(f"{file}: not a valid safetensors file (tensor {name!r}: {problem})")
        spans.append((*entry["data_offsets"], name))
    spans.sort()
    for (_, end, name), (begin, _, following) in itertools.pairwise(spans):
        if begin < end:
            raise ValueError(f"{file}: not a valid safetensors file (tensors {name!r} and {following!r} overlap)")
    return header, 8 + length


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _entry_problem(entry: Any, data_size: int) -> str | None:
    """What is wrong with one tensor's header entry, or None."""
    if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= set(entry):
        return "its entry needs dtype, shape and data_offsets"
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if dtype not in SAFETENSORS_ITEMSIZE:
        return f"unknown dtype {dtype!r}"
    if not isinstance(shape, list) or not all(_is_count(n) for n in shape):
        return f"shape {shape!r} is not a list of non-negative integers"
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_count(n) for n in offsets) \
            or offsets[0] > offsets[1]:
        return f"data_offsets {offsets!r} are not [begin, end] with 0 <= begin <= end"
    if offsets[1] > data_size:
        return f"truncated: its data ends at byte {offsets[1]} of a data section of {data_size}"
    expected = int(np.prod(shape, dtype=np.int64)) * SAFETENSORS_ITEMSIZE[dtype]
    if offsets[1] - offsets[0] != expected:
        return f"data_offsets span {offsets[1] - offsets[0]} bytes, but shape {shape} of {dtype} needs {expected}"
    return None


def _unpermute_rope_rows(weight: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's Q/K row permutation (its converter interleaves the two rotary halves within each head).

    It permutes rows within each head and identically for Q and K, so W_Q W_Kᵀ is unchanged; undoing it makes
    individual factors match the Hugging Face layout."""
    rows, cols = weight.shape
    return weight.reshape(n_head, rows // n_head // 2, 2, cols).swapaxes(1, 2).reshape(rows, cols)


class GGUFLlama(Mapping):
    """A llama-architecture GGUF file seen through Hugging Face LLaMA parameter names (attention weights only);
    each tensor is dequantised when read, once per read."""

    NAMES = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output"}

    def __init__(self, path: Path):
        import gguf

        self._path = path
        try:
            self._reader = gguf.GGUFReader(str(path))
        except Exception as error:  # bad magic, truncated header or tensor data
            raise ValueError(f"{path}: not a readable GGUF file ({first_line(error)})") from error
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
        self._keys = {f"model.layers.{layer}.self_attn.{name}.weight": f"blk.{layer}.{gguf_name}.weight"
                      for layer in range(self.config["num_hidden_layers"]) for name, gguf_name in self.NAMES.items()}

    def _field(self, key: str) -> Any:
        import gguf

        if key not in self._reader.fields:
            raise ValueError(f"{self._path}: GGUF metadata has no {key!r}")
        field = self._reader.fields[key]
        value = field.parts[field.data[0]]
        return bytes(value).decode() if field.types[0] == gguf.GGUFValueType.STRING else value[0]

    def __getitem__(self, key: str) -> np.ndarray:
        import gguf

        name = self._keys[key]
        if name not in self._tensors:
            raise ValueError(f"{self._path}: GGUF file has no tensor {name!r}")
        tensor = self._tensors[name]
        try:
            weight = np.asarray(gguf.quants.dequantize(tensor.data, tensor.tensor_type), dtype=np.float32)
        except Exception as error:
            raise ValueError(f"{self._path}: tensor {name!r} cannot be dequantised ({first_line(error)})") from error
        if name.endswith("attn_q.weight"):
            weight = _unpermute_rope_rows(weight, self.config["num_attention_heads"])
        elif name.endswith("attn_k.weight"):
            weight = _unpermute_rope_rows(weight, self.config["num_key_value_heads"])
        return weight

    def __contains__(self, key: object) -> bool:  # without dequantising (Mapping's default reads the tensor)
        return key in self._keys

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


def load_pickle(path: Path) -> dict:
    """A state dict from a torch pickle, tensors memory-mapped where the file allows (zip format), else read."""
    try:
        import torch
    except ModuleNotFoundError as error:  # the light install: safetensors and GGUF only
        raise ValueError(f"{path}: {needs_training_extra('reading a .pth/.bin checkpoint', 'torch')}; or convert it "
                         "to safetensors") from error

    try:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as error:
            if "mmap" not in str(error):
                raise
            state = torch.load(path, map_location="cpu", weights_only=True)  # legacy format: no mmap
    except Exception as error:
        raise ValueError(f"{path}: refused or unreadable with torch.load(weights_only=True) (untrusted pickles are "
                         f"never unpickled; convert it to safetensors): {first_line(error)}") from error
    state = state.get("state_dict", state.get("model", state)) if isinstance(state, dict) else state
    if not isinstance(state, dict):
        raise ValueError(f"{path}: holds a {type(state).__name__}, not a state dict of tensors")
    return state


def _timm_config(state: Mapping, n_head: int | None, path: Path) -> dict:
    """A timm ViT checkpoint's config from its weights; the head count from `n_head` (timm files do not store it)."""
    if "blocks.0.attn.qkv.weight" not in state:
        raise ValueError(f"{path}: not a recognised checkpoint (no config.json, no timm 'blocks.0.attn.qkv.weight'); "
                         f"supported: {SUPPORTED}")
    d_model = state["blocks.0.attn.qkv.weight"].shape[1]
    n_layer = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks.") and k.endswith(".attn.qkv.weight"))
    n_head = n_head or d_model // 64  # ViTs use 64-dimensional heads (Ti/S/B/L), so that is the default
    if d_model % n_head:
        raise ValueError(f"{path}: {n_head} heads do not divide d_model {d_model} (--n-head)")
    return timm_vit_config(n_head, n_layer, d_model)


def _timm_folder_config(config: dict, path: Path) -> dict:
    """A timm folder (`save_for_hf`: config.json with `architecture`): layers and heads from timm's model
    definition, built on the meta device (no memory, no weights)."""
    import timm
    import torch

    try:
        with torch.device("meta"):
            model = timm.create_model(config["architecture"], pretrained=False, **config.get("model_args", {}))
    except Exception as error:
        raise ValueError(f"{path}: timm cannot build architecture {config['architecture']!r} ({error})") from error
    blocks = getattr(model, "blocks", None)
    if blocks is None or not hasattr(blocks[0], "attn") or not hasattr(blocks[0].attn, "qkv"):
        raise ValueError(f"{path}: timm architecture {config['architecture']!r} is not a VisionTransformer with "
                         f"fused qkv attention; supported: timm ViTs")
    return timm_blocks_config(blocks, architecture=config["architecture"])


def read_config(path: Path) -> dict:
    """The folder's config.json as a dict, or ValueError naming the file and the fault."""
    file = path / "config.json"
    if not file.exists():
        raise ValueError(f"{path}: a model folder needs a config.json (Hugging Face or timm layout)")
    try:
        config = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{file}: malformed JSON ({error})") from error
    if not isinstance(config, dict):
        raise ValueError(f"{file}: holds a JSON {type(config).__name__}, not an object")
    return config


def weight_files(path: Path) -> list[Path]:
    """The weight files of a model folder: those its index names, else model*.safetensors, else
    pytorch_model*.bin. Nothing else in the folder is read."""
    for pattern, index_name in FOLDER_WEIGHTS:
        index = path / index_name
        if index.exists():
            shards = _index_shards(index)
            missing = [shard for shard in shards if not (path / shard).exists()]
            if missing:
                raise ValueError(f"{index}: names {missing[0]!r}, which is not in {path}")
            return [path / shard for shard in shards]
        files = sorted(path.glob(pattern))
        if files:
            return files
    raise ValueError(f"{path}: no weights found (model*.safetensors or pytorch_model*.bin, with their index files)")


def _index_shards(index: Path) -> list[str]:
    """The shard files a weight index names (its weight_map's values), each a file name inside the index's folder:
    an index never makes the audit read another model's weights (a hub snapshot's shards are links in its folder)."""
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{index}: not a weight index (JSON with a weight_map): {first_line(error)}") from error
    if not isinstance(weight_map, dict) or not all(isinstance(shard, str) for shard in weight_map.values()):
        raise ValueError(f"{index}: not a weight index (its weight_map must map tensor names to file names)")
    for shard in weight_map.values():
        if Path(shard).is_absolute() or ".." in Path(shard).parts:
            raise ValueError(f"{index}: names {shard!r}, outside the model folder; an index names the shard files "
                             "beside it")
    return sorted(set(weight_map.values()))


def files_read(path: str | Path) -> list[Path]:
    """The files `open_weights` reads of a model: a folder's config.json and weight files, or the file itself."""
    from wdrank import lora

    path = Path(path)
    if lora.is_adapter(path):
        return [path / lora.CONFIG, lora.adapter_weights(path)]
    return [path / "config.json", *weight_files(path)] if path.is_dir() else [path]


def open_weights(path: str | Path, n_head: int | None = None) -> tuple[Mapping, dict]:
    """(name → tensor mapping, config dict with `model_type`) of a model folder or checkpoint file.

    Args:
        n_head: heads per layer for formats that do not store it (timm files); ignored otherwise.
    """
    path = Path(path)
    if n_head is not None and n_head < 1:
        raise ValueError(f"n_head (--n-head) must be a positive number of heads, got {n_head}")
    if not path.exists():
        raise FileNotFoundError(f"no model at {path} (a folder, a checkpoint file, or a hub id org/name[@revision])")
    if n_head is not None and (path.is_dir() or path.suffix == ".gguf"):
        raise ValueError(f"{path}: --n-head is for timm checkpoint files, which do not store the head count; this "
                         "model's config gives it (leave --n-head out)")
    if path.is_dir():
        config = read_config(path)
        files = weight_files(path)
        if files[0].suffix == ".safetensors":
            state: Mapping = LazySafetensors(files)
        else:
            state = {k: v for file in files for k, v in load_pickle(file).items()}
        if "model_type" not in config:
            if "architecture" in config:
                return state, _timm_folder_config(config, path)
            raise ValueError(f"{path / 'config.json'}: has no model_type (nor timm's architecture); "
                             f"supported: {SUPPORTED}")
        return state, config
    if path.suffix == ".gguf":
        state = GGUFLlama(path)
        return state, state.config
    if path.suffix == ".safetensors":
        state = LazySafetensors([path])
        return state, _timm_config(state, n_head, path)
    if path.suffix in PICKLE_SUFFIXES:
        state = load_pickle(path)
        return state, _timm_config(state, n_head, path)
    raise ValueError(f"{path}: unknown model format; give a model folder, a .safetensors, .pth/.bin or .gguf file")
