"""LoRA fine-tuning across the adapter's weight decay λ_LoRA: the paper's theorem where practitioners meet it.

One run = one (r, lr, λ_LoRA, seed): peft's LoRA on the attention projections of a pretrained causal language model
(the default run's own λ_SA = 0 model, or any transformers model folder or GGUF file), trained with AdamW on text the
base has not seen, with λ_LoRA on the factors A and B only (the base is frozen). Checkpoints are adapter folders
(peft's `save_pretrained`), so the run's spectra are the adapter audit (`wdrank.lora`) along training: rank of B A
out of r, nuclear norm against ½(‖A‖² + ‖B‖²), balance ‖A Aᵀ − Bᵀ B‖.

Text: the base's prepared data folder (`wdrank.data.text`); the adapter trains on its validation split and is
scored on its test split (held-out works of the default corpus: unseen by the base, and by the adapter until scored).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from wdrank.batches import evaluation_batch
from wdrank.data.text import load_tokens
from wdrank.experiments.lm import LMTask, LMTraining, mean_token_nll
from wdrank.experiments.training import Throughput, TrainingSetup
from wdrank.optim import WeightDecays

SECTION = "lora"  # its config section
TRAIN_SPLIT, SCORE_SPLIT = "validation", "test"  # of the base's prepared data


@dataclass(frozen=True)
class Adapter:
    """The adapter of every run (config section `lora.adapter`; r is a sweep axis)."""

    r: int
    alpha: float
    target_modules: list[str]
    use_rslora: bool

    def config(self, fan_in_fan_out: bool):
        from peft import LoraConfig

        return LoraConfig(r=self.r, lora_alpha=self.alpha, target_modules=list(self.target_modules),
                          use_rslora=self.use_rslora, lora_dropout=0.0, fan_in_fan_out=fan_in_fan_out,
                          task_type="CAUSAL_LM")


def base_model_path(base: str | Path) -> Path:
    """The weights of the base: a training run's summary.json gives its last checkpoint; else a transformers model
    folder or a .gguf file, as given."""
    path = Path(base)
    if path.name == "summary.json":
        from wdrank.summary import read_summary

        checkpoints = read_summary(path)["run"]["checkpoints"]
        if not checkpoints:
            raise ValueError(f"{path}: the base run lists no checkpoints")
        return Path(checkpoints[-1]["path"])
    if not path.exists():
        raise FileNotFoundError(f"lora.base: no model at {path} (a run's summary.json, a model folder or a .gguf)")
    return path


def load_base(path: Path) -> nn.Module:
    """A causal LM in float32 from a model folder, or from a GGUF file (transformers dequantises it)."""
    from transformers import AutoModelForCausalLM

    if path.suffix == ".gguf":
        return AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, torch_dtype=torch.float32)
    return AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32)


def model_context(model: nn.Module, requested: int | None) -> int:
    """Tokens per window: `lora.context`, else the base's own context length."""
    longest = getattr(model.config, "n_positions", None) or model.config.max_position_embeddings
    if requested is not None and requested > longest:
        raise ValueError(f"lora.context {requested} is longer than the base model's {longest} positions")
    return requested or longest


def setup(settings: dict, data_dir: str | Path, decays: WeightDecays, seed: int) -> TrainingSetup:
    """One run: the base (settings `base_model`, resolved by the workflow) with a fresh adapter seeded by `seed`,
    random windows of the training split, test perplexity with and without the adapter at the end (on the first
    `score_tokens` of the test split)."""
    from peft import get_peft_model

    data_dir = Path(data_dir)
    base_path = base_model_path(settings["base_model"])
    base = load_base(base_path)
    adapter = Adapter(**settings["adapter"])
    torch.manual_seed(seed)  # A's initialisation (B starts at zero)
    model = get_peft_model(base, adapter.config(fan_in_fan_out=base.config.model_type == "gpt2"))
    training = LMTraining(**settings["train"], wd_other=0.0)
    context = model_context(base, settings["context"])
    tokens = {split: load_tokens(data_dir, split) for split in (TRAIN_SPLIT, SCORE_SPLIT)}
    scored = tokens[SCORE_SPLIT][:settings["score_tokens"]]  # None: all
    eval_batch = evaluation_batch(training.batch_size, training.micro_batch_size)

    def score(trained: nn.Module, evaluation: dict[str, float]) -> dict:
        test_nll, test_tokens = mean_token_nll(trained, scored, context, eval_batch)
        with trained.disable_adapter():
            base_nll, _ = mean_token_nll(trained, scored, context, eval_batch)
        return {"trainable_parameters": sum(p.numel() for p in trained.parameters() if p.requires_grad),
                **evaluation, "test_loss": test_nll, "test_perplexity": float(np.exp(test_nll)),
                "base_test_perplexity": float(np.exp(base_nll)), "test_tokens": test_tokens}

    return TrainingSetup(
        model=model, optimizer=training.optimizer(model, decays), schedule=training.schedule(),
        task=LMTask(tokens[TRAIN_SPLIT], tokens[SCORE_SPLIT], context, training.batch_size, seed,
                    training.eval_batches, eval_batch),
        throughput=Throughput("tokens", training.batch_size * context),
        score=score, model_shape={"base": str(base_path), "base_type": base.config.model_type, "context": context},
        inputs=(base_path,),
    )
