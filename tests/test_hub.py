"""Hub data: only `hub-download` (the workflow's local rule) reaches the hub; the data step reads its copy offline
and names the cache when the copy is missing. The hub cache is built here by hand, as a download leaves it."""

import json
import os
import subprocess
import sys

from wdrank.config import resolve_config

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def hub_repo(cache, repo_type, repo_id, files):
    """A repository in a Hugging Face hub cache: refs/main -> one snapshot holding `files` ({path: text})."""
    root = cache / f"{repo_type}s--{repo_id.replace('/', '--')}"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(COMMIT)
    for path, text in files.items():
        (root / "snapshots" / COMMIT / path).parent.mkdir(parents=True, exist_ok=True)
        (root / "snapshots" / COMMIT / path).write_text(text)
    return root / "snapshots" / COMMIT


def wdrank(*args, offline):
    env = {key: value for key, value in os.environ.items() if not key.startswith("HF_")}
    if offline:
        env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "wdrank", *args], capture_output=True, text=True, env=env)


def lm_data_settings(**data):
    section = {"source": "datasets", "dataset_path": "local/tiny-corpus", "data_files": ["train/*.jsonl"],
               "validation_fraction": 0.2, "test_fraction": 0.2, "vocab_size": 300, **data}
    return json.dumps(resolve_config({"language_model": {"data": section}})["language_model"]["data"])


def test_hub_download_fills_the_cache_and_the_data_step_reads_it_offline(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    cache = tmp_path / "hub"
    words = ["thou", "art", "more", "lovely", "and", "temperate", "rough", "winds", "do", "shake"]
    lines = [json.dumps({"text": " ".join(words[(i + j) % 10] for j in range(60))}) for i in range(40)]
    hub_repo(cache, "dataset", "local/tiny-corpus", {"train/00.jsonl": "\n".join(lines) + "\n", "README.md": "x"})
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.train_from_iterator(words, trainers.BpeTrainer(vocab_size=280, special_tokens=["<|endoftext|>"],
                                                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    snapshot = hub_repo(cache, "model", "local/tiny-tokenizer", {"tokenizer.json": tokenizer.to_str()})

    # as the rule runs it, offline here: the files are already in the cache, so nothing is fetched
    download = wdrank("hub-download", "--repo-id", "local/tiny-tokenizer", "--repo-type", "model", "--pattern",
                      "tokenizer.json", "--cache-dir", str(cache), offline=True)
    assert download.returncode == 0, download.stderr
    assert download.stdout.strip() == str(snapshot)

    # the data step goes offline by itself (no HF_* variables set here)
    result = wdrank("lm-data", "--settings", lm_data_settings(tokenizer="local/tiny-tokenizer"), "--hub-cache",
                    str(cache), "--out-dir", str(tmp_path / "data"), offline=False)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text())
    assert sum(split["documents"] for split in manifest["splits"].values()) == 40
    assert manifest["vocab_size"] == tokenizer.get_vocab_size() and manifest["tokenizer"].endswith(COMMIT)


def test_a_missing_hub_copy_is_one_line_naming_the_cache(tmp_path):
    result = wdrank("lm-data", "--settings", lm_data_settings(dataset_path="nobody/nothing"), "--hub-cache",
                    str(tmp_path / "hub"), "--out-dir", str(tmp_path / "data"), offline=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"wdrank lm-data: error: no local copy of dataset nobody/nothing in the hub cache {tmp_path / 'hub'}: run "
        "the workflow's rule hub_download on a host with network (it runs on the submitting host), or set "
        "hub_cache to the folder that holds it"]
    assert not (tmp_path / "data" / "manifest.json").exists()


def test_hub_download_of_an_audited_model_takes_config_and_weights_only(tmp_path):
    """`hub-download --repo-type weights` (the workflow's step for audit.models entries with a hub id): safetensors
    when the repository has them, else pytorch_model*.bin; offline, from the cache."""
    cache = tmp_path / "hub"
    snapshot = hub_repo(cache, "model", "org/pickled", {"config.json": "{}", "pytorch_model.bin": "weights",
                                                        "training_args.bin": "not weights"})
    result = wdrank("hub-download", "--repo-id", "org/pickled", "--repo-type", "weights", "--cache-dir", str(cache),
                    offline=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(snapshot)
    result = wdrank("hub-download", "--repo-id", "org/absent", "--repo-type", "weights", "--cache-dir", str(cache),
                    offline=True)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"wdrank hub-download: error: org/absent: not in the hub cache {cache} and the hub is offline (HF_HUB_OFFLINE) "
        "(nor a local path)"]
