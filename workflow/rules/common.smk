import pandas as pd
from snakemake.utils import Paramspace

from wdrank.spectra import rank_column

# One environment for every rule; it agrees with pyproject.toml (tests/test_packaging.py).
WDRANK_ENV = "../../envs/wdrank.yaml"
# Rank thresholds as command-line arguments, and the rank column the figures show (the first threshold).
RANK_THRESHOLDS = " ".join(map(str, config["spectra"]["rank_thresholds"]))
RANK_METRIC = rank_column(config["spectra"]["rank_thresholds"][0])


def job_resources(rule_name):
    """The cluster resources of a rule: resources.default overridden by resources.<rule_name> (GPUs only if any)."""
    merged = {
        **config["resources"]["default"],
        **config["resources"].get(rule_name, {}),
    }
    if not merged["gpu"]:
        del merged["gpu"]
    return merged


def job_threads(rule_name):
    return job_resources(rule_name)["cpus_per_task"]


def launcher(rule_name):
    """How a training job starts `-m wdrank`: plain Python, or torchrun with one process per GPU (DDP)."""
    gpus = job_resources(rule_name).get("gpu", 0)
    if gpus > 1:
        return f"torchrun --standalone --nproc_per_node={gpus} -m"
    return "python -m"


def sweep(**axes):
    """A Paramspace over the Cartesian product of the given axes (e.g. lam=[...], seed=[...]).

    Adding a value to an axis in the config adds jobs and changes no existing output path.
    """
    index = pd.MultiIndex.from_product(list(axes.values()), names=list(axes))
    return Paramspace(index.to_frame(index=False))


def experiment_files():
    """Per experiment (its config section): its final targets ("outputs"), and the result tables its figures are
    drawn from ("sources", what results/cache/ holds)."""
    audit_tables = [f"results/tables/audit_{name}.csv" for name in AUDIT_NAMES]
    return {
        "factorized": {"outputs": FACTORIZED_OUTPUTS, "sources": [FACTORIZED_TABLE]},
        "language_model": {
            "outputs": LM_OUTPUTS,
            "sources": [LM_RUNS_TABLE, LM_SPECTRA_TABLE],
        },
        "vision_transformer": {"outputs": VIT_OUTPUTS, "sources": VIT_OUTPUTS[:2]},
        "toy_transformer": {"outputs": TOY_OUTPUTS, "sources": TOY_OUTPUTS[:2]},
        "scalar_pair": {"outputs": PAIR_OUTPUTS, "sources": PAIR_OUTPUTS[:1]},
        "audit": {"outputs": AUDIT_OUTPUTS, "sources": audit_tables},
    }


def enabled_files(kind):
    """The "outputs" (what `all` asks for) or "sources" of every enabled experiment."""
    return [
        path
        for section, files in experiment_files().items()
        if config[section]["enabled"]
        for path in files[kind]
    ]


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


def audit_spec(model):
    """The config entry of an audited model (packaged or local)."""
    return AUDIT_PACKAGED.get(model) or AUDIT_LOCAL[model]


def audit_options(wildcards):
    """The audit command's optional arguments: the head count where the checkpoint format lacks it."""
    n_head = audit_spec(wildcards.model).get("n_head")
    return f"--n-head {n_head}" if n_head else ""
