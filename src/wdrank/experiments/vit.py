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

from wdrank.batches import evaluation_batch
from wdrank.data.images import Augmentation, epoch_indices, load_split
from wdrank.device import model_device
from wdrank.experiments.training import Throughput, TrainingSetup
from wdrank.models.vit import ViTShape, build_vit
from wdrank.optim import AdamWTraining, WeightDecays

SECTION = "vision_transformer"  # its config section


@dataclass(frozen=True)
class ViTTraining(AdamWTraining):
    """Settings of one run (config section `vision_transformer.train`)."""

    wd_mlp: float  # held fixed across the sweep, as in the paper


class ImageClassification:
    """Cross-entropy on augmented training batches; batch `step` is a pure function of (seed, step): epochs of
    seeded permutations, augmentation drawn per (seed, step) for the whole batch."""

    def __init__(self, data_dir: str | Path, batch_size: int, seed: int, augmentation: Augmentation,
                 eval_batch_size: int):
        manifest = json.loads((Path(data_dir) / "manifest.json").read_text())
        self.train_images, self.train_labels = load_split(data_dir, "train")
        self.test_images, self.test_labels = load_split(data_dir, "test")
        self.mean = torch.tensor(manifest["mean"], dtype=torch.float32)[:, None, None]
        self.std = torch.tensor(manifest["std"], dtype=torch.float32)[:, None, None]
        self.batch_size, self.seed, self.augmentation = batch_size, seed, augmentation
        self.eval_batch_size = eval_batch_size

    def _normalise(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images to normalised floats, on the images' device."""
        return (images.float() / 255 - self.mean.to(images.device)) / self.std.to(images.device)

    def batch(self, step: int, rows: slice) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows of the global batch of `step`, as uint8 (a quarter of float32's bytes to move to a GPU; `loss`
        normalises them there); only these images are read from disk."""
        order = np.sort(epoch_indices(len(self.train_labels), self.batch_size, self.seed, step))  # sorted: memmap
        draws = self.augmentation.draws(np.random.default_rng((self.seed, step, 1)), self.batch_size)
        images = draws[rows].apply([self.train_images[index] for index in order[rows]])  # read once, into place
        return images, torch.from_numpy(self.train_labels[order[rows]])

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        images, labels = batch
        return F.cross_entropy(model(self._normalise(images)), labels)

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Loss and accuracy over the whole test split (no augmentation)."""
        total_loss, correct, device, chunk = 0.0, 0, model_device(model), self.eval_batch_size
        for start in range(0, len(self.test_labels), chunk):
            images = self._normalise(torch.from_numpy(np.array(self.test_images[start:start + chunk]))).to(device)
            labels = torch.from_numpy(self.test_labels[start:start + chunk]).to(device)
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
        task=ImageClassification(data_dir, training.batch_size, seed, Augmentation(**settings["data"]["augmentation"]),
                                 evaluation_batch(training.batch_size, training.micro_batch_size)),
        throughput=Throughput("images", training.batch_size),
        score=lambda trained, evaluation: {**evaluation, "parameters": sum(p.numel() for p in trained.parameters())},
        model_shape=asdict(shape), model_config=shape.heads_config(),
    )
