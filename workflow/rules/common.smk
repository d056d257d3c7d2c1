import pandas as pd
from snakemake.utils import Paramspace

from wdrank.spectra import rank_column

# One environment for every rule; it agrees with pyproject.toml (tests/test_packaging.py).
WDRANK_ENV = "../../envs/wdrank.yaml"
# Rank thresholds as command-line arguments, and the rank column the figures show (the first threshold).
RANK_THRESHOLDS = " ".join(map(str, config["spectra"]["rank_thresholds"]))
RANK_METRIC = rank_column(config["spectra"]["rank_thresholds"][0])


def sweep(**axes):
    """A Paramspace over the Cartesian product of the given axes (e.g. lam=[...], seed=[...]).

    Adding a value to an axis in the config adds jobs and changes no existing output path.
    """
    index = pd.MultiIndex.from_product(list(axes.values()), names=list(axes))
    return Paramspace(index.to_frame(index=False))


def get_final_output():
    """Every final target (figures and tables) of the enabled experiments; `all` asks for these."""
    targets = []
    if config["factorized"]["enabled"]:
        targets += FACTORIZED_OUTPUTS
    if config["language_model"]["enabled"]:
        targets += LM_OUTPUTS
    if config["toy_transformer"]["enabled"]:
        targets += TOY_OUTPUTS
    if config["scalar_pair"]["enabled"]:
        targets += PAIR_OUTPUTS
    if config["vision_transformer"]["enabled"]:
        targets += VIT_OUTPUTS
    if config["audit"]["enabled"]:
        targets += AUDIT_OUTPUTS
    return targets


def lm_corpus_input(wildcards):
    """The fetched Shakespeare texts, when they are the source."""
    if config["language_model"]["data"]["source"] == "shakespeare":
        return {"corpus": "resources/lm/shakespeare"}
    return {}


def vit_data_input(wildcards):
    """The fetched MNIST digits, when they are the source."""
    if config["vision_transformer"]["data"]["source"] == "mnist_5k":
        return {"mnist": "resources/vit/mnist_5k.csv.gz"}
    return {}


def audit_input(wildcards):
    """A packaged model comes from its fetch rule; a local model is read in place."""
    if wildcards.model in AUDIT_PACKAGED:
        return {"model": f"resources/audit/{wildcards.model}"}
    return {"model": AUDIT_LOCAL[wildcards.model]["path"]}


def audit_model_path(wildcards, input):
    """The folder or file to audit: inside the fetched folder, the packaged path's last component if a file."""
    spec = AUDIT_PACKAGED.get(wildcards.model)
    if spec is not None and os.path.splitext(spec["path"])[1]:
        return os.path.join(input.model, os.path.basename(spec["path"]))
    return input.model


def audit_options(wildcards):
    """The audit command's optional arguments: the figure note, and the head count where the format lacks it."""
    spec = AUDIT_PACKAGED.get(wildcards.model) or AUDIT_LOCAL[wildcards.model]
    options = f"--note {shlex.quote(spec.get('note', ''))}"
    if spec.get("n_head"):
        options += f" --n-head {spec['n_head']}"
    return options
