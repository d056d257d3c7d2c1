"""The registry of what the workflow sweeps over, and of the experiments trained by the shared loop.

`SWEEPS` is the one statement of every sweep axis: the workflow builds its job grids from it (one job per
combination, paths such as `wd_attn~1.0/seed~0`), config validation checks its values are distinct, and a run's
spectra carry its axes as leading columns. `TRAINED` lists the experiments that train a network with the shared
loop (`wdrank.experiments.training`), and the leading columns of each one's runs table.

Torch-free: the Snakefile imports this module on every start.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# config section -> {wildcard: key path of its values inside the section}
SWEEPS: dict[str, dict[str, tuple[str, ...]]] = {
    "factorized": {"lam": ("lambdas",), "seed": ("seeds",)},
    "language_model": {"wd_attn": ("sweep", "wd_attn"), "wd_mlp": ("sweep", "wd_mlp"), "seed": ("sweep", "seeds")},
    "vision_transformer": {"wd_attn": ("sweep", "wd_attn"), "seed": ("sweep", "seeds")},
    "toy_transformer": {"wd_attn": ("sweep", "wd_attn"), "seed": ("sweep", "seeds")},
    "lora": {"lora_r": ("sweep", "r"), "lora_lr": ("sweep", "lr"), "wd_lora": ("sweep", "wd_lora"),
             "seed": ("sweep", "seeds")},
}


@dataclass(frozen=True)
class Trained:
    """An experiment trained by the shared loop: its short name (its folder under results/ and the prefix of its
    result tables), its module (which defines `setup`), the columns that identify a run in its runs table
    (weight decays and seed, as that table has always shown them), and the sweep axes that set one of the run's
    settings (axis -> key path inside the config section, e.g. the LoRA rank lora_r -> adapter.r)."""

    name: str
    module: str
    row_columns: tuple[str, ...]
    setting_axes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def training_rule(self) -> str:
        """The workflow's rule that trains each run, e.g. lm_train."""
        return f"{self.name}_train"


TRAINED: dict[str, Trained] = {
    "language_model": Trained("lm", "wdrank.experiments.lm", ("wd_attn", "wd_mlp", "wd_other", "seed")),
    "vision_transformer": Trained("vit", "wdrank.experiments.vit", ("wd_attn", "wd_mlp", "seed")),
    "toy_transformer": Trained("toy", "wdrank.experiments.toy", ("wd_attn", "seed")),
    "lora": Trained("lora", "wdrank.experiments.lora", ("lora_r", "lora_lr", "wd_lora", "seed"),
                    {"lora_r": ("adapter", "r"), "lora_lr": ("train", "lr")}),
}


def sweep_values(config: Mapping[str, Any], section: str) -> dict[str, list]:
    """{wildcard: values} of one experiment's sweep in a (resolved) configuration; missing keys give []."""
    axes = {}
    for wildcard, path in SWEEPS[section].items():
        node: Any = config.get(section, {})
        for part in path:
            node = node.get(part, []) if isinstance(node, Mapping) else []
        axes[wildcard] = list(node) if isinstance(node, list) else []
    return axes
