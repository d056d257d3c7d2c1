"""Checkpoints that resume exactly: weights (safetensors), optimizer and schedule state, the step.

Layout of one checkpoint, written to a temporary folder and renamed when complete (a killed job never leaves
a folder that looks finished):

    <checkpoint_dir>/step_000400/
        model.safetensors, config.json   # `from_pretrained` loads these (transformers models); other models get
                                          # the config that `wdrank.heads` splits them by
        optimizer.pt                      # optimizer + scheduler state, read with torch.load(weights_only=True)
        trainer_state.json                # {"step": 400}
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

STEP_PREFIX = "step_"
WEIGHTS = "model.safetensors"
OPTIMIZER = "optimizer.pt"
STATE = "trainer_state.json"
CONFIG = "config.json"


class CheckpointError(ValueError):
    """A checkpoint that is missing, truncated or corrupted; the message names the file."""


def checkpoint_name(step: int) -> str:
    return f"{STEP_PREFIX}{step:06d}"


def save_checkpoint(directory: str | Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer | None,
                    scheduler: Any | None, model_config: dict | None = None) -> Path:
    """Write the checkpoint of `step` atomically; returns its folder. A model without `save_pretrained` gets
    `model_config` as config.json, so that every checkpoint folder reads like a model folder
    (`wdrank.weights.open_weights`)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / checkpoint_name(step)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=directory))
    try:
        if hasattr(model, "save_pretrained"):
            model.save_pretrained(tmp, safe_serialization=True)
        else:
            save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, tmp / WEIGHTS)
            if model_config is not None:
                (tmp / CONFIG).write_text(json.dumps(model_config, indent=2))
        if optimizer is not None:
            torch.save({"optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict() if scheduler is not None else None}, tmp / OPTIMIZER)
        (tmp / STATE).write_text(json.dumps({"step": step}))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def list_checkpoints(directory: str | Path) -> list[Path]:
    """Complete checkpoints in `directory`, by step (temporary folders of killed writes are ignored)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_dir() and p.name.startswith(STEP_PREFIX))


def checkpoint_step(path: str | Path) -> int:
    return int(Path(path).name.removeprefix(STEP_PREFIX))


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The weights of a checkpoint folder (or a .safetensors file), with a clear error if unreadable."""
    path = Path(path)
    weights = path / WEIGHTS if path.is_dir() else path
    try:
        return load_file(weights)
    except Exception as error:  # safetensors raises several types for missing, truncated or foreign files
        raise CheckpointError(f"cannot read checkpoint weights {weights}: {error}") from error


def load_checkpoint(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    scheduler: Any | None = None) -> dict:
    """Restore model (and optimizer, scheduler) from a checkpoint folder; returns its trainer state."""
    path = Path(path)
    state_dict = load_weights(path)
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    # transformers drops tied weights (lm_head = wte) from the file; anything else missing is an error
    tied = set(getattr(model, "_tied_weights_keys", None) or [])
    missing = [key for key in missing if key not in tied and not any(key.endswith(t) for t in tied)]
    if missing or unexpected:
        raise CheckpointError(f"checkpoint {path / WEIGHTS} does not fit the model: missing {missing}, "
                              f"unexpected {unexpected}")
    if optimizer is not None:
        try:
            saved = torch.load(path / OPTIMIZER, weights_only=True, map_location="cpu")
        except Exception as error:
            raise CheckpointError(f"cannot read optimizer state {path / OPTIMIZER}: {error}") from error
        optimizer.load_state_dict(saved["optimizer"])
        if scheduler is not None and saved["scheduler"] is not None:
            scheduler.load_state_dict(saved["scheduler"])
    try:
        return json.loads((path / STATE).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"cannot read trainer state {path / STATE}: {error}") from error
