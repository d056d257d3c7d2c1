"""Bad configurations are refused with every offending key named, before anything runs."""

from pathlib import Path

import pytest
import yaml

from wdrank.cli import main
from wdrank.config import ConfigError, fill_defaults, resolve_config

REPO = Path(__file__).resolve().parents[1]


def walk_properties(node, path=""):
    for name, sub in node.get("properties", {}).items():
        yield f"{path}{name}", sub
        yield from walk_properties(sub, f"{path}{name}.")


def test_every_schema_key_has_description_and_default(schema):
    for key, sub in walk_properties(schema):
        assert sub.get("description"), f"schema key {key} has no description"
        assert "default" in sub, f"schema key {key} has no default"


def test_schema_defaults_are_themselves_valid(schema):
    resolved = resolve_config({}, schema)
    assert resolved["factorized"]["targets"] == [0.2, 0.4, 0.6, 0.8, 1.0]


def test_default_config_file_is_valid(default_config):
    assert 0.4 in default_config["factorized"]["lambdas"]


def leaves(node, path=""):
    for key, value in node.items():
        if isinstance(value, dict) and value:
            yield from leaves(value, f"{path}{key}.")
        else:
            yield f"{path}{key}", value


def test_config_yaml_states_no_value_the_schema_already_states(schema):
    """Each default has one home, the schema: config.yaml holds only the default run's own choices."""
    stated = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
    defaults = fill_defaults({}, schema)
    for key, value in leaves(stated):
        default = defaults
        for part in key.split("."):
            default = default.get(part) if isinstance(default, dict) else None
        assert value != default, f"config.yaml restates the schema's default of {key} ({value!r}): state it once"


def test_wdrank_config_prints_every_setting_with_its_description(schema, capsys, tmp_path):
    assert main(["config"]) == 0
    printed = capsys.readouterr().out
    assert yaml.safe_load(printed) == fill_defaults({}, schema)
    assert "# Relative thresholds tau of the numerical rank" in printed
    given = tmp_path / "mine.yaml"
    given.write_text("vision_transformer: {sweep: {seeds: [7]}}\n")
    assert main(["config", "--configfile", str(given)]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["vision_transformer"]["sweep"]["seeds"] == [7]
    given.write_text("vision_transformer: {sweep: {seeds: [-1]}}\n")
    assert main(["config", "--configfile", str(given)]) == 1
    assert "config key 'vision_transformer.sweep.seeds[0]'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "config, expected",
    [
        ({"factorized": {"lambdas": [0.1, -0.5]}}, r"config key 'factorized\.lambdas\[1\]': got -0\.5, allowed: a number >= 0"),
        ({"factorized": {"lambdass": [0.1]}}, r"config key 'factorized\.lambdass' is not known \(allowed keys here: .*lambdas"),
        ({"factorised": {}}, r"config key 'factorised' is not known \(allowed keys here: audit, container, factorized, figure_width, from_cache, hub_cache, language_model, lora, resources, scalar_pair, spectra, time_limit_warning, toy_transformer, tracking, vision_transformer"),
        ({"factorized": {"steps": "many"}}, r"config key 'factorized\.steps': got 'many', allowed: an integer >= 1"),
        ({"factorized": {"steps": 10.5}}, r"'factorized\.steps': got 10\.5, allowed: an integer"),
        ({"factorized": {"enabled": "yes"}}, r"'factorized\.enabled': got 'yes', allowed: true or false"),
        ({"spectra": {"rank_thresholds": [0.01, 2]}}, r"'spectra\.rank_thresholds\[1\]': got 2, allowed: a number > 0 and < 1"),
        ({"factorized": {"lambdas": []}}, r"'factorized\.lambdas': got \[\], allowed: a list of at least 1"),
        ({"factorized": {"trajectory_lambda": 0.2}}, r"'factorized\.trajectory_lambda': got 0\.2, allowed: one of factorized\.lambdas"),
        ({"factorized": {"seeds": [0, 0]}}, r"'factorized\.seeds': values must be distinct"),
        ({"language_model": {"sweep": {"wd_mlp": [0.1, 0.1]}}}, r"'language_model\.sweep\.wd_mlp': values must be distinct"),
        ({"toy_transformer": {"sweep": {"seeds": [1, 1]}}}, r"'toy_transformer\.sweep\.seeds': values must be distinct"),
        ({"vision_transformer": {"sweep": {"wd_attn": [1, 1]}}}, r"'vision_transformer\.sweep\.wd_attn': values must be distinct"),
        ({"vision_transformer": {"model": {"patch_size": 5}}}, r"'vision_transformer\.model\.patch_size': got 5, allowed: a divisor of the image size 28"),
        ({"vision_transformer": {"model": {"embed_dim": 30}}}, r"'vision_transformer\.model\.embed_dim': got 30, allowed: a multiple of"),
        ({"vision_transformer": {"data": {"source": "datasets", "image_size": 28}}}, r"'vision_transformer\.data\.dataset_path': required"),
        ({"from_cache": "true"}, r"'from_cache': got 'true', allowed: true or false \(Snakemake's --config reads only True and False as booleans: from_cache=True\)"),
        ({"resources": {"lm_train": {"gpus": 2}}}, r"'resources\.lm_train\.gpus' is not known \(allowed keys here: clusters, constraint, cpus_per_gpu, cpus_per_task, gpu, gpu_model, gres, mem_mb, mem_mb_per_cpu, nodes, qos, runtime, slurm_account, slurm_extra, slurm_partition"),
        ({"resources": {"lm_train": {"slurm_partition": 3}}}, r"'resources\.lm_train\.slurm_partition': got 3, allowed: a string"),
        ({"language_model": {"train": {"micro_batch_size": 5}}}, r"'language_model\.train\.micro_batch_size': got 5, allowed: a divisor of the per-process batch 32"),
        ({"vision_transformer": {"train": {"batch_size": 30}}, "resources": {"vit_train": {"gpu": 4}}}, r"'vision_transformer\.train\.batch_size': got 30, allowed: a multiple of the 4 processes of resources\.vit_train\.gpu"),
        ({"vision_transformer": {"data": {"source": "datasets", "dataset_path": "cifar10"}}}, r"'vision_transformer\.data\.image_size': required"),
        ({"language_model": {"data": {"max_tokens": {"train": 0}}}}, r"'language_model\.data\.max_tokens\.train': got 0, allowed: an integer >= 1"),
        ({"resources": {"default": {"runtime": 0}}}, r"'resources\.default\.runtime': got 0, allowed: an integer >= 1"),
        ({"language_model": {"compute": {"device": "tpu"}}}, r"'language_model\.compute\.device': got 'tpu', allowed: one of"),
        ({"vision_transformer": {"data": {"source": "cifar"}}}, r"'vision_transformer\.data\.source': got 'cifar', allowed: one of"),
        ({"language_model": {"train": {"steps": 30, "warmup_steps": 40}}}, r"'language_model\.train\.warmup_steps': got 40, allowed: at most language_model\.train\.steps \(30\)"),
        ({"language_model": {"train": {"steps": 50}}}, r"'language_model\.train\.eval_every': got 100, allowed: at most language_model\.train\.steps \(50\)"),
        ({"vision_transformer": {"train": {"steps": 500, "checkpoint_every": 600}}}, r"'vision_transformer\.train\.checkpoint_every': got 600, allowed: at most"),
        ({"language_model": {"model": {"n_kv_head": 2}}}, r"'language_model\.model\.n_kv_head': got 2, allowed: null for architecture gpt2"),
        ({"audit": {"models": [{"name": "mine", "path": "a"}, {"name": "mine", "path": "b"}]}}, r"'audit\.models\[1\]\.name': got 'mine', allowed: a name not used by another entry"),
        ({"audit": {"models": [{"name": "all-MiniLM-L6-v2", "path": "a"}]}}, r"'audit\.models\[0\]\.name': got 'all-MiniLM-L6-v2', allowed: a name not used by a packaged model"),
        ({"language_model": "{train: {steps: 5}}"}, r"'language_model': got '\{train: \{steps: 5\}\}', allowed: a mapping .*pass --configfile FILE"),
    ],
)
def test_bad_values_name_the_key_and_what_is_allowed(schema, config, expected):
    with pytest.raises(ConfigError, match=expected):
        resolve_config(config, schema)


def test_all_errors_are_reported_at_once(schema):
    with pytest.raises(ConfigError) as caught:
        resolve_config({"factorized": {"lr": -1, "init_std": 0, "bogus": 1}}, schema)
    message = str(caught.value)
    assert "factorized.lr" in message and "factorized.init_std" in message and "factorized.bogus" in message


def test_non_mapping_config_is_refused(schema):
    with pytest.raises(ConfigError, match="mapping"):
        resolve_config(["not", "a", "mapping"], schema)
