"""Language models (paper Fig. 3 left, appendix layers, Table 1): AdamW with separate λ_SA and λ_MLP.

One run = one (λ_SA, λ_MLP, seed): train a GPT-2 (or LLaMA) architecture from scratch on token ids, checkpoint
at configured steps and report test perplexity (exp of the mean token NLL over the whole test split).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from wdrank.batches import evaluation_batch
from wdrank.data.text import load_tokens
from wdrank.device import fused_kernels, model_device
from wdrank.experiments.training import Throughput, TrainingSetup
from wdrank.models.lm import LMShape, build_lm, flops_per_token
from wdrank.models.next_token import NextTokenLoss, summed_next_token_nll
from wdrank.optim import AdamWTraining, WeightDecays

SECTION = "language_model"  # its config section


@dataclass(frozen=True)
class LMTraining(AdamWTraining):
    """Settings of one run (config section `language_model.train`)."""

    eval_batches: int  # batches of fixed validation windows per evaluation


class LMTask:
    """Next-token prediction on random windows; batch `step` is a pure function of (seed, step)."""

    def __init__(self, train_tokens: np.ndarray, validation_tokens: np.ndarray, context: int, batch_size: int,
                 seed: int, eval_batches: int, eval_batch_size: int):
        for name, tokens in (("train", train_tokens), ("validation", validation_tokens)):
            if len(tokens) <= context:
                raise ValueError(f"the {name} split has {len(tokens)} tokens, fewer than one context of {context}")
        self.train_tokens, self.validation_tokens = train_tokens, validation_tokens
        self.context, self.batch_size, self.seed, self.eval_batch_size = context, batch_size, seed, eval_batch_size
        n_windows = min(eval_batches * batch_size, len(validation_tokens) // context)
        self.validation_starts = np.linspace(0, len(validation_tokens) - context, n_windows).astype(np.int64)

    def _windows(self, tokens: np.ndarray, starts: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.stack([tokens[s:s + self.context] for s in starts]).astype(np.int64))  # (B, T)

    def batch(self, step: int, rows: slice) -> torch.Tensor:
        """Rows of the global batch of `step`: windows at starts drawn for the whole batch, then sliced."""
        rng = np.random.default_rng((self.seed, step))
        starts = rng.integers(0, len(self.train_tokens) - self.context + 1, self.batch_size)
        return self._windows(self.train_tokens, starts[rows])

    @staticmethod
    def training_module(model: nn.Module) -> NextTokenLoss:
        """Model and loss as one module (chunked output layer and loss on CUDA, plain elsewhere)."""
        return NextTokenLoss(model, chunked=fused_kernels(model_device(model)))

    def loss(self, module: NextTokenLoss, batch: torch.Tensor) -> torch.Tensor:
        return module(batch)

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Mean loss over fixed validation windows (eval_batches global batches), read `eval_batch_size` at a time,
        in fp32 (evaluation runs outside autocast) and by the training module's route."""
        device, total, module = model_device(model), 0.0, self.training_module(model)
        for start in range(0, len(self.validation_starts), self.eval_batch_size):
            starts = self.validation_starts[start:start + self.eval_batch_size]
            total += self.loss(module, self._windows(self.validation_tokens, starts).to(device)).item() * len(starts)
        return {"validation_loss": total / len(self.validation_starts)}


@torch.no_grad()
def mean_token_nll(model: nn.Module, tokens: np.ndarray, context: int, batch_size: int) -> tuple[float, int]:
    """Mean next-token NLL over a whole split, in non-overlapping windows of `context` tokens (each window's first
    token is context only), in float64 by the device's route (`wdrank.models.next_token`); deterministic.
    Returns (mean NLL in nats, number of predicted tokens)."""
    model.eval()
    total, count, chunked = 0.0, 0, fused_kernels(model_device(model))
    starts = np.arange(0, len(tokens) - 1, context)
    for chunk in np.array_split(starts, max(1, -(-len(starts) // batch_size))):
        windows = [np.asarray(tokens[s:s + context], dtype=np.int64) for s in chunk]
        for length in sorted({len(w) for w in windows}):  # the last window may be shorter
            batch = torch.from_numpy(np.stack([w for w in windows if len(w) == length])).to(model_device(model))
            total += summed_next_token_nll(model, batch, chunked)
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


def model_vocab_size(requested: int | None, data_dir: Path) -> int:
    """The model's vocabulary: the tokenizer's (manifest), or `model.vocab_size` if larger (padded rows are never
    predicted from data; e.g. 50,257 to keep GPT-2's shape whatever the tokenizer, or a multiple of 64 for speed)."""
    tokenizer_size = json.loads((data_dir / "manifest.json").read_text())["vocab_size"]
    if requested is None:
        return tokenizer_size
    if requested < tokenizer_size:
        raise ValueError(f"language_model.model.vocab_size {requested} is smaller than the tokenizer's "
                         f"{tokenizer_size} ({data_dir / 'tokenizer.json'})")
    return requested


def setup(settings: dict, data_dir: str | Path, decays: WeightDecays, seed: int) -> TrainingSetup:
    """One run: the model of `settings["model"]` (vocabulary from the prepared data's tokenizer), random windows
    of the training tokens, test perplexity at the end, the tokenizer beside every checkpoint."""
    data_dir = Path(data_dir)
    model_settings = dict(settings["model"])
    shape = LMShape(vocab_size=model_vocab_size(model_settings.pop("vocab_size"), data_dir), **model_settings)
    training = LMTraining(**settings["train"])
    tokens = {split: load_tokens(data_dir, split) for split in ("train", "validation", "test")}
    model = build_lm(shape, seed)

    eval_batch = evaluation_batch(training.batch_size, training.micro_batch_size)

    def score(trained: nn.Module, evaluation: dict[str, float]) -> dict:
        test_nll, test_tokens = mean_token_nll(trained, tokens["test"], shape.context, eval_batch)
        return {"parameters": sum(p.numel() for p in trained.parameters()), **evaluation, "test_loss": test_nll,
                "test_perplexity": float(np.exp(test_nll)), "test_tokens": test_tokens}

    return TrainingSetup(
        model=model, optimizer=training.optimizer(model, decays), schedule=training.schedule(),
        task=LMTask(tokens["train"], tokens["validation"], shape.context, training.batch_size, seed,
                    training.eval_batches, eval_batch),
        throughput=Throughput("tokens", training.batch_size * shape.context, flops_per_token(model, shape)),
        score=score, model_shape=asdict(shape),
        finish_checkpoint=lambda checkpoint: save_tokenizer(data_dir / "tokenizer.json", checkpoint),
    )
