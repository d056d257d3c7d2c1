"""Paper-scale training on one GPU: tokens/s (images/s), model-FLOPs utilisation and peak memory per micro-batch.

Each setting runs the pipeline's own training loop (`wdrank.train.train`: micro-batch accumulation, autocast,
torch.compile, clipping, AdamW, the final evaluation and checkpoint) at the paper's shapes — GPT-2-small at context
756 with a global batch of 128 sequences, ViT-S/16 at 224 px with 1,024 images — on random data (tokens drawn
uniformly, images of uniform noise normalised as the pipeline does), one process per setting so that allocator
caches and compiled graphs never mix. Throughput is the loop's own session figure (steps after the first three);
MFU is model FLOPs over the GPU's dense peak at that precision (`wdrank.device.PEAK_TFLOPS`; TF32 for fp32); memory
is the CUDA allocator's peak (allocated, and reserved from the driver).

    python benchmarks/gpu_train.py                       # every setting (~5 min on an H100/H200)
    python benchmarks/gpu_train.py --models lm --steps 13
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

from wdrank.device import Compute, peak_flops, place
from wdrank.experiments.lm import LMTask
from wdrank.models.lm import LMShape, build_lm, flops_per_token
from wdrank.models.vit import ViTShape, build_vit
from wdrank.optim import WeightDecays, build_optimizer
from wdrank.schedule import Schedule
from wdrank.train import train

GIB = 1024**3
# (precision, compile, micro-batch) per model; the global batch is the paper's.
SETTINGS = {
    "lm": [("fp32", False, 16), ("fp32", False, 32), ("bf16", False, 16), ("bf16", True, 16), ("bf16", True, 32)],
    "vit": [("fp32", False, 256), ("bf16", True, 256), ("bf16", True, 512)],
}
GLOBAL_BATCH = {"lm": 128, "vit": 1024}
LM_SHAPE = LMShape("gpt2", n_layer=12, n_embd=768, n_head=12, context=756, vocab_size=50257)
VIT_SHAPE = ViTShape(image_size=224, channels=3, num_classes=1000, patch_size=16, depth=12, embed_dim=384, n_head=6,
                     mlp_ratio=4.0)


class RandomImages:
    """ViT batches of uniform-noise uint8 images (a fixed pool), moved as uint8 and normalised on the device, as the
    pipeline's `ImageClassification` does (or, for comparison, normalised on the CPU and moved as float32, as it did
    before); random labels of 1,000 classes."""

    def __init__(self, batch_size: int, image_size: int, seed: int, normalise_on_cpu: bool = False):
        generator = torch.Generator().manual_seed(seed)
        shape = (batch_size, 3, image_size, image_size)
        self.images = torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)
        self.labels = torch.randint(0, 1000, (batch_size,), generator=generator)
        self.normalise_on_cpu = normalise_on_cpu

    @staticmethod
    def _normalise(images: torch.Tensor) -> torch.Tensor:
        return (images.float() / 255 - 0.5) / 0.25

    def batch(self, step: int, rows: slice):
        images = self.images[rows]
        return self._normalise(images) if self.normalise_on_cpu else images, self.labels[rows]

    def loss(self, model, batch):
        images, labels = batch
        return F.cross_entropy(model(images if self.normalise_on_cpu else self._normalise(images)), labels)

    def evaluate(self, model) -> dict[str, float]:
        return {}


def worker(model_name: str, precision: str, compiled: bool, micro: int, steps: int, device: str,
           normalise_on_cpu: bool = False) -> dict:
    """One setting in this process: train `steps` steps through the pipeline's loop and report its figures."""
    batch = GLOBAL_BATCH[model_name]
    if model_name == "lm":
        shape = LM_SHAPE
        model = build_lm(shape, seed=0)
        tokens = np.random.default_rng(0).integers(0, shape.vocab_size, 4_000_000).astype(np.uint16)
        task = LMTask(tokens, tokens, shape.context, batch, seed=0, eval_batches=1, eval_batch_size=micro)
        per_example, flops_per_example = shape.context, flops_per_token(model, shape) * shape.context
    else:
        shape = VIT_SHAPE
        model = build_vit(shape, seed=0)
        task = RandomImages(batch, shape.image_size, seed=0, normalise_on_cpu=normalise_on_cpu)
        tokens_per_image = (shape.image_size // shape.patch_size) ** 2 + 1
        embedding = sum(p.numel() for n, p in model.named_parameters() if "embed" in n or "cls_token" in n)
        non_embedding = sum(p.numel() for p in model.parameters()) - embedding
        per_example = 1
        flops_per_example = tokens_per_image * (6 * non_embedding + 6 * shape.depth * tokens_per_image
                                                * shape.embed_dim)
    compute = Compute(device=device, precision=precision, compile=compiled)
    optimizer = build_optimizer(model, WeightDecays(1.0, 0.1), lr=6e-4, betas=(0.9, 0.95), eps=1e-8)
    schedule = Schedule(steps=steps, batch_size=batch, micro_batch_size=micro, log_every=5)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        result = train(model, optimizer, task, schedule, f"{scratch}/checkpoints", f"{scratch}/metrics.jsonl",
                       progress=False, compute=compute)
    wall = time.perf_counter() - started
    examples_per_second = result.steps_per_second * batch
    peak = peak_flops(place(compute), compute)
    return {
        "model": model_name, "precision": precision, "compile": compiled, "micro_batch": micro, "global_batch": batch,
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "torch": torch.__version__,
        "steps": steps,
        "step_seconds": 1 / result.steps_per_second, "per_second": examples_per_second * per_example,
        "mfu": examples_per_second * flops_per_example / peak if peak else None,
        "peak_allocated_gib": torch.cuda.max_memory_allocated() / GIB if device == "cuda" else None,
        "peak_reserved_gib": torch.cuda.max_memory_reserved() / GIB if device == "cuda" else None,
        "wall_seconds": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--steps", type=int, default=13, help="steps per setting; the first 3 are not timed")
    parser.add_argument("--json", help="also append each setting's figures to this JSON-lines file")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="cpu: a smoke run only")
    parser.add_argument("--normalise-images-on-cpu", action="store_true",
                        help="ViT: move float32 images normalised on the CPU (the input path before uint8 moves)")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        name, precision, compiled, micro = args.worker
        print(json.dumps(worker(name, precision, compiled == "1", int(micro), args.steps, args.device,
                                args.normalise_images_on_cpu)))
        return

    device = None
    print("| model | setting | micro-batch | step | throughput | MFU | peak allocated / reserved |")
    print("|---|---|---|---|---|---|---|")
    for model_name in args.models:
        unit = "tokens/s" if model_name == "lm" else "images/s"
        for precision, compiled, micro in SETTINGS[model_name]:
            command = [sys.executable, __file__, "--steps", str(args.steps), "--device", args.device,
                       *(["--normalise-images-on-cpu"] if args.normalise_images_on_cpu else []), "--worker",
                       model_name, precision, str(int(compiled)), str(micro)]
            done = subprocess.run(command, capture_output=True, text=True)
            setting = precision + (" + compile" if compiled else "")
            if done.returncode:
                print(f"| {model_name} | {setting} | {micro} | failed: {done.stderr.strip().splitlines()[-1]} |")
                continue
            figures = json.loads(done.stdout.strip().splitlines()[-1])
            device = f"{figures['device']}, torch {figures['torch']}"
            mfu = f"{100 * figures['mfu']:.1f} %" if figures["mfu"] is not None else "n/a"
            memory = (f"{figures['peak_allocated_gib']:.1f} / {figures['peak_reserved_gib']:.1f} GiB"
                      if figures["peak_allocated_gib"] is not None else "n/a")
            print(f"| {model_name} | {setting} | {micro} | {1000 * figures['step_seconds']:.0f} ms | "
                  f"{figures['per_second']:,.0f} {unit} | {mfu} | {memory} |", flush=True)
            if args.json:
                with open(args.json, "a", encoding="utf-8") as log:
                    log.write(json.dumps(figures) + "\n")
    print(f"device: {device}")


if __name__ == "__main__":
    main()
