"""Audit a PEFT LoRA adapter as the factor pairs it is: per adapted module, the update ΔW = s · B A.

A LoRA adapter trains A (r x in) and B (out x r) with weight decay on both, and they act only through their product:
the paper's theorem applies as it does to attention's W_Q W_Kᵀ. Each row holds, for the product B A, the statistics
of the attention audit under the same column names (`wdrank.spectra`): nuclear norm against the Frobenius side
½(‖A‖² + ‖B‖²), their gap, the balance ‖A Aᵀ − Bᵀ B‖_F, spectral norm, effective, stable and numerical ranks. They
describe B A, the pair weight decay acts on; the update the base model sees is `scaling` times it (transposed for
GPT-2's Conv1D, `fan_in_fan_out`, which changes no singular value). The base model is not needed.

Read from the folder peft's `save_pretrained` writes (adapter_config.json, adapter_model.safetensors or .bin), keys
`base_model.model.<module>.lora_A.weight` and `.lora_B.weight` (`lora_embedding_A`/`_B` for embeddings, conv
kernels flattened). Per-module r and alpha come from `rank_pattern` and `alpha_pattern`, matched as peft matches
them; s = alpha / r, or alpha / √r with `use_rslora`. Adapters whose update is not s · B A alone are refused.

Torch-free for safetensors adapters (the spectra job of a LoRA run starts in about a second).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from wdrank.spectra import summarize_grams

CONFIG = "adapter_config.json"
WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
PREFIX = "base_model.model."
# A factor's key: the module, which factor, an adapter name where one was kept, and `.weight` for Linear and conv
FACTOR_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?:embedding_)?(?P<factor>[AB])"
                        r"(?:\.(?P<adapter>[^.]+))?(?:\.weight)?$")
# Keys that mean the update is more than s · B A (DoRA's magnitude, a LoRA bias); peft's other types are refused
# by their peft_type
VARIANT_KEYS = {"lora_magnitude_vector": "DoRA (its magnitude vector rescales W + s·B A column by column)",
                "lora_B.bias": "a LoRA bias (lora_bias: true adds b to s·B A x)"}


@dataclass(frozen=True)
class AdapterModule:
    """One adapted module: its factors as float64 (A: r x in, B: out x r) and the update's scaling."""

    name: str
    a: np.ndarray
    b: np.ndarray
    r: int
    scaling: float

    @property
    def layer(self) -> int | None:
        """The block index in the module's path (model.layers.3.self_attn.q_proj → 3), None outside blocks."""
        match = re.search(r"\.(\d+)\.", f".{self.name}.")
        return int(match.group(1)) if match else None

    @property
    def kind(self) -> str:
        """The module's own name (q_proj, c_attn, ...): the same kind in every layer."""
        return self.name.rsplit(".", 1)[-1]


def is_adapter(path: str | Path) -> bool:
    """Whether `path` is a PEFT adapter folder (it holds adapter_config.json)."""
    return (Path(path) / CONFIG).is_file()


def adapter_weights(folder: str | Path) -> Path:
    """The adapter's weight file: safetensors preferred."""
    folder = Path(folder)
    for name in WEIGHTS:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{folder}: an adapter folder without weights ({' or '.join(WEIGHTS)})")


def read_config(folder: str | Path) -> dict:
    """adapter_config.json, checked to describe an update s · B A (a LoRA adapter without DoRA or bias)."""
    path = Path(folder) / CONFIG
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: unreadable adapter config: {error}") from error
    peft_type = str(config.get("peft_type", "")).upper()
    if peft_type != "LORA":
        raise ValueError(f"{path}: a {config.get('peft_type')} adapter; the audit reads LoRA adapters, whose update "
                         "is s·B A (IA3, LoHa, LoKr, AdaLoRA, ... are other products)")
    if config.get("use_dora"):
        raise ValueError(f"{path}: a DoRA adapter (use_dora: true): its magnitude vector rescales W + s·B A, so "
                         "the update is not s·B A alone")
    if config.get("lora_bias"):
        raise ValueError(f"{path}: lora_bias: true adds a bias to s·B A; the audit reads updates s·B A alone")
    if not isinstance(config.get("r"), int) or config["r"] < 1:
        raise ValueError(f"{path}: r must be a positive integer, got {config.get('r')!r}")
    return config


def pattern_value(pattern: Mapping[str, float], module: str, default: float) -> float:
    """A module's value in peft's rank_pattern or alpha_pattern: the first key that matches the end of its path (as
    peft's `get_pattern_key` matches: regex `(.*\\.)?(key)$`), else `default`."""
    for key, value in pattern.items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return default


def module_scaling(config: Mapping, module: str) -> tuple[int, float]:
    """(r, s) of one module: its r and alpha from the patterns or the config, s = alpha / r (alpha / √r, rsLoRA)."""
    r = int(pattern_value(config.get("rank_pattern") or {}, module, config["r"]))
    alpha = pattern_value(config.get("alpha_pattern") or {}, module, config.get("lora_alpha", 8))
    return r, alpha / (math.sqrt(r) if config.get("use_rslora") else r)


def _tensors(file: Path) -> Mapping:
    """The adapter's tensors by key: memory-mapped safetensors, or a pickle read with weights_only=True."""
    if file.suffix == ".safetensors":
        from wdrank.weights import LazySafetensors

        return LazySafetensors([file])
    from wdrank.weights import load_pickle

    return {key: value.float().numpy() for key, value in load_pickle(file).items()}


def read_adapter(folder: str | Path) -> list[AdapterModule]:
    """The adapted modules of a PEFT LoRA adapter folder, in layer order, their shapes checked against r.

    Raises:
        ValueError: naming the module or the adapter type, for a variant whose update is not s · B A, a module with
            A or B missing, or factors whose shapes disagree with each other or with the module's r.
    """
    folder = Path(folder)
    config = read_config(folder)
    file = adapter_weights(folder)
    tensors = _tensors(file)
    factors: dict[str, dict[str, str]] = {}
    for key in tensors:
        for fragment, variant in VARIANT_KEYS.items():
            if fragment in key:
                raise ValueError(f"{file}: {key.removeprefix(PREFIX)} belongs to {variant}; the audit reads updates "
                                 "s·B A alone")
        match = FACTOR_KEY.match(key)
        if match:
            factors.setdefault(match["module"], {})[match["factor"]] = key
    if not factors:
        raise ValueError(f"{file}: no LoRA factors (keys ...lora_A.weight / ...lora_B.weight)")
    modules = []
    for name, keys in factors.items():
        missing = {"A", "B"} - set(keys)
        if missing:
            raise ValueError(f"{file}: module {name} has lora_{next(iter(set(keys)))} but no lora_{missing.pop()}")
        r, scaling = module_scaling(config, name)
        a, b = _factor_matrices(tensors[keys["A"]], tensors[keys["B"]], name, r, file)
        modules.append(AdapterModule(name, a, b, r, scaling))
    return sorted(modules, key=lambda m: (m.layer if m.layer is not None else -1, m.name))


def _factor_matrices(a, b, name: str, r: int, file: Path) -> tuple[np.ndarray, np.ndarray]:
    """A as r x in and B as out x r in float64; a conv kernel's A is flattened, its B must be 1 x 1."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim > 2 and b.ndim > 2 and all(size == 1 for size in b.shape[2:]):
        a, b = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], b.shape[1])
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != r or b.shape[1] != r:
        raise ValueError(f"{file}: module {name}: lora_A {tuple(a.shape)} and lora_B {tuple(b.shape)} do not fit "
                         f"r = {r} (A must be r x in, B out x r; r from the config's r or rank_pattern)")
    return a, b


def adapter_table(modules: Iterable[AdapterModule], rank_thresholds: tuple[float, ...]) -> pd.DataFrame:
    """One row per module: name, layer, kind, r, scaling, in/out features and every statistic of B A (Gram route,
    float64); `wdrank.audit.audit_model` adds the columns relative to the Frobenius side, as for attention."""
    rows = []
    for module in modules:
        # B A = X Yᵀ with X = B (out x r), Y = Aᵀ (in x r): Gram matrices Bᵀ B and A Aᵀ, both r x r
        stats = summarize_grams(module.b.T @ module.b, module.a @ module.a.T, rank_thresholds)
        rows.append({"module": module.name, "layer": module.layer, "kind": module.kind, "r": module.r,
                     "scaling": module.scaling, "in_features": module.a.shape[1], "out_features": module.b.shape[0],
                     **{key: value.item() for key, value in stats.items() if key != "singular_values"}})
    table = pd.DataFrame(rows)
    table["layer"] = table["layer"].astype("Int64")
    return table


def audit_adapter(folder: str | Path, rank_thresholds: tuple[float, ...]) -> pd.DataFrame:
    """The per-module table of a PEFT LoRA adapter folder (`adapter_table` of `read_adapter`)."""
    return adapter_table(read_adapter(folder), rank_thresholds)
