"""Vision Transformers (paper Fig. 3 right): AdamW with weight decay λ on attention, the MLP's held fixed.

One run = one (λ, seed): train a timm ViT from scratch on a prepared image set (`wdrank.data.images`), log test
loss and accuracy, checkpoint at configured steps, and measure the spectra of W_Q W_Kᵀ and W_V W_O of every head
of every layer at each checkpoint.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wdrank.aggregate import write_run_table
from wdrank.checkpoint import list_checkpoints
from wdrank.data.images import augment, epoch_indices, load_split
from wdrank.device import Compute, model_device, place
from wdrank.heads import checkpoint_spectra
from wdrank.io import atomic_path
from wdrank.models.vit import ViTShape, build_vit
from wdrank.optim import WeightDecays
from wdrank.train import AdamWTraining, train


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


def run_vit(data_dir: str | Path, shape: ViTShape, training: ViTTraining, augmentation: Augmentation,
            wd_attn: float, seed: int, run_dir: str | Path, checkpoint_dir: str | Path,
            rank_thresholds: tuple[float, ...], progress: bool = True, compute: Compute = Compute()) -> dict:
    """Train one run (resuming if checkpoints exist); write summary.json and the per-checkpoint head spectra
    (the main process of a DDP job only)."""
    run_dir = Path(run_dir)
    model = build_vit(shape, seed)
    decays = WeightDecays(attention=wd_attn, mlp=training.wd_mlp, other=training.wd_other)
    optimizer, schedule = training.optimizer(model, decays), training.schedule()
    task = ImageClassification(data_dir, training.batch_size, seed, augmentation)
    started = time.perf_counter()
    evaluation = train(model, optimizer, task, schedule, checkpoint_dir, run_dir / "metrics.jsonl", progress,
                       compute)
    seconds = time.perf_counter() - started
    if not place(compute).is_main:
        return {}
    if steps_per_second := evaluation.pop("steps_per_second_this_session", None):
        evaluation["images_per_second_this_session"] = steps_per_second * training.batch_size
    spectra = checkpoint_spectra(list_checkpoints(checkpoint_dir), rank_thresholds, shape.heads_config())
    spectra.insert(0, "wd_attn", wd_attn)
    spectra.insert(1, "seed", seed)
    settings = {"model": asdict(shape), "training": asdict(training), "augmentation": asdict(augmentation)}
    write_run_table(spectra, run_dir / "spectra.parquet",
                    {"experiment": "vision_transformer", "wd_attn": wd_attn, "seed": seed, **settings})
    summary = {"wd_attn": wd_attn, "wd_mlp": training.wd_mlp, "seed": seed, **evaluation,
               "parameters": sum(p.numel() for p in model.parameters()),
               "train_seconds_this_session": seconds, **settings}
    with atomic_path(run_dir / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    return summary


def settings_from_config(section: dict, manifest: dict) -> tuple[ViTShape, ViTTraining, Augmentation]:
    """Typed settings of a resolved `vision_transformer` section; image size, channels and classes come from the
    prepared data's manifest."""
    model = section["model"]
    shape = ViTShape(image_size=manifest["image_size"], channels=manifest["channels"],
                     num_classes=manifest["num_classes"], patch_size=model["patch_size"], depth=model["depth"],
                     embed_dim=model["embed_dim"], n_head=model["n_head"], mlp_ratio=model["mlp_ratio"])
    return shape, ViTTraining(**section["train"]), Augmentation(**section["data"]["augmentation"])
