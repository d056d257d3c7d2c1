"""ViT experiment: image readers and split, batches and augmentation, the timm model's head split and roles,
and a short training run that must learn."""

import gzip
import json

import numpy as np
import pytest
import torch

from test_audit import factor_attention, zero_biases_and_sharpen
from wdrank.data.images import (
    Augmentation, ImageSplit, epoch_indices, load_split, prepare_images, read_idx, read_idx_folder, read_mnist_5k,
    stratified_split,
)
from wdrank.experiments import vit
from wdrank.experiments.training import run_decays, run_training
from wdrank.heads import attention_factors
from wdrank.models.vit import ViTShape, build_vit
from wdrank.optim import parameter_role
from wdrank.run_spectra import run_spectra


NATIVE = {"image_size": None, "channels": None, "max_images": None}  # the source's own size and channels, all images


def write_idx(path, array, compress):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    (gzip.open if compress else open)(path, "wb").write(header + array.astype(np.uint8).tobytes())


def write_mnist_csv(path, images, labels):
    rows = np.concatenate([images.reshape(len(images), -1), labels[:, None]], axis=1)
    with gzip.open(path, "wt") as handle:
        np.savetxt(handle, rows, fmt="%d", delimiter=",")


def test_idx_round_trip_gzipped_or_not_and_truncation_named(tmp_path):
    array = np.random.default_rng(0).integers(0, 256, (7, 5, 3))
    for compress, name in ((True, "a.gz"), (False, "a")):
        write_idx(tmp_path / name, array, compress)
        np.testing.assert_array_equal(read_idx(tmp_path / name), array)
    (tmp_path / "cut").write_bytes((tmp_path / "a").read_bytes()[:-10])
    with pytest.raises(ValueError, match=r"cut: header promises shape \(7, 5, 3\)"):
        read_idx(tmp_path / "cut")
    (tmp_path / "png").write_bytes(b"\x89PNG....")
    with pytest.raises(ValueError, match="png: not an IDX file"):
        read_idx(tmp_path / "png")


def test_fashion_mnist_layout_read_and_missing_file_named(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 6), ("t10k", 4)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)), True)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n), False)
    splits = read_idx_folder(tmp_path)
    assert splits["train"].images.shape == (6, 1, 28, 28) and splits["test"].labels.shape == (4,)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte.gz exists"):
        read_idx_folder(tmp_path)


def test_stratified_split_is_fixed_disjoint_and_per_class():
    labels = np.repeat(np.arange(4), 25)
    images = np.arange(100, dtype=np.uint8).reshape(100, 1, 1, 1)
    splits = stratified_split(ImageSplit(images, labels), 0.2, seed=3)
    assert np.bincount(splits["test"].labels).tolist() == [5, 5, 5, 5]
    assert not set(splits["train"].images.ravel()) & set(splits["test"].images.ravel())
    again = stratified_split(ImageSplit(images, labels), 0.2, seed=3)
    np.testing.assert_array_equal(again["test"].images, splits["test"].images)
    assert not np.array_equal(stratified_split(ImageSplit(images, labels), 0.2, seed=4)["test"].images,
                              splits["test"].images)


def test_batches_cover_each_epoch_once_and_depend_only_on_seed_and_step():
    n, batch = 10, 4
    stream = np.concatenate([epoch_indices(n, batch, seed=1, step=s) for s in range(5)])  # 2 epochs
    assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:20]) == list(range(10))
    np.testing.assert_array_equal(epoch_indices(n, batch, 1, 3), stream[12:16])


def augment(images, rng, translate, flip):
    return Augmentation(translate, flip).draws(rng, len(images)).apply(images)


def test_augmentation_is_seeded_translates_and_flips():
    images = torch.arange(2 * 3 * 5 * 5, dtype=torch.uint8).reshape(2, 3, 5, 5)
    assert torch.equal(augment(images, np.random.default_rng(0), 0, False), images)
    first = augment(images, np.random.default_rng(7), 2, True)
    assert torch.equal(first, augment(images, np.random.default_rng(7), 2, True)) and first.shape == images.shape
    flipped = augment(images, np.random.default_rng(0), 0, True)
    for original, out in zip(images, flipped, strict=True):
        assert torch.equal(out, original) or torch.equal(out, original.flip(-1))
    shifted = augment(torch.ones(64, 1, 4, 4, dtype=torch.uint8), np.random.default_rng(0), 1, False)
    assert (shifted.sum(dim=(1, 2, 3)) < 16).any()  # some images moved, letting zero padding in


def padded_cropped_flipped(draws, images: torch.Tensor) -> torch.Tensor:
    """The augmentation's definition, as tensor operations: zero padding, a crop at each drawn corner, then the
    drawn horizontal flips."""
    if draws.offsets is not None:
        height, width = images.shape[-2:]
        padded = torch.nn.functional.pad(images, (draws.padding,) * 4)
        images = torch.stack([p[:, dy:dy + height, dx:dx + width]
                              for p, (dy, dx) in zip(padded, draws.offsets, strict=True)])
    if draws.flips is not None:
        images = torch.where(torch.from_numpy(draws.flips)[:, None, None, None], images.flip(-1), images)
    return images


@pytest.mark.parametrize("translate", [0, 1, 3, 7])  # 7: beyond the 5 × 6 images, some shifted out entirely
@pytest.mark.parametrize("flip", [False, True])
def test_augmentation_gives_the_bytes_of_padding_cropping_and_flipping(translate, flip):
    """The one-copy implementation equals the definition byte for byte, from a tensor or from a list of rows (as
    memory-mapped images are passed)."""
    rng = np.random.default_rng(translate)
    images = torch.from_numpy(rng.integers(0, 256, (40, 2, 5, 6), dtype=np.uint8))
    draws = Augmentation(translate, flip).draws(rng, len(images))
    expected = padded_cropped_flipped(draws, images)
    assert torch.equal(draws.apply(images), expected)
    assert torch.equal(draws.apply([image.numpy() for image in images]), expected)


def test_a_micro_batch_is_augmented_as_within_its_whole_batch():
    images = torch.arange(8 * 1 * 5 * 5, dtype=torch.uint8).reshape(8, 1, 5, 5)
    draws = Augmentation(2, True).draws(np.random.default_rng(3), 8)
    whole = draws.apply(images)
    parts = torch.cat([draws[rows].apply(images[rows]) for rows in (slice(0, 2), slice(2, 4), slice(4, 8))])
    assert torch.equal(parts, whole) and not torch.equal(whole, images)


def test_prepare_mnist_5k_writes_split_arrays_and_manifest(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 10)
    write_mnist_csv(tmp_path / "mnist.csv.gz", rng.integers(0, 256, (100, 784)), labels)
    assert read_mnist_5k(tmp_path / "mnist.csv.gz").images.shape == (100, 1, 28, 28)
    data = {"source": "mnist_5k", "test_fraction": 0.2, "split_seed": 0, **NATIVE}
    manifest = prepare_images(data, tmp_path / "out", tmp_path / "mnist.csv.gz")
    assert manifest["sizes"] == {"train": 80, "test": 20} and manifest["num_classes"] == 10
    assert manifest["image_size"] == 28 and manifest["channels"] == 1 and 0.4 < manifest["mean"][0] < 0.6
    images, split_labels = load_split(tmp_path / "out", "test")
    assert images.dtype == np.uint8 and images.shape == (20, 1, 28, 28) and np.bincount(split_labels).max() == 2
    assert json.loads((tmp_path / "out/manifest.json").read_text()) == manifest
    expected = stratified_split(read_mnist_5k(tmp_path / "mnist.csv.gz"), 0.2, 0)["test"].images
    np.testing.assert_array_equal(images, expected)


def test_any_source_is_resized_converted_and_capped(tmp_path):
    """Digits at a ViT-S/16 size: 28 px grey -> 56 px RGB (bicubic, grey replicated), 12 per split at most."""
    rng = np.random.default_rng(1)
    write_mnist_csv(tmp_path / "mnist.csv.gz", rng.integers(0, 256, (100, 784)), np.repeat(np.arange(10), 10))
    data = {"source": "mnist_5k", "test_fraction": 0.2, "split_seed": 0, "image_size": 56, "channels": 3,
            "max_images": 12}
    manifest = prepare_images(data, tmp_path / "out", tmp_path / "mnist.csv.gz")
    assert manifest["sizes"] == {"train": 12, "test": 12} and (manifest["image_size"], manifest["channels"]) == (56, 3)
    images, _ = load_split(tmp_path / "out", "train")
    assert images.shape == (12, 3, 56, 56)
    assert np.array_equal(images[:, 0], images[:, 1]) and np.array_equal(images[:, 1], images[:, 2])
    from PIL import Image

    first = stratified_split(read_mnist_5k(tmp_path / "mnist.csv.gz"), 0.2, 0)["train"].images[0, 0]
    resized = np.asarray(Image.fromarray(first).resize((56, 56), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(images[0, 0], resized)


def test_vit_head_split_reproduces_timm_attention_and_roles():
    shape = ViTShape(image_size=16, channels=1, num_classes=3, patch_size=4, depth=2, embed_dim=32, n_head=4,
                     mlp_ratio=2.0)
    model = zero_biases_and_sharpen(build_vit(shape, seed=0).double().eval())
    attention = model.blocks[1].attn
    attention.fused_attn = False  # timm's explicit softmax(q kᵀ) v path
    factors = [f for f in attention_factors(model.state_dict(), shape.heads_config()) if f.layer == 1]
    x = torch.randn(2, 17, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(factor_attention(x, factors, 8 ** -0.5), attention(x))
    roles = {name: parameter_role(name, p) for name, p in build_vit(shape, 0).named_parameters()}
    assert {n for n, r in roles.items() if r == "attention"} == {
        f"blocks.{i}.attn.{m}.weight" for i in range(2) for m in ("qkv", "proj")}
    assert {n for n, r in roles.items() if r == "mlp"} == {
        f"blocks.{i}.mlp.{m}.weight" for i in range(2) for m in ("fc1", "fc2")}
    assert roles["head.weight"] == "other" and roles["patch_embed.proj.weight"] == "other"
    with pytest.raises(ValueError, match="image size 16 is not a multiple of patch_size 5"):
        ViTShape(16, 1, 3, 5, 2, 32, 4, 2.0)


def test_short_run_learns_and_decay_lowers_rank(tmp_path):
    """Two classes told apart by which half of the image is bright: a few steps must beat chance by far."""
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 60)
    images = rng.integers(0, 60, (120, 1, 8, 8))
    images[labels == 0, :, :4] += 150
    images[labels == 1, :, 4:] += 150
    write_mnist_csv(tmp_path / "d.csv.gz", np.pad(images, ((0, 0), (0, 0), (0, 20), (0, 20))).reshape(120, -1),
                    labels)
    prepare_images({"source": "mnist_5k", "test_fraction": 0.25, "split_seed": 0, **NATIVE}, tmp_path / "data",
                   tmp_path / "d.csv.gz")
    settings = {
        "model": {"patch_size": 7, "depth": 2, "embed_dim": 16, "n_head": 2, "mlp_ratio": 2.0},
        "train": {"steps": 40, "batch_size": 16, "micro_batch_size": 8, "lr": 0.01, "warmup_steps": 4,
                  "min_lr_ratio": 0.1, "beta1": 0.9,
                  "beta2": 0.95, "eps": 1e-8, "grad_clip": 1.0, "wd_mlp": 0.1, "wd_other": 0.0, "eval_every": 20,
                  "checkpoint_every": 20},
        "data": {"augmentation": {"translate": 1, "horizontal_flip": False}},
    }
    ranks = {}
    for wd in (0.0, 30.0):
        run = tmp_path / f"r{wd}"
        summary = run_training(vit, settings, tmp_path / "data", run_decays(settings["train"], wd, None),
                               0, run / "summary.json", run / "metrics.jsonl", tmp_path / f"c{wd}", progress=False)
        spectra = run_spectra(run / "summary.json", (0.01,))
        assert sorted(spectra["step"].unique()) == [0, 20, 40] and len(spectra) == 3 * 2 * 2 * 2
        ranks[wd] = spectra[spectra["step"] == 40]["rank_tol_0.01"].mean()
        if wd == 0.0:
            assert summary["row"]["test_accuracy"] >= 0.9 and summary["row"]["wd_mlp"] == 0.1
            groups = summary["run"]["parameter_groups"]
            assert groups["attention"]["names"] == [f"blocks.{i}.attn.{m}.weight" for i in range(2)
                                                    for m in ("qkv", "proj")]
            assert groups["attention"]["weight_decay"] == 0.0 and groups["mlp"]["weight_decay"] == 0.1
    assert ranks[30.0] < ranks[0.0]


def test_hugging_face_image_source_is_resized_and_stored(tmp_path):
    """source: datasets, read offline from a local image folder (`datasets` infers labels from folder names):
    RGB images of any size become uint8 (3, size, size) arrays, shorter side resized then centre-cropped."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", 3), ("test", 2)):
        for label in ("cat", "dog"):
            folder = tmp_path / "images" / split / label
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (20 + 4 * i, 30, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    data = {"source": "datasets", "dataset_path": str(tmp_path / "images"), "dataset_name": None, "data_files": [],
            "train_split": "train", "test_split": "test", "image_field": "image", "label_field": "label",
            "image_size": 16, "channels": 3, "max_images": None}
    manifest = prepare_images(data, tmp_path / "out", dataset_dir=tmp_path / "images")
    assert manifest["sizes"] == {"train": 6, "test": 4} and manifest["num_classes"] == 2
    images, labels = load_split(tmp_path / "out", "train")
    assert images.shape == (6, 3, 16, 16) and images.dtype == np.uint8 and sorted(labels) == [0, 0, 0, 1, 1, 1]
    assert manifest["channels"] == 3 and len(manifest["mean"]) == 3
