"""Fig. 4: audit a trained model, head by head — is it where L2 and nuclear-norm regularisation coincide?

For every head and product (QK = W_Q W_Kᵀ, OV = W_V W_O) the Frobenius side ½(‖A‖² + ‖B‖²) is compared with the
nuclear norm ‖A Bᵀ‖_* (ratio 1 when the factors are balanced; the paper finds LLaMA 2, trained with AdamW and weight
decay 0.1, close to 1), together with the relative balance discrepancy and ranks. Never forms a d x d product: each
head's statistics come from the Gram matrices of its two factors, computed in float64 from the stored tensors, which
are read once each, layer by layer (a 7B model needs about one layer of memory beyond the page cache).

    from wdrank.audit import audit_model
    table = audit_model("EleutherAI/pythia-160m@step1000")     # a hub id, a folder, a file, an nn.Module ...
"""

from __future__ import annotations

import itertools
import os
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from wdrank.heads import LayerFactors, attention_factors, timm_blocks_config
from wdrank.lora import audit_adapter, is_adapter

def audit_model(model: Any, rank_thresholds: Iterable[float] | None = None, n_head: int | None = None,
                config: Mapping | Any | None = None, hub_cache: str | Path | None = None, threads: int | None = None,
                progress: bool = False) -> pd.DataFrame:
    """The per-head table of a model: one row per (layer, head, product) with every `wdrank.spectra` statistic and
    `nuclear_to_frobenius`, `gap_relative`, `balance_relative` (relative to the Frobenius side). A PEFT LoRA adapter
    (a folder or hub id with adapter_config.json) gives one row per adapted module instead (`wdrank.lora`).

    Args:
        model: a folder or checkpoint file (see `wdrank.weights.open_weights`), a hub id `org/name[@revision]`
            (downloaded into `hub_cache`, or read from it offline), a `torch.nn.Module` (transformers or timm), or a
            state dict (name → tensor) with its `config`.
        rank_thresholds: relative thresholds of the numerical rank columns (default: the config's
            spectra.rank_thresholds).
        n_head: heads per layer, for timm checkpoint files (which do not store it).
        config: a state dict's config: a dict with `model_type` or a transformers config.
        threads: layers computed at once (default: the CPUs this process may use, or OMP_NUM_THREADS).
        progress: a progress bar over layers on stderr.
    """
    if rank_thresholds is None:
        from wdrank.config import schema_default

        rank_thresholds = schema_default("spectra", "rank_thresholds")
    if isinstance(model, (str, Path)) and is_adapter(path := local_model(model, hub_cache)):
        return with_relative_columns(audit_adapter(path, tuple(rank_thresholds)))
    state, model_config = model_weights(model, n_head, config, hub_cache)
    try:
        return factor_spectra_table(attention_factors(state, model_config), tuple(rank_thresholds), threads,
                                    progress)
    except ValueError as error:  # name the model read, unless the message names its file already
        if isinstance(model, (str, Path)) and str(model) not in str(error):
            raise ValueError(f"{model}: {error}") from error
        raise


def model_weights(model: Any, n_head: int | None = None, config: Mapping | Any | None = None,
                  hub_cache: str | Path | None = None) -> tuple[Mapping, dict]:
    """(name → tensor mapping, config dict) of anything `audit_model` takes."""
    from wdrank.weights import open_weights

    if isinstance(model, (str, Path)):
        return open_weights(local_model(model, hub_cache), n_head)
    if isinstance(model, Mapping):
        if config is None:
            raise ValueError("a state dict needs its config (config=..., a dict with model_type or a transformers "
                             "config)")
        return model, _config_dict(config)
    if hasattr(model, "state_dict"):
        return model.state_dict(), _config_dict(config if config is not None else _module_config(model))
    raise ValueError(f"cannot audit a {type(model).__name__}: give a path, a hub id, an nn.Module or a state dict")


def local_model(model: str | Path, hub_cache: str | Path | None = None) -> Path:
    """The model on disk: a path as given, a hub id's snapshot (downloaded into `hub_cache` unless there)."""
    from wdrank import hub

    identified = hub.model_id(str(model))
    return hub.model_snapshot(*identified, hub_cache) if identified else Path(model)


def _config_dict(config: Mapping | Any) -> dict:
    return dict(config) if isinstance(config, Mapping) else config.to_dict()


def _module_config(module: Any) -> dict:
    """The config of an in-memory model: a transformers model's own, or a timm ViT's from its blocks."""
    if hasattr(module, "config") and hasattr(module.config, "to_dict"):
        return module.config.to_dict()
    blocks = getattr(module, "blocks", None)
    if blocks is not None and hasattr(blocks[0], "attn") and hasattr(blocks[0].attn, "qkv"):
        return timm_blocks_config(blocks)
    raise ValueError(f"a {type(module).__name__} has no transformers config and is not a timm ViT: pass config=")


def default_threads() -> int:
    """OMP_NUM_THREADS if set (Snakemake sets a job's threads there), else the CPUs this process may run on."""
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def factor_spectra_table(factors: Iterator[LayerFactors], rank_thresholds: tuple[float, ...],
                         threads: int | None = None, progress: bool = False) -> pd.DataFrame:
    """One row per (layer, head, product) with every statistic of `wdrank.spectra.summarize_grams`.

    Layers are computed `threads` at a time, each on one thread with BLAS and OpenMP pools held to one thread (so
    that NumPy's, torch's and our threads never oversubscribe the cores), while the next layer is read: at most
    `threads` + 1 layers are in memory. Also, relative to the Frobenius side: `nuclear_to_frobenius` (1 when weight
    decay and nuclear-norm regularisation coincide, the paper's Fig. 4), `gap_relative` and `balance_relative`.
    """
    from threadpoolctl import threadpool_limits
    from tqdm import tqdm

    threads = default_threads() if threads is None else threads
    if threads < 1:
        raise ValueError(f"threads (--threads) must be a positive number, got {threads}")
    layers = (list(group) for _, group in itertools.groupby(factors, key=lambda f: f.layer))
    first = next(layers, None)  # the config and the first layer's weights are checked before any progress is shown
    layers = itertools.chain([first] if first is not None else [], layers)
    frames: list[pd.DataFrame] = []
    with threadpool_limits(limits=1), ThreadPoolExecutor(threads) as pool, tqdm(
            desc="audit", unit="layer", disable=not progress, mininterval=1) as bar:
        pending: deque = deque()
        for layer in layers:
            pending.append(pool.submit(_layer_frame, layer, rank_thresholds))
            while len(pending) >= threads:
                frames.append(pending.popleft().result())
                bar.update()
        for future in pending:
            frames.append(future.result())
            bar.update()
    if not frames:
        raise ValueError("the model has no attention layers")
    return with_relative_columns(pd.concat(frames, ignore_index=True))


def with_relative_columns(table: pd.DataFrame) -> pd.DataFrame:
    """`nuclear_to_frobenius`, `gap_relative` and `balance_relative` added: each relative to the Frobenius side (empty
    where that is 0), for a table of heads or of adapter modules alike."""
    frobenius = table["frobenius_side"].where(table["frobenius_side"] > 0)
    table["nuclear_to_frobenius"] = table["nuclear_norm"] / frobenius
    table["gap_relative"] = table["gap"] / frobenius
    table["balance_relative"] = table["balance_discrepancy"] / frobenius
    return table


def _layer_frame(layer: list[LayerFactors], rank_thresholds: tuple[float, ...]) -> pd.DataFrame:
    rows = []
    for product in layer:
        stats = product.statistics(rank_thresholds)
        n_head = len(product.first.starts)
        rows.append(pd.DataFrame({
            "layer": product.layer, "head": np.arange(n_head), "product": product.product,
            "head_dim": product.first.size,
            **{name: value for name, value in stats.items() if name != "singular_values"},
        }))
    return pd.concat(rows, ignore_index=True)
