"""Hugging Face hub data in a cache the cluster shares: downloaded once on the submitting host, read offline
everywhere else; and models by hub id for the audit (`model_snapshot`: config and weights only).

The workflow's local rule `hub_download` calls `download` (the only step that reaches the hub); the data jobs,
which a cluster places on compute nodes without network, call `go_offline` and then `local_copy`, which resolves the
same snapshot from the cache and fails with a message naming the cache and the rule if it is not there. The cache
is `hub_cache` in the config (default resources/hub; it must lie on a file system the compute nodes share).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

# What the rule hub_download fetches: a dataset, a model (a tokenizer), or a model's config and weights only.
REPO_TYPES = ("dataset", "model", "weights")
# What a tokenizer needs from a model repository (tokenizer.json is what `wdrank.data.text` reads).
TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]


def go_offline() -> None:
    """Forbid hub access in this process (before `datasets` or `huggingface_hub` are imported): a job that needs
    something not yet downloaded fails at once instead of hanging on a node without network."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"


def is_local(path: str) -> bool:
    """Whether a dataset or tokenizer setting names something on disk (else it is a hub id)."""
    return Path(path).exists()


def download(repo_id: str, repo_type: str, revision: str | None, patterns: list[str], cache_dir: str | Path
             ) -> Path:
    """Fetch the files of a hub repository matching `patterns` (all if empty) into `cache_dir` (files already there
    are reused; with HF_HUB_OFFLINE=1 only the cache is used); returns the snapshot folder."""
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(repo_id, repo_type=repo_type, revision=revision, allow_patterns=patterns or None,
                                  cache_dir=str(cache_dir)))


def local_copy(repo_id: str, repo_type: str, revision: str | None, patterns: list[str], cache_dir: str | Path
               ) -> Path:
    """The snapshot folder of a repository downloaded earlier into `cache_dir`, found without the network.

    Raises:
        FileNotFoundError: naming the repository, the cache and how to fill it, if it was never downloaded or
            holds none of the files asked for.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    where = f"{repo_type} {repo_id}" + (f"@{revision}" if revision else "")
    hint = ("run the workflow's rule hub_download on a host with network (it runs on the submitting host), or set "
            "hub_cache to the folder that holds it")
    try:
        snapshot = Path(snapshot_download(repo_id, repo_type=repo_type, revision=revision,
                                          allow_patterns=patterns or None, cache_dir=str(cache_dir),
                                          local_files_only=True))
    except LocalEntryNotFoundError as error:
        raise FileNotFoundError(f"no local copy of {where} in the hub cache {cache_dir}: {hint}") from error
    if patterns and not any(any(snapshot.glob(pattern)) for pattern in patterns):
        raise FileNotFoundError(f"the copy of {where} in {snapshot} holds none of {patterns}: {hint}")
    return snapshot


def resolve(name: str, repo_type: str, revision: str | None, patterns: list[str], cache_dir: str | Path) -> Path:
    """A dataset or tokenizer setting as a local path: itself if it exists on disk, else its hub id's copy in the
    cache (`local_copy`)."""
    return Path(name) if is_local(name) else local_copy(name, repo_type, revision, patterns, cache_dir)


# A model on the hub, as the audit takes it: org/name or org/name@revision (a branch, tag or commit).
MODEL_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?:@(?P<revision>[\w./-]+))?$")
# What the audit downloads of a model repository: its config and weights, safetensors preferred over pickles.
MODEL_FILES = (["config.json", "model*.safetensors", "model.safetensors.index.json"],
               ["config.json", "pytorch_model*.bin", "pytorch_model.bin.index.json"],
               ["adapter_config.json", "adapter_model.safetensors"],  # PEFT adapters (wdrank.lora)
               ["adapter_config.json", "adapter_model.bin"])
# A snapshot folder inside a hub cache: .../models--org--name/snapshots/<commit>
CACHED_SNAPSHOT = re.compile(r"models--(?P<org>[^/]+?)--(?P<name>[^/]+)/snapshots/[0-9a-f]{40}/?$")


def model_id(spec: str) -> tuple[str, str | None] | None:
    """(repo id, revision or None) if `spec` is a hub model id and not a path on disk, else None."""
    match = MODEL_ID.match(spec)
    if match is None or Path(spec).exists():
        return None
    return match["repo"], match["revision"]


def offline() -> bool:
    """Whether the user asked for no hub access (HF_HUB_OFFLINE), read when called rather than at import."""
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def model_snapshot(repo_id: str, revision: str | None, cache_dir: str | Path | None = None) -> Path:
    """The local folder of a hub model's config and weights (`MODEL_FILES`), downloaded into the hub cache
    (`cache_dir`, default the user's Hugging Face cache) unless already there; offline (HF_HUB_OFFLINE=1), from the
    cache alone.

    Raises:
        FileNotFoundError: the model (or revision) is not in the cache and the hub is offline or out of reach.
        ValueError: the hub refuses: an unknown or gated repository, an unknown revision.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    from wdrank.weights import first_line

    where = repo_id + (f"@{revision}" if revision else "")
    for patterns in MODEL_FILES:
        try:
            snapshot = Path(snapshot_download(repo_id, revision=revision, allow_patterns=patterns,
                                              cache_dir=str(cache_dir) if cache_dir else None,
                                              local_files_only=offline()))
        except LocalEntryNotFoundError as error:
            raise FileNotFoundError(f"{where}: not in the hub cache {cache_dir or '(default)'} and the hub is "
                                    f"{'offline (HF_HUB_OFFLINE)' if offline() else 'out of reach'} (nor a local "
                                    "path)") from error
        except HfHubHTTPError as error:  # unknown or gated repository, unknown revision, refused token
            raise ValueError(f"{where}: {first_line(error)}") from error
        if any(snapshot.glob(patterns[1])):
            return snapshot
    weights = " or ".join(patterns[1] for patterns in MODEL_FILES)
    raise FileNotFoundError(f"{where}: the hub copy in {snapshot} has no weights ({weights})")


def model_name(spec: str | Path) -> str:
    """A model's default name in tables: the hub id (with @revision) for a hub id or a snapshot inside a hub cache,
    else the file or folder name."""
    text = str(spec)
    if model_id(text):
        return text
    match = CACHED_SNAPSHOT.search(Path(text).resolve().as_posix())
    if match:
        return f"{match['org']}/{match['name']}"
    return Path(text).stem if Path(text).is_file() else Path(text).name
