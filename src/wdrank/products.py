"""The paper's figures and tables, each declared once: what builds it, the result tables it reads, its options.

Everything that names a product reads `PRODUCTS`: the command line (`wdrank figure NAME`, `wdrank table NAME`), the
workflow (one rule per product, named like it, writing `results/figures/NAME.{pdf,png}` or
`results/tables/NAME.{csv,md,...}`), and the report (caption `workflow/report/NAME.rst`, category below). A product's
function takes its tables (pandas DataFrames; a list where it gathers one table per model) and its options as keyword
arguments, named as here; a figure's returns a matplotlib Figure, a table's its text per format.

Torch-free and pandas-free: the Snakefile imports this module on every start.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from wdrank.spectra import rank_column

FIGURE_FORMATS = ("pdf", "png")
# The families a product's {wildcard} ranges over, and what each names: the workflow supplies their values.
WILDCARDS = {
    "model": "a model audited once (Fig. 4)",
    "trajectory": "a model audited along training",
    "experiment": "a trained experiment's folder under results/ (lm, vit, toy, lora)",
}


@dataclass(frozen=True)
class Option:
    """A product's option: its command-line help and type, and where the workflow finds its value (`value(config,
    wildcards)`)."""

    help: str
    value: Callable[[Mapping[str, Any], Any], Any]
    type: type = str
    nargs: int | None = None
    choices: tuple[str, ...] | None = None
    default: Any = None  # on the command line only: None makes the option required

    def argument(self, value: Any) -> list[str]:
        """The option's value as command-line words."""
        return [str(item) for item in value] if self.nargs else [str(value)]


@dataclass(frozen=True)
class Product:
    """One figure or paper table. `reads` maps the function's table arguments to result tables under
    results/tables/ (by stem; a {wildcard} the product lacks gathers one table per value into a list)."""

    name: str
    kind: str  # "figure" or "table"
    build: str  # "module:function"
    description: str
    category: str  # the report's section
    reads: dict[str, str]
    options: dict[str, Option] = field(default_factory=dict)
    section: str | None = None  # the config section that enables it; None: that of its experiment wildcard
    wildcard: str | None = None  # one product per value of this family (WILDCARDS)
    formats: tuple[str, ...] = FIGURE_FORMATS

    @property
    def stem(self) -> str:
        """The name of its files, with its wildcard, e.g. fig4_audit_{model}."""
        return f"{self.name}_{{{self.wildcard}}}" if self.wildcard else self.name

    @property
    def folder(self) -> str:
        """Where its files go: figures and tables apart."""
        return "results/figures" if self.kind == "figure" else "results/tables"

    def outputs(self) -> dict[str, str]:
        """{format: path pattern} of the files it writes."""
        return {ext: f"{self.folder}/{self.stem}.{ext}" for ext in self.formats}

    def gathered(self, table: str) -> str | None:
        """The wildcard over which an input table is gathered into a list, if any."""
        names = set(re.findall(r"\{(\w+)\}", self.reads[table])) - {self.wildcard}
        return names.pop() if names else None

    @property
    def module(self) -> str:
        """The module of its function: the workflow reruns the product when that module's code changes."""
        return self.build.partition(":")[0]

    def function(self) -> Callable[..., Any]:
        """Its function, imported only when it is built (a figure's plotting stack is heavy)."""
        module, _, name = self.build.partition(":")
        return getattr(importlib.import_module(module), name)


def setting(*keys: str) -> Callable[[Mapping[str, Any], Any], Any]:
    """An option whose value is a config key (given as its path)."""

    def value(config: Mapping[str, Any], wildcards: Any) -> Any:
        node: Any = config
        for key in keys:
            node = node[key]
        return node

    value.__doc__ = "config key " + ".".join(keys)
    return value


def _rank_metric(config: Mapping[str, Any], wildcards: Any) -> str:
    """The rank column the figures and tables show: that of the first of spectra.rank_thresholds."""
    return rank_column(config["spectra"]["rank_thresholds"][0])


def _model_note(config: Mapping[str, Any], wildcards: Any) -> str:
    """The `note` of an audited model's config entry (audit.packaged or audit.models)."""
    name = getattr(wildcards, "model", None) or wildcards.trajectory
    entries = [*config["audit"]["packaged"], *config["audit"]["models"]]
    return next(entry.get("note", "") for entry in entries if entry["name"] == name)


def _experiment(config: Mapping[str, Any], wildcards: Any) -> str:
    """The experiment a learning-curves figure is drawn for: its wildcard."""
    return wildcards.experiment


def _first_of(*keys: str) -> Callable[[Mapping[str, Any], Any], Any]:
    """An option whose value is the first value of a sweep axis (the cell a figure shows)."""
    values = setting(*keys)

    def value(config: Mapping[str, Any], wildcards: Any) -> Any:
        return values(config, wildcards)[0]

    value.__doc__ = "the first of config key " + ".".join(keys)
    return value


RANK_METRIC = Option("the rank column shown, e.g. rank_tol_0.01", _rank_metric)
LM_WD_MLP = Option("the λ_MLP held fixed", setting("language_model", "figures", "wd_mlp"), float)
NOTE = Option("a line added under the title (e.g. quantisation)", _model_note, default="")
LM_RUNS = {"spectra": "lm_head_spectra"}
VIT_RUNS = {"spectra": "vit_head_spectra", "runs": "vit_runs"}
LORA_CELL = {"lora_r": Option("the LoRA rank r shown", _first_of("lora", "sweep", "r"), int),
             "lora_lr": Option("the learning rate shown", _first_of("lora", "sweep", "lr"), float)}
LORA_SCHEDULE = {"steps": Option("the runs' steps", setting("lora", "train", "steps"), int),
                 "warmup_steps": Option("the runs' warmup steps", setting("lora", "train", "warmup_steps"), int),
                 "min_lr_ratio": Option("the cosine's final lr / lr", setting("lora", "train", "min_lr_ratio"), float)}
LORA_RUNS = {"spectra": "lora_head_spectra", "runs": "lora_runs"}
LM = "Fig. 3 (left) and Table 1: language models"
VIT = "Fig. 3 (right): Vision Transformer"
TOY = "Fig. 2: toy Transformer"
AUDIT = "Fig. 4: pretrained models"
LORA = "Beyond the paper: LoRA adapters"

PRODUCTS: tuple[Product, ...] = (
    Product("fig1_factorized_matrices", "figure", "wdrank.plots.factorized:plot_factorized",
            "Fig. 1: gap, balance and singular values of two factor matrices", "Fig. 1: factorised matrices",
            {"table": "fig1_factorized_matrices"},
            {"trajectory_lambda": Option("the λ of panel (d)", setting("factorized", "trajectory_lambda"), float)},
            section="factorized"),
    Product("fig3_lm_rank_per_head", "figure", "wdrank.plots.lm:fig3_rank_per_head",
            "Fig. 3 (left): rank per head of one layer against λ_SA", LM, LM_RUNS,
            {"layer": Option("the layer shown", setting("language_model", "figures", "layer"), int),
             "wd_mlp": LM_WD_MLP, "rank_metric": RANK_METRIC}, section="language_model"),
    Product("figA_lm_rank_all_layers", "figure", "wdrank.plots.lm:figA_rank_all_layers",
            "appendix: mean rank over heads against λ_SA, a line per layer", LM, LM_RUNS,
            {"wd_mlp": LM_WD_MLP, "rank_metric": RANK_METRIC}, section="language_model"),
    Product("lm_rank_vs_step", "figure", "wdrank.plots.lm:rank_vs_step",
            "mean rank against training step, a line per λ_SA", LM, LM_RUNS,
            {"wd_mlp": LM_WD_MLP, "rank_metric": RANK_METRIC}, section="language_model"),
    Product("lm_rank_and_perplexity", "figure", "wdrank.plots.lm:rank_and_perplexity",
            "Table 1's finding: mean QK/OV rank and test perplexity against λ_SA, paired by seed", LM,
            {**LM_RUNS, "runs": "lm_runs"}, {"wd_mlp": LM_WD_MLP, "rank_metric": RANK_METRIC},
            section="language_model"),
    Product("table1_lm_perplexity", "table", "wdrank.tables:table1_lm_perplexity",
            "Table 1: test perplexity per (λ_SA, λ_MLP), paired differences from λ_SA = 0", LM, {"runs": "lm_runs"},
            section="language_model", formats=("csv", "md", "tex")),
    Product("lm_rank", "table", "wdrank.tables:lm_rank",
            "language models: mean QK/OV rank per (λ_SA, λ_MLP), each λ_SA against λ_SA = 0, paired by seed", LM,
            LM_RUNS, {"rank_metric": RANK_METRIC}, section="language_model", formats=("csv", "md")),
    Product("fig3_vit_rank", "figure", "wdrank.plots.vit:fig3_vit_rank",
            "Fig. 3 (right): ViT mean rank and test accuracy against λ", VIT, VIT_RUNS,
            {"rank_metric": RANK_METRIC}, section="vision_transformer"),
    Product("figA_vit_rank_heatmap", "figure", "wdrank.plots.vit:figA_vit_rank_heatmap",
            "ViT mean rank per layer and λ", VIT, VIT_RUNS, {"rank_metric": RANK_METRIC},
            section="vision_transformer"),
    Product("vit_rank", "table", "wdrank.tables:vit_rank",
            "ViT: QK/OV rank and accuracy per λ, each λ against λ = 0, paired by seed", VIT, VIT_RUNS,
            {"rank_metric": RANK_METRIC}, section="vision_transformer", formats=("csv", "md")),
    Product("fig2_toy_transformer", "figure", "wdrank.plots.toy:plot_toy",
            "Fig. 2: toy Transformer rank, balance, gap and loss against λ", TOY,
            {"spectra": "toy_head_spectra", "runs": "toy_runs"},
            {"rank_metric": RANK_METRIC,
             "lr": Option("the runs' learning rate (the e^{-2 lr λ t} line)", setting("toy_transformer", "train", "lr"),
                          float),
             "optimizer": Option("the runs' optimizer, for the title", setting("toy_transformer", "train",
                                                                               "optimizer"))},
            section="toy_transformer"),
    Product("figA_scalar_pair_trajectories", "figure", "wdrank.plots.toy:plot_scalar_pair",
            "appendix: two scalars, plain vs factorised, AdamW vs Adam + L2", TOY,
            {"table": "figA_scalar_pair_trajectories"},
            {"target": Option("w* of the runs", setting("scalar_pair", "target"), float, nargs=2)},
            section="scalar_pair"),
    Product("lora_rank_and_perplexity", "figure", "wdrank.plots.lora:lora_rank_and_perplexity",
            "LoRA: rank of B A used out of r and test perplexity against λ_LoRA, paired by seed", LORA, LORA_RUNS,
            {**LORA_CELL, "rank_metric": RANK_METRIC}, section="lora"),
    Product("lora_balance", "figure", "wdrank.plots.lora:lora_balance",
            "LoRA: balance and nuclear/Frobenius of the factor pairs against the decay clock λΣη", LORA,
            {"spectra": "lora_head_spectra"}, {**LORA_CELL, **LORA_SCHEDULE}, section="lora"),
    Product("lora_rank", "table", "wdrank.tables:lora_rank",
            "LoRA: decay clock, rank used, nuclear/Frobenius, balance and perplexity per (r, lr, λ_LoRA)", LORA,
            LORA_RUNS, {"rank_metric": RANK_METRIC, **LORA_SCHEDULE}, section="lora", formats=("csv", "md")),
    Product("learning_curves", "figure", "wdrank.plots.curves:plot_learning_curves",
            "training loss, held-out loss and learning rate against the step, every run", "Learning curves",
            {"curves": "{experiment}_learning_curves"},
            {"experiment": Option("the experiment, for the title", _experiment, choices=("lm", "vit", "toy", "lora"))},
            wildcard="experiment"),
    Product("fig4_audit", "figure", "wdrank.plots.audit:plot_audit",
            "Fig. 4 of one model: Frobenius side vs nuclear norm, ratio and rank per layer", AUDIT,
            {"table": "audit_{model}"}, {"note": NOTE}, section="audit", wildcard="model"),
    Product("fig4_audit_summary", "table", "wdrank.tables:fig4_audit_summary",
            "per model and product: median nuclear/Frobenius ratio, IQR, balance and rank", AUDIT,
            {"tables": "audit_{model}"}, section="audit", formats=("csv",)),
    Product("audit_trajectory", "figure", "wdrank.plots.audit:plot_trajectory",
            "an audit along training: ratio, balance and rank per layer against the step", AUDIT,
            {"table": "audit_trajectory_{trajectory}"}, {"note": NOTE}, section="audit", wildcard="trajectory"),
)

BY_NAME = {product.name: product for product in PRODUCTS}


def flag(name: str) -> str:
    """The command-line flag of a product's table, option or output file: --rank-metric for rank_metric."""
    return "--" + name.replace("_", "-")


def command_arguments(product: Product, tables: Mapping[str, Any], options: Mapping[str, Any],
                      outputs: Mapping[str, str]) -> list[str]:
    """The arguments of `wdrank figure|table NAME` that build `product` from these tables (a list where gathered),
    option values and output files."""
    words: list[str] = []
    for name in product.reads:
        words += [flag(name), *(tables[name] if product.gathered(name) else [tables[name]])]
    for name, value in options.items():
        words += [flag(name), *product.options[name].argument(value)]
    for ext in product.formats:
        words += [flag(ext), outputs[ext]]
    return [str(word) for word in words]


def option_values(product: Product, config: Mapping[str, Any], wildcards: Any = None) -> dict[str, Any]:
    """The value of each of a product's options in a (resolved) configuration, for one value of its wildcard."""
    return {name: option.value(config, wildcards) for name, option in product.options.items()}
