"""wdrank: reproduce "Weight decay induces low-rank attention layers" (Kobayashi et al., NeurIPS 2024).

Entry point of the workflow: loads and validates the configuration, then includes one rule file per
experiment. All logic lives in the `wdrank` package (src/); rules only name files and call its CLI.
"""

import json
import os
import re
import shlex
import sys

from snakemake.utils import min_version

min_version("9.0")

# The package lives in src/. This Snakefile imports it, and rules run `python -m wdrank`: make it importable
# without installation too (inside a conda env of --use-conda, on a cluster node).
SRC = os.path.join(workflow.basedir, "src")
sys.path.insert(0, SRC)
# Quadrupled braces: one level for this f-string, one for Snakemake's formatting of shell commands.
shell.prefix(
    f"set -euo pipefail; export PYTHONPATH='{SRC}'${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "
)

from wdrank.config import ConfigError, resolve_config
from wdrank.extras import missing_training_packages, needs_training_extra
from wdrank.sweeps import TRAINED


configfile: "config.yaml"


# Validated against the schema the package ships (src/wdrank/config.schema.yaml), defaults filled.
try:
    config = resolve_config(config)
except ConfigError as error:
    sys.exit(f"wdrank: {error}")


# Training, its data and the two-scalar simulation need the `train` extra (torch and the field's libraries); drawing
# every figure from the committed cache and auditing safetensors or GGUF models do not. Checked before any job, unless
# the jobs run in their own conda environment or container.
TRAINING_SECTIONS = [*TRAINED, "scalar_pair"]
if (
    not config["from_cache"]
    and any(config[section]["enabled"] for section in TRAINING_SECTIONS)
    and not workflow.deployment_settings.deployment_method
    and (missing := missing_training_packages())
):
    sys.exit(
        "wdrank: "
        + needs_training_extra(
            "this run trains models and prepares their data, which", missing
        )
        + "; or draw every figure from the committed cache: --config from_cache=True"
    )


report: "workflow/report/workflow.rst"


# The image every job runs in under `--software-deployment-method apptainer` (config key container; envs/Dockerfile).
if config["container"]:

    container: config["container"]


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/factorized.smk"
include: "workflow/rules/lm.smk"
include: "workflow/rules/toy.smk"
include: "workflow/rules/vit.smk"
include: "workflow/rules/lora.smk"
include: "workflow/rules/runs.smk"
include: "workflow/rules/audit.smk"
include: "workflow/rules/products.smk"
include: "workflow/rules/cache.smk"
include: "workflow/rules/provenance.smk"


rule all:
    default_target: True
    input:
        enabled_files("outputs"),
        [PROVENANCE_SUMMARY] if PROVENANCE_TABLES else [],


include: "workflow/rules/cluster.smk"


unknown_rules = (
    set(config["resources"]) - {"default"} - {rule.name for rule in workflow.rules}
)
if unknown_rules:
    sys.exit(
        f"wdrank: config key 'resources.{sorted(unknown_rules)[0]}' is not known (allowed: default or a rule name: "
        f"{', '.join(sorted(rule.name for rule in workflow.rules))})"
    )
