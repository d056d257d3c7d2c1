"""Validate a pipeline configuration against its JSON schema, with errors that name the key at fault.

The schema (`config.schema.yaml` beside this module, shipped with the package) gives every key a type, a
description and a default: it is the one place defaults are stated, for the workflow and the command line alike.
`resolve_config` fills the defaults, then reports *every* problem at once, each as
``config key 'factorized.lambdas[0]': ... (allowed: ...)``, before Snakemake schedules any job.
"""

from __future__ import annotations

import copy
import textwrap
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from wdrank.batches import split_problem
from wdrank.sweeps import SWEEPS, TRAINED, sweep_values

SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")


class ConfigError(ValueError):
    """A configuration that cannot run; the message lists every offending key."""


def load_schema(path: str | Path = SCHEMA_PATH) -> dict[str, Any]:
    """Read a YAML JSON-schema file (by default the pipeline's)."""
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


@cache
def schema_default(*keys: str) -> Any:
    """The schema's default of a config key, e.g. schema_default("spectra", "rank_thresholds")."""
    node = load_schema()
    for key in keys:
        node = node["properties"][key]
    return node["default"]


def _key_path(parts: Iterable[Any]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<top level>"


def _allowed(schema: dict[str, Any]) -> str:
    """A short human description of what a schema node accepts."""
    if "enum" in schema:
        return "one of " + ", ".join(repr(v) for v in schema["enum"])
    kind = schema.get("type", "value")
    bounds = []
    for key, sign in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<")):
        if key in schema:
            bounds.append(f"{sign} {schema[key]}")
    if kind == "array" and "items" in schema:
        item = _allowed(schema["items"])
        size = f" of at least {schema['minItems']}" if "minItems" in schema else ""
        return f"a list{size} of {item}"
    kinds = kind if isinstance(kind, list) else [kind]
    names = {"number": "a number", "integer": "an integer", "boolean": "true or false", "string": "a string",
             "null": "null", "object": "a mapping"}
    if "pattern" in schema:
        bounds.append(f"matching {schema['pattern']}")
    texts = [names.get(k, f"a {k}") + (" " + " and ".join(bounds) if bounds and k != "null" else "") for k in kinds]
    return " or ".join(texts)


def _describe(error: jsonschema.ValidationError) -> str:
    path = list(error.absolute_path)
    if error.validator == "additionalProperties":
        known = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(known))
        return "; ".join(
            f"config key '{_key_path(path + [name])}' is not known (allowed keys here: {', '.join(known)})"
            for name in unknown
        )
    if error.validator == "required":
        return f"config key '{_key_path(path)}': {error.message}"
    description = error.schema.get("description", "")
    hint = f" — {description}" if description else ""
    if error.schema.get("type") == "boolean" and str(error.instance).lower() in ("true", "false"):
        hint = f" (Snakemake's --config reads only True and False as booleans: {_key_path(path)}=True)"
    if error.schema.get("type") == "object" and isinstance(error.instance, str):
        hint = (" (Snakemake's --config sets top-level keys to plain values, so a nested section given there arrives "
                "as text: put it in a YAML file and pass --configfile FILE)")
    return (
        f"config key '{_key_path(path)}': got {error.instance!r}, allowed: {_allowed(error.schema)}{hint}"
    )


def fill_defaults(config: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of `config` with every missing key that has a schema default filled in, recursively."""
    filled = copy.deepcopy(config)
    for name, sub in schema.get("properties", {}).items():
        if name not in filled and "default" in sub:
            filled[name] = copy.deepcopy(sub["default"])
        if isinstance(filled.get(name), dict) and sub.get("type") == "object":
            filled[name] = fill_defaults(filled[name], sub)
    return filled


def _semantic_errors(config: dict[str, Any]) -> list[str]:
    """Checks a JSON schema cannot express: values that must refer to other values."""
    errors = []
    factorized = config.get("factorized", {})
    if factorized.get("trajectory_lambda") not in factorized.get("lambdas", []):
        errors.append(
            f"config key 'factorized.trajectory_lambda': got {factorized.get('trajectory_lambda')!r}, "
            f"allowed: one of factorized.lambdas {factorized.get('lambdas')}"
        )
    for section in SWEEPS:
        for wildcard, values in sweep_values(config, section).items():
            if len(set(values)) != len(values):
                key = ".".join((section, *SWEEPS[section][wildcard]))
                errors.append(f"config key '{key}': values must be distinct, got {values}")
    lm = config.get("language_model", {})
    model, sweep, figures = lm.get("model", {}), lm.get("sweep", {}), lm.get("figures", {})
    if model.get("n_embd", 1) % model.get("n_head", 1):
        errors.append(f"config key 'language_model.model.n_embd': got {model['n_embd']}, allowed: a multiple of "
                      f"language_model.model.n_head ({model['n_head']})")
    if model.get("n_kv_head") is not None and model.get("architecture") == "gpt2":
        errors.append(f"config key 'language_model.model.n_kv_head': got {model['n_kv_head']}, allowed: null for "
                      "architecture gpt2 (grouped key/value heads are llama's)")
    elif model.get("n_kv_head") and model.get("n_head", 1) % model["n_kv_head"]:
        errors.append(f"config key 'language_model.model.n_kv_head': got {model['n_kv_head']}, allowed: a divisor "
                      f"of language_model.model.n_head ({model['n_head']})")
    if figures.get("layer") is not None and figures["layer"] >= model.get("n_layer", 1):
        errors.append(f"config key 'language_model.figures.layer': got {figures['layer']}, allowed: 0 .. "
                      f"{model['n_layer'] - 1} (language_model.model.n_layer - 1)")
    if figures.get("wd_mlp") is not None and figures["wd_mlp"] not in sweep.get("wd_mlp", []):
        errors.append(f"config key 'language_model.figures.wd_mlp': got {figures['wd_mlp']}, allowed: one of "
                      f"language_model.sweep.wd_mlp {sweep.get('wd_mlp')}")
    data = lm.get("data", {})
    if lm.get("enabled") and data.get("source") == "datasets" and not data.get("dataset_path"):
        errors.append("config key 'language_model.data.dataset_path': required when data.source is 'datasets'")
    if lm.get("enabled") and data.get("source") == "text_files" and not data.get("text_files"):
        errors.append("config key 'language_model.data.text_files': required when data.source is 'text_files'")
    vit = config.get("vision_transformer", {})
    vit_model, vit_data = vit.get("model", {}), vit.get("data", {})
    if vit_model.get("embed_dim", 1) % vit_model.get("n_head", 1):
        errors.append(f"config key 'vision_transformer.model.embed_dim': got {vit_model['embed_dim']}, allowed: a "
                      f"multiple of vision_transformer.model.n_head ({vit_model['n_head']})")
    size = vit_data.get("image_size") or DIGIT_SIZE.get(vit_data.get("source"))
    if size and size % vit_model.get("patch_size", 1):
        errors.append(f"config key 'vision_transformer.model.patch_size': got {vit_model['patch_size']}, allowed: "
                      f"a divisor of the image size {size}")
    if vit.get("enabled") and vit_data.get("source") == "datasets":
        for key in ("dataset_path", "image_size"):
            if not vit_data.get(key):
                errors.append(f"config key 'vision_transformer.data.{key}': required when data.source is 'datasets'")
    return errors + _schedule_errors(config) + _audit_name_errors(config) + _batch_errors(config)


def _schedule_errors(config: dict[str, Any]) -> list[str]:
    """Warm-up, evaluation and checkpoint intervals must fit in the run they belong to."""
    errors = []
    for section in ("language_model", "vision_transformer"):
        train = config.get(section, {}).get("train", {})
        steps = train.get("steps")
        for key in ("warmup_steps", "eval_every", "checkpoint_every"):
            if steps is not None and train.get(key, 0) > steps:
                errors.append(f"config key '{section}.train.{key}': got {train[key]}, allowed: at most "
                              f"{section}.train.steps ({steps})")
    return errors


def _audit_name_errors(config: dict[str, Any]) -> list[str]:
    """Every audited model has a name of its own: it names its table, figure and jobs."""
    audit = config.get("audit", {})
    packaged = {model.get("name") for model in audit.get("packaged", [])}
    seen: set[str] = set()
    errors = []
    for index, model in enumerate(audit.get("models", [])):
        name = model.get("name")
        if name in seen or name in packaged:
            other = "another entry of audit.models" if name in seen else "a packaged model (audit.packaged)"
            errors.append(f"config key 'audit.models[{index}].name': got {name!r}, allowed: a name not used by "
                          f"{other}")
        seen.add(name)
    return errors


# Side of the images of the sources that ship digits (the size a ViT's patches must divide unless image_size is set).
DIGIT_SIZE = {"mnist_5k": 28, "fashion_mnist": 28}


def _batch_errors(config: dict[str, Any]) -> list[str]:
    """The global batch must split evenly over the training processes (the GPUs of the experiment's training rule),
    and each share into micro-batches (`wdrank.batches.split_problem`)."""
    errors = []
    resources = config.get("resources", {})
    for section in ("language_model", "vision_transformer"):
        rule = TRAINED[section].training_rule
        train = config.get(section, {}).get("train", {})
        processes = max(1, resources.get(rule, {}).get("gpu", resources.get("default", {}).get("gpu", 0)))
        problem = split_problem(train.get("batch_size", 1), processes, train.get("micro_batch_size"))
        if problem is not None:
            key, allowed = problem
            where = f" of resources.{rule}.gpu" if key == "batch_size" else ""
            errors.append(f"config key '{section}.train.{key}': got {train[key]}, allowed: {allowed}{where}")
    return errors


def _resolve_figure_defaults(config: dict[str, Any]) -> None:
    """The defaults the schema defines from other keys: the per-head figure's layer (null: the middle one,
    n_layer // 2) and the λ_MLP the rank figures hold fixed (null: the first of sweep.wd_mlp)."""
    lm = config["language_model"]
    if lm["figures"]["layer"] is None:
        lm["figures"]["layer"] = lm["model"]["n_layer"] // 2
    if lm["figures"]["wd_mlp"] is None:
        lm["figures"]["wd_mlp"] = lm["sweep"]["wd_mlp"][0]


def resolve_config(config: dict[str, Any], schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """Validate `config` against `schema` (by default the pipeline's), fill defaults, and return the resolved
    configuration.

    Raises:
        ConfigError: listing every problem found, each naming its key and what is allowed.
    """
    schema = load_schema() if schema is None else schema
    if not isinstance(config, dict):
        raise ConfigError(f"the configuration must be a mapping of keys to values, got {type(config).__name__}")
    resolved = fill_defaults(config, schema)
    validator = jsonschema.Draft7Validator(schema)
    errors = [_describe(e) for e in sorted(validator.iter_errors(resolved), key=lambda e: list(e.absolute_path))]
    if not errors:
        errors = _semantic_errors(resolved)
    if errors:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(errors))
    _resolve_figure_defaults(resolved)
    return resolved


def differences(config: dict[str, Any], reference: dict[str, Any], prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two resolved configurations (sections compared key by key)."""
    keys = []
    for key in sorted(set(config) | set(reference)):
        mine, theirs = config.get(key), reference.get(key)
        if isinstance(mine, dict) and isinstance(theirs, dict):
            keys += differences(mine, theirs, f"{prefix}{key}.")
        elif mine != theirs:
            keys.append(f"{prefix}{key}")
    return keys


def annotated_yaml(config: dict[str, Any], schema: dict[str, Any] | None = None, indent: int = 0) -> str:
    """`config` as YAML, each key under its schema description as a comment: every setting, its value and why
    (`wdrank config` prints the defaults so, to copy into a config file)."""
    schema = load_schema() if schema is None else schema
    pad, lines = " " * indent, []
    known = [key for key in schema.get("properties", {}) if key in config]
    for key in known + [key for key in config if key not in known]:  # in the schema's order
        value = config[key]
        if indent == 0 and lines:
            lines.append("")  # a blank line between top-level settings
        node = schema.get("properties", {}).get(key, {})
        description = " ".join(node.get("description", "").split())
        lines += [f"{pad}# {line}" for line in textwrap.wrap(description, 118 - indent)]
        if isinstance(value, dict) and value and "properties" in node:
            lines += [f"{pad}{key}:", annotated_yaml(value, node, indent + 2)]
        else:
            text = yaml.safe_dump(value, default_flow_style=True, width=1 << 20, allow_unicode=True)
            lines.append(f"{pad}{key}: " + text.removesuffix("...\n").strip())  # a scalar ends its document so
    return "\n".join(lines)
