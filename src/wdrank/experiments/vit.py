"""Vision Transformers (paper Fig. 3 right): AdamW with weight decay λ on attention, the MLP's held fixed.

One run = one (λ, seed): train a timm ViT from scratch on a prepared image set (`wdrank.data.images`), log test
loss and accuracy, and checkpoint at configured steps (the spectra of every head of every layer are measured there).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wdrank.data.images import augment, epoch_indices, load_split
from wdrank.device import model_device
from wdrank.experiments.training import Throughput, TrainingSetup
from wdrank.models.vit import ViTShape, build_vit
from wdrank.optim import WeightDecays
from wdrank.train import AdamWTraining


@dataclass(frozen=True)
class ViTTraining(AdamWTraining):
    """Settings of one run (config section `vision_transformer.train`)."""

    wd_mlp: float  # held fixed across the sweep, as in the paper


@dataclass(frozen=True)
class Augmentation:
    """Config section `vision_transformer.data.augmentation` (training batches only)."""

    translate: int  # pixels of random translation
    horizontal_flip: bool


class ImageClassification:
    """Cross-entropy on augmented training batches; batch `step` is a pure function of (seed, step)."""

    def __init__(self, data_dir: str | Path, batch_size: int, seed: int, augmentation: Augmentation):
        manifest = json.loads((Path(data_dir) / "manifest.json").read_text())
        self.train_images, self.train_labels = load_split(data_dir, "train")
        self.test_images, self.test_labels = load_split(data_dir, "test")
        self.mean = torch.tensor(manifest["mean"], dtype=torch.float32)[:, None, None]
        self.std = torch.tensor(manifest["std"], dtype=torch.float32)[:, None, None]
        self.batch_size, self.seed, self.augmentation = batch_size, seed, augmentation

    def _normalise(self, images: torch.Tensor) -> torch.Tensor:
        return (images.float() / 255 - self.mean) / self.std

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        rows = np.sort(epoch_indices(len(self.train_labels), self.batch_size, self.seed, step))  # sorted: memmap reads
        images = torch.from_numpy(np.array(self.train_images[rows]))
        images = augment(images, np.random.default_rng((self.seed, step, 1)), self.augmentation.translate,
                         self.augmentation.horizontal_flip)
        return self._normalise(images), torch.from_numpy(self.train_labels[rows])

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        images, labels = batch
        return F.cross_entropy(model(images), labels)

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Loss and accuracy over the whole test split (no augmentation)."""
        total_loss, correct, device = 0.0, 0, model_device(model)
        for start in range(0, len(self.test_labels), 4 * self.batch_size):
            images = self._normalise(torch.from_numpy(np.array(self.test_images[start:start + 4 * self.batch_size])))
            images = images.to(device)
            labels = torch.from_numpy(self.test_labels[start:start + 4 * self.batch_size]).to(device)
            logits = model(images)
            total_loss += F.cross_entropy(logits.double(), labels, reduction="sum").item()
            correct += (logits.argmax(-1) == labels).sum().item()
        return {"test_loss": total_loss / len(self.test_labels), "test_accuracy": correct / len(self.test_labels)}


def setup(settings: dict, data_dir: str | Path, decays: WeightDecays, seed: int) -> TrainingSetup:
    """One run: the ViT of `settings["model"]` sized for the prepared images (size, channels and classes from
    their manifest), epochs of seeded permutations, test loss and accuracy at the end."""
    manifest = json.loads((Path(data_dir) / "manifest.json").read_text())
    shape = ViTShape(image_size=manifest["image_size"], channels=manifest["channels"],
                     num_classes=manifest["num_classes"], **settings["model"])
    training = ViTTraining(**settings["train"])
    model = build_vit(shape, seed)
    return TrainingSetup(
        model=model, optimizer=training.optimizer(model, decays), schedule=training.schedule(),
        task=ImageClassification(data_dir, training.batch_size, seed, Augmentation(**settings["data"]["augmentation"])),
        throughput=Throughput("images", training.batch_size),
        score=lambda trained, evaluation: {**evaluation, "parameters": sum(p.numel() for p in trained.parameters())},
        model_shape=asdict(shape), model_config=shape.heads_config(),
    )
