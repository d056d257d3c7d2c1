"""The boundary between the light install (redraw figures and tables from result tables, audit safetensors and GGUF
models) and the `train` extra (training, its data, .pth checkpoints): which training packages are missing, and the
one line that says what to install instead of an ImportError traceback."""

from __future__ import annotations

import importlib.util

TRAINING_PACKAGES = ("torch", "torchvision", "transformers", "timm", "datasets", "tokenizers", "peft")
INSTALL_TRAINING = 'pip install "wdrank[train]" (in a checkout: pip install -e ".[train]")'


def missing_training_packages() -> list[str]:
    """The packages of the `train` extra that cannot be imported here (looked up, not imported: torch takes seconds)."""
    missing = []
    for name in TRAINING_PACKAGES:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    return missing


def training_package(error: ImportError) -> str | None:
    """The training package whose absence `error` reports, or None for any other import error."""
    root = (error.name or "").split(".")[0]
    return root if isinstance(error, ModuleNotFoundError) and root in TRAINING_PACKAGES else None


def needs_training_extra(what: str, missing: list[str] | str) -> str:
    """One line: `what` needs the train extra, which packages are missing, and how to install them."""
    missing = [missing] if isinstance(missing, str) else missing
    return (f"{what} needs the training extra, not installed here (no {', '.join(missing)}): "
            f"{INSTALL_TRAINING}")
