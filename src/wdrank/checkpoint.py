"""Checkpoints that resume exactly: weights (safetensors), optimizer and schedule state, the step.

Layout of one checkpoint:

    <checkpoint_dir>/step_000400/
        model.safetensors, config.json   # `from_pretrained` loads these (transformers models); other models get
                                          # the config that `wdrank.heads` splits them by; a LoRA run's
                                          # checkpoint is its adapter (adapter_model.safetensors, adapter_config.json)
        optimizer.pt                      # optimizer + scheduler state, read with torch.load(weights_only=True)
        trainer_state.json                # {"step": 400}, written last: a folder without it is not a checkpoint

Crash-safe at every instant: a checkpoint is written into a hidden temporary folder, flushed to disk and renamed
into place; one is removed by renaming it to a hidden name first. So a kill at any moment leaves each `step_*`
folder either complete or absent, and the hidden leftovers of killed writes are never listed (the next save clears
them). A save that fails names the file, removes its temporary folder and leaves every earlier checkpoint as it was;
one that runs out of space (a full disk or quota) says so, with the bytes the checkpoint needs and those free.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from wdrank import disk_space

STEP_PREFIX = "step_"
WEIGHTS = "model.safetensors"
ADAPTER_WEIGHTS = "adapter_model.safetensors"  # a LoRA run's checkpoint: peft's save_pretrained of the adapter
OPTIMIZER = "optimizer.pt"
STATE = "trainer_state.json"
CONFIG = "config.json"
CHECKPOINT_NAME = re.compile(rf"{STEP_PREFIX}\d+")
HIDDEN = "."  # temporary folders of writes in progress and folders being removed


class CheckpointError(ValueError):
    """A checkpoint that is missing, truncated or corrupted; the message names the file."""


def checkpoint_name(step: int) -> str:
    return f"{STEP_PREFIX}{step:06d}"


def save_checkpoint(directory: str | Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer | None,
                    scheduler: Any | None, model_config: dict | None = None) -> Path:
    """Write the checkpoint of `step` atomically (see the module docstring); returns its folder. A model without
    `save_pretrained` gets `model_config` as config.json, so that every checkpoint folder reads like a model folder
    (`wdrank.weights.open_weights`).

    Raises:
        CheckpointError: naming the file that could not be written; earlier checkpoints are untouched.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    _clear_leftovers(directory)
    final = directory / checkpoint_name(step)
    tmp = Path(tempfile.mkdtemp(prefix=f"{HIDDEN}{final.name}.", dir=directory))
    needed = partial(_checkpoint_bytes, model, optimizer)  # sized only when a save fails
    try:
        with _naming_failures(final / WEIGHTS, tmp, needed):
            if hasattr(model, "save_pretrained"):
                model.save_pretrained(tmp, safe_serialization=True)
            else:
                save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, tmp / WEIGHTS)
                if model_config is not None:
                    (tmp / CONFIG).write_text(json.dumps(model_config, indent=2))
        if optimizer is not None:
            # through a Python file, so that a full disk is an OSError (ENOSPC), not torch's "unexpected pos"
            with _naming_failures(final / OPTIMIZER, tmp, needed), open(tmp / OPTIMIZER, "wb") as handle:
                torch.save({"optimizer": optimizer.state_dict(),
                            "scheduler": scheduler.state_dict() if scheduler is not None else None}, handle)
        with _naming_failures(final / STATE, tmp, needed):
            (tmp / STATE).write_text(json.dumps({"step": step}))
            for path in tmp.iterdir():
                _fsync(path)
            _fsync(tmp)
        if final.exists():  # the same step again (deterministic, so the same content): hide the old, then rename
            discard_checkpoint(final)
        os.replace(tmp, final)
        _fsync(directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def list_checkpoints(directory: str | Path) -> list[Path]:
    """Complete checkpoints in `directory`, by step: `step_<digits>` folders holding their trainer state (hidden
    folders of killed writes or removals are ignored)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir()
                  if CHECKPOINT_NAME.fullmatch(p.name) and (p / STATE).is_file())


@contextmanager
def _naming_failures(path: Path, tmp: Path, needed: Callable[[], int]) -> Iterator[None]:
    """Turn any failure while writing the checkpoint file `path` (OSError, safetensors' own errors) into a
    CheckpointError naming it (its final path), after removing the temporary folder `tmp` it was written in. Out of
    space, the message says so, with the bytes of the whole checkpoint (`needed()`) and the bytes free."""
    try:
        yield
    except Exception as error:
        shutil.rmtree(tmp, ignore_errors=True)  # first: the free space reported is what a retry would find
        if reason := disk_space.out_of_space(error):
            reason = disk_space.explain(reason, path.parent.parent, needed())
        else:
            reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error).splitlines()[0]
        raise CheckpointError(f"cannot write checkpoint file {path}: {reason}; the earlier checkpoints in "
                              f"{path.parent.parent} are kept") from error


def _checkpoint_bytes(model: nn.Module, optimizer: torch.optim.Optimizer | None) -> int:
    """About the size of a checkpoint on disk: the bytes of the tensors saved (a LoRA run: its adapter's)."""
    if hasattr(model, "peft_config"):
        from peft import get_peft_model_state_dict

        weights = get_peft_model_state_dict(model)
    else:
        weights = model.state_dict()
    tensors = list(weights.values())
    if optimizer is not None:
        tensors += [value for state in optimizer.state.values() for value in state.values()
                    if isinstance(value, torch.Tensor)]
    return sum(tensor.nbytes for tensor in tensors)


def _fsync(path: Path) -> None:
    """Flush a file, or a folder's entries, to disk: a checkpoint renamed into place after it is complete even if
    the node goes down (a killed process alone loses nothing that it wrote)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def discard_checkpoint(path: str | Path) -> None:
    """Remove a checkpoint folder without ever leaving a partial one listed: hide it by a rename, then delete."""
    path = Path(path)
    hidden = Path(tempfile.mkdtemp(prefix=f"{HIDDEN}{path.name}.removed.", dir=path.parent))
    os.replace(path, hidden / path.name)  # atomic: from here on the checkpoint is not listed
    shutil.rmtree(hidden, ignore_errors=True)


def _clear_leftovers(directory: Path) -> None:
    """Delete the hidden folders that killed writes or removals left behind."""
    for path in directory.iterdir():
        if path.name.startswith(f"{HIDDEN}{STEP_PREFIX}") and path.is_dir():
            shutil.rmtree(path, ignore_errors=True)


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The weights of a checkpoint folder (a LoRA run's: its adapter) or of a .safetensors file, with a clear error
    if unreadable."""
    path = Path(path)
    weights = path / WEIGHTS if path.is_dir() else path
    if path.is_dir() and not weights.exists() and (path / ADAPTER_WEIGHTS).exists():
        weights = path / ADAPTER_WEIGHTS
    try:
        return load_file(weights)
    except Exception as error:  # safetensors raises several types for missing, truncated or foreign files
        raise CheckpointError(f"cannot read checkpoint weights {weights}: {error}") from error


def load_checkpoint(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    scheduler: Any | None = None) -> dict:
    """Restore model (and optimizer, scheduler) from a checkpoint folder; returns its trainer state."""
    path = Path(path)
    state_dict = load_weights(path)
    if hasattr(model, "peft_config"):  # a LoRA run: the checkpoint holds the adapter alone, the base is frozen
        from peft import set_peft_model_state_dict

        missing, unexpected = set_peft_model_state_dict(model, state_dict)
        missing = [key for key in missing if "lora_" in key]
    else:
        missing, unexpected = model.load_state_dict(state_dict, strict=False)
        # transformers drops tied weights (lm_head = wte) from the file; anything else missing is an error
        tied = set(getattr(model, "_tied_weights_keys", None) or [])
        missing = [key for key in missing if key not in tied and not any(key.endswith(t) for t in tied)]
    if missing or unexpected:
        raise CheckpointError(f"checkpoint {path} does not fit the model: missing {missing}, "
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
