"""The registry of what the workflow sweeps over, and of the experiments trained by the shared loop.

`SWEEPS` is the one statement of every sweep axis: the workflow builds its job grids from it (one job per
combination, paths such as `wd_attn~1.0/seed~0`), config validation checks its values are distinct, and a run's
spectra carry its axes as leading columns. `TRAINED` lists the experiments that train a network with the shared
loop (`wdrank.experiments.training`), and the leading columns of each one's runs table.

Torch-free: the Snakefile imports this module on every start.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# config section -> {wildcard: key path of its values inside the section}
SWEEPS: dict[str, dict[str, tuple[str, ...]]] = {
    "factorized": {"lam": ("lambdas",), "seed": ("seeds",)},
    "language_model": {"wd_attn": ("sweep", "wd_attn"), "wd_mlp": ("sweep", "wd_mlp"), "seed": ("sweep", "seeds")},
    "vision_transformer": {"wd_attn": ("sweep", "wd_attn"), "seed": ("sweep", "seeds")},
    "toy_transformer": {"wd_attn": ("sweep", "wd_attn"), "seed": ("sweep", "seeds")},
}


@dataclass(frozen=True)
class Trained:
    """An experiment trained by the shared loop: its short name (its folder under results/ and the prefix of its
    result tables), its module (which defines `setup`) and the columns that identify a run in its runs table
    (weight decays and seed, as that table has always shown them)."""

    name: str
    module: str
    row_columns: tuple[str, ...]

    @property
    def training_rule(self) -> str:
        """The workflow's rule that trains each run, e.g. lm_train."""
        return f"{self.name}_train"


TRAINED: dict[str, Trained] = {
    "language_model": Trained("lm", "wdrank.experiments.lm", ("wd_attn", "wd_mlp", "wd_other", "seed")),
    "vision_transformer": Trained("vit", "wdrank.experiments.vit", ("wd_attn", "wd_mlp", "seed")),
    "toy_transformer": Trained("toy", "wdrank.experiments.toy", ("wd_attn", "seed")),
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
