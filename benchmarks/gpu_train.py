"""Paper-scale training on one GPU, side by side: the pipeline's loop against a minimal reference loop of the same
model on the same card, in tokens/s (images/s), model-FLOPs utilisation and peak memory.

For each micro-batch, two processes of their own (allocator caches and compiled graphs never mix):
- pipeline: `wdrank.train.train` exactly as a run calls it (micro-batch accumulation, bf16 autocast, torch.compile,
  clipping, AdamW with the pipeline's kernel choice, log steps, the final evaluation and checkpoint), on random data
  through the tasks' own input path (`LMTask`: windows of a token array; for the ViT, uint8 images normalised on
  the device, as `ImageClassification` does);
- reference: the shortest loop that trains the same shape at the same global batch and micro-batch — for GPT-2-small
  a nanoGPT-style module of its own (one module, `F.scaled_dot_product_attention(is_causal=True)`, tied output
  layer, `F.cross_entropy` on the logits), for the ViT timm's `vit_small_patch16_224`; compiled, bf16 autocast,
  fused AdamW, clipping, batches from pinned host memory as nanoGPT reads them.
Throughput counts the steps after the first three. MFU is model FLOPs over the card's dense bf16 peak
(`wdrank.device.PEAK_TFLOPS`): 6N + 6LTd per token (N: non-embedding parameters plus the output layer; the causal
half of the attention scores), and beside it nanoGPT's 6N + 12LTd. Each row also names the attention kernel the
profiler saw in one compiled training step (flash, memory-efficient, cuDNN or math) and the number of graphs
`torch._dynamo.explain` finds in the training module; the last line gives torch, transformers, timm and CUDA
versions and the card.

    python benchmarks/gpu_train.py                                  # LM at 16, 32, 64 and the ViT (~10 min, H100)
    python benchmarks/gpu_train.py --models lm --micro-batches 32 128 --json gpu.jsonl
    python benchmarks/gpu_train.py --smoke --device cpu             # tiny shapes, fp32, no compile: a check only
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wdrank.device import Compute, fused_kernels, peak_flops, place
from wdrank.experiments.lm import LMTask
from wdrank.models.lm import LMShape, build_lm, flops_per_token
from wdrank.models.vit import ViTShape, build_vit
from wdrank.optim import WeightDecays, build_optimizer
from wdrank.schedule import Schedule
from wdrank.train import TIMED_AFTER, train

GIB = 1024**3
LOOPS = ("pipeline", "reference")
# Substrings of profiler event names (aten operators, CUDA kernels) for each SDPA backend.
ATTENTION_KERNELS = {
    "flash": ("scaled_dot_product_flash_attention", "flash_fwd", "flash_bwd"),
    "memory-efficient": ("scaled_dot_product_efficient_attention", "fmha_cutlass", "efficient_attention"),
    "cudnn": ("scaled_dot_product_cudnn_attention", "cudnn_attention"),
    "math": ("scaled_dot_product_attention_math",),
}


@dataclass(frozen=True)
class Scale:
    """The shapes and batches of one benchmark scale."""

    lm: LMShape
    vit: ViTShape
    global_batch: dict[str, int]
    micro_batches: dict[str, tuple[int, ...]]  # the defaults of --micro-batches
    precision: str
    compile: bool


PAPER = Scale(
    lm=LMShape("gpt2", n_layer=12, n_embd=768, n_head=12, context=756, vocab_size=50257),
    vit=ViTShape(image_size=224, channels=3, num_classes=1000, patch_size=16, depth=12, embed_dim=384, n_head=6,
                 mlp_ratio=4.0),
    global_batch={"lm": 128, "vit": 1024}, micro_batches={"lm": (16, 32, 64), "vit": (256,)}, precision="bf16",
    compile=True,
)
SMOKE = Scale(
    lm=LMShape("gpt2", n_layer=2, n_embd=64, n_head=4, context=64, vocab_size=4096),
    vit=ViTShape(image_size=32, channels=3, num_classes=1000, patch_size=8, depth=2, embed_dim=64, n_head=4,
                 mlp_ratio=4.0),
    global_batch={"lm": 8, "vit": 16}, micro_batches={"lm": (4,), "vit": (8,)}, precision="fp32", compile=False,
)


class ReferenceGPT(nn.Module):
    """GPT-2 in one module, nanoGPT-style: pre-norm blocks, fused QKV, causal SDPA, tanh GELU, tied output layer."""

    def __init__(self, shape: LMShape):
        super().__init__()
        d, self.n_head = shape.n_embd, shape.n_head
        self.wte, self.wpe = nn.Embedding(shape.vocab_size, d), nn.Embedding(shape.context, d)
        self.blocks = nn.ModuleList(nn.ModuleDict({
            "ln_1": nn.LayerNorm(d), "c_attn": nn.Linear(d, 3 * d), "c_proj": nn.Linear(d, d),
            "ln_2": nn.LayerNorm(d), "c_fc": nn.Linear(d, 4 * d), "mlp_proj": nn.Linear(4 * d, d),
        }) for _ in range(shape.n_layer))
        self.ln_f = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, shape.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight
        for parameter in self.parameters():
            if parameter.ndim == 2:
                nn.init.normal_(parameter, std=0.02)

    def forward(self, tokens: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        batch, length = tokens.shape
        x = self.wte(tokens) + self.wpe(torch.arange(length, device=tokens.device))
        for block in self.blocks:
            q, k, v = block["c_attn"](block["ln_1"](x)).split(x.shape[-1], dim=2)
            q, k, v = (t.view(batch, length, self.n_head, -1).transpose(1, 2) for t in (q, k, v))
            attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + block["c_proj"](attended.transpose(1, 2).reshape(batch, length, -1))
            x = x + block["mlp_proj"](F.gelu(block["c_fc"](block["ln_2"](x)), approximate="tanh"))
        logits = self.lm_head(self.ln_f(x))
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.reshape(-1))


class RandomImages:
    """The pipeline's ViT task on uniform-noise uint8 images (a fixed pool) and 1,000 random classes: uint8 moved to
    the device and normalised there, as `ImageClassification` does."""

    def __init__(self, batch_size: int, image_size: int, seed: int):
        generator = torch.Generator().manual_seed(seed)
        self.images = torch.randint(0, 256, (batch_size, 3, image_size, image_size), dtype=torch.uint8,
                                    generator=generator)
        self.labels = torch.randint(0, 1000, (batch_size,), generator=generator)

    @staticmethod
    def normalise(images: torch.Tensor) -> torch.Tensor:
        return (images.float() / 255 - 0.5) / 0.25

    def batch(self, step: int, rows: slice):
        return self.images[rows], self.labels[rows]

    def loss(self, model, batch):
        images, labels = batch
        return F.cross_entropy(model(self.normalise(images)), labels)

    def evaluate(self, model) -> dict[str, float]:
        return {}


def lm_flops(model: nn.Module, shape: LMShape) -> tuple[float, float]:
    """Training FLOPs per token: the pipeline's 6N + 6LTd, and nanoGPT's 6N + 12LTd."""
    ours = flops_per_token(model, shape)
    return ours, ours + 6 * shape.n_layer * shape.context * shape.n_embd


def vit_flops(model: nn.Module, shape: ViTShape) -> float:
    """Training FLOPs per image: 6N per token for the non-embedding parameters plus 6LTd for attention."""
    tokens = (shape.image_size // shape.patch_size) ** 2 + 1
    embedding = sum(p.numel() for n, p in model.named_parameters() if "embed" in n or "cls_token" in n)
    non_embedding = sum(p.numel() for p in model.parameters()) - embedding
    return tokens * (6 * non_embedding + 6 * shape.depth * tokens * shape.embed_dim)


def attention_kernels(step) -> str:
    """The SDPA backends (ATTENTION_KERNELS) among the profiler's events of one call of `step`."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities) as profiler:
        step()
    names = {event.name for event in profiler.events()}
    found = [kind for kind, marks in ATTENTION_KERNELS.items() if any(m in n for n in names for m in marks)]
    return "+".join(found) or "none (decomposed)"


def graph_count(module: nn.Module, *inputs) -> int:
    """Graphs `torch._dynamo.explain` makes of `module` on `inputs` (1: no graph break)."""
    torch._dynamo.reset()
    try:
        return torch._dynamo.explain(module)(*inputs).graph_count
    finally:
        torch._dynamo.reset()


def pipeline_worker(model_name: str, scale: Scale, micro: int, steps: int, device: str) -> dict:
    """The pipeline's own loop, `steps` steps of the paper's global batch."""
    batch = scale.global_batch[model_name]
    compute = Compute(device=device, precision=scale.precision, compile=scale.compile)
    if model_name == "lm":
        shape = scale.lm
        model = build_lm(shape, seed=0)
        tokens = np.random.default_rng(0).integers(0, shape.vocab_size, 4_000_000).astype(np.uint16)
        task = LMTask(tokens, tokens, shape.context, batch, seed=0, eval_batches=1, eval_batch_size=micro)
        flops, per_example = lm_flops(model, shape), shape.context
    else:
        shape = scale.vit
        model = build_vit(shape, seed=0)
        task = RandomImages(batch, shape.image_size, seed=0)
        flops, per_example = (vit_flops(model, shape), None), 1
    optimizer = build_optimizer(model, WeightDecays(1.0, 0.1), lr=6e-4, betas=(0.9, 0.95), eps=1e-8)
    schedule = Schedule(steps=steps, batch_size=batch, micro_batch_size=micro, log_every=5)
    with tempfile.TemporaryDirectory() as scratch:
        result = train(model, optimizer, task, schedule, f"{scratch}/checkpoints", f"{scratch}/metrics.jsonl",
                       progress=False, compute=compute)
    placement = place(compute)
    sample = task.batch(0, slice(0, micro))
    if model_name == "lm":
        module, sample = task.training_module(model), sample.to(placement.device)
        module_input = sample
    else:
        module, sample = model, tuple(x.to(placement.device) for x in sample)
        module_input = task.normalise(sample[0])
    forward = torch.compile(module) if scale.compile else module

    def step() -> None:
        with torch.autocast(placement.device.type, torch.bfloat16, enabled=scale.precision == "bf16"):
            loss = task.loss(forward, sample)
        loss.backward()

    step()  # compiled before profiling
    kernel = attention_kernels(step)
    graphs = graph_count(module, module_input)
    return _figures(model_name, "pipeline", scale, micro, steps, device, result.steps_per_second, per_example,
                    flops, kernel, graphs, fused=optimizer.param_groups[0].get("fused") is True)


def reference_worker(model_name: str, scale: Scale, micro: int, steps: int, device: str) -> dict:
    """The reference loop: the shortest honest training step of the same shape and batch."""
    torch.manual_seed(0)
    compute = Compute(device=device, precision=scale.precision, compile=scale.compile)
    placement = place(compute)
    batch = scale.global_batch[model_name]
    if model_name == "lm":
        shape = scale.lm
        model = ReferenceGPT(shape).to(placement.device)
        tokens = np.random.default_rng(0).integers(0, shape.vocab_size, 4_000_000).astype(np.int64)
        flops, per_example = lm_flops(model, shape), shape.context

        def next_micro_batch(generator: np.random.Generator):
            starts = generator.integers(0, len(tokens) - shape.context - 1, micro)
            windows = torch.from_numpy(np.stack([tokens[s:s + shape.context + 1] for s in starts]))
            windows = windows.pin_memory() if placement.device.type == "cuda" else windows
            windows = windows.to(placement.device, non_blocking=True)
            return windows[:, :-1], windows[:, 1:]

        loss_of = model
    else:
        import timm

        shape = scale.vit
        model = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=shape.num_classes,
                                  img_size=shape.image_size, patch_size=shape.patch_size, embed_dim=shape.embed_dim,
                                  depth=shape.depth, num_heads=shape.n_head).to(placement.device)
        images = RandomImages(batch, shape.image_size, seed=0)
        flops, per_example = (vit_flops(model, shape), None), 1

        def next_micro_batch(generator: np.random.Generator):
            rows = generator.integers(0, batch - micro + 1)
            pair = images.batch(0, slice(rows, rows + micro))
            if placement.device.type == "cuda":
                pair = tuple(x.pin_memory() for x in pair)
            return tuple(x.to(placement.device, non_blocking=True) for x in pair)

        def loss_of(pixels, labels):
            return F.cross_entropy(model(RandomImages.normalise(pixels)), labels)

    fused = fused_kernels(placement.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=6e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1,
                                  fused=fused or None)
    forward = torch.compile(loss_of) if scale.compile else loss_of
    generator = np.random.default_rng(0)
    accumulation = batch // micro

    def step() -> None:
        for _ in range(accumulation):
            inputs = next_micro_batch(generator)
            with torch.autocast(placement.device.type, torch.bfloat16, enabled=scale.precision == "bf16"):
                loss = forward(*inputs) / accumulation
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(TIMED_AFTER):
        step()
    _synchronize(placement.device)
    started = time.perf_counter()
    for _ in range(steps - TIMED_AFTER):
        step()
    _synchronize(placement.device)
    steps_per_second = (steps - TIMED_AFTER) / (time.perf_counter() - started)
    sample = next_micro_batch(generator)

    def profiled_step() -> None:
        with torch.autocast(placement.device.type, torch.bfloat16, enabled=scale.precision == "bf16"):
            forward(*sample).backward()

    kernel = attention_kernels(profiled_step)
    graphs = graph_count(loss_of, *sample)
    return _figures(model_name, "reference", scale, micro, steps, device, steps_per_second, per_example, flops,
                    kernel, graphs, fused=fused)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _figures(model_name: str, loop: str, scale: Scale, micro: int, steps: int, device: str,
             steps_per_second: float, per_example: int, flops: tuple[float, float | None], kernel: str, graphs: int,
             fused: bool) -> dict:
    """One run's row: throughput in tokens (images) per second, MFU by both FLOP counts, and what ran."""
    import timm
    import transformers

    batch = scale.global_batch[model_name]
    compute = Compute(device=device, precision=scale.precision, compile=scale.compile)
    peak = peak_flops(place(compute), compute)
    tokens_or_images = steps_per_second * batch * per_example
    cuda = device == "cuda"
    return {
        "model": model_name, "loop": loop, "precision": scale.precision, "compile": scale.compile,
        "micro_batch": micro, "global_batch": batch, "steps": steps, "step_seconds": 1 / steps_per_second,
        "per_second": tokens_or_images, "unit": "tokens" if model_name == "lm" else "images",
        "mfu": tokens_or_images * flops[0] / peak if peak else None,
        "mfu_nanogpt": tokens_or_images * flops[1] / peak if peak and flops[1] else None,
        "attention_kernel": kernel, "graphs": graphs, "fused_adamw": fused,
        "peak_allocated_gib": torch.cuda.max_memory_allocated() / GIB if cuda else None,
        "peak_reserved_gib": torch.cuda.max_memory_reserved() / GIB if cuda else None,
        "device": torch.cuda.get_device_name() if cuda else "cpu", "torch": torch.__version__,
        "cuda": torch.version.cuda, "transformers": transformers.__version__, "timm": timm.__version__,
    }


def _percent(value: float | None) -> str:
    return f"{100 * value:.1f} %" if value is not None else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[2:]))
    parser.add_argument("--models", nargs="+", choices=["lm", "vit"], default=["lm", "vit"])
    parser.add_argument("--micro-batches", nargs="+", type=int,
                        help="micro-batches to measure (default: LM 16 32 64, ViT 256; smoke: 4 and 8); each must "
                             "divide the global batch (LM 128 sequences, ViT 1,024 images)")
    parser.add_argument("--loops", nargs="+", choices=LOOPS, default=list(LOOPS))
    parser.add_argument("--steps", type=int, default=13, help="steps per run; the first 3 are not timed")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes in fp32, not compiled: checks the script")
    parser.add_argument("--json", help="also append each run's figures to this JSON-lines file")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="cpu: with --smoke, a check only")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    scale = SMOKE if args.smoke else PAPER
    if args.worker:
        loop, name, micro = args.worker
        worker = pipeline_worker if loop == "pipeline" else reference_worker
        print(json.dumps(worker(name, scale, int(micro), args.steps, args.device)))
        return

    versions = None
    print("| model | loop | micro-batch | step | throughput | MFU 6N+6LTd | MFU 6N+12LTd | pipeline / reference "
          "| attention | graphs | peak allocated / reserved |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in args.models:
        for micro in args.micro_batches or scale.micro_batches[name]:
            if scale.global_batch[name] % micro:
                parser.error(f"--micro-batches {micro} does not divide the {name} global batch "
                             f"{scale.global_batch[name]}")
            reference = None
            for loop in sorted(args.loops, key=lambda x: x != "reference"):  # the reference first, then ours
                command = [sys.executable, __file__, "--steps", str(args.steps), "--device", args.device,
                           *(["--smoke"] if args.smoke else []), "--worker", loop, name, str(micro)]
                done = subprocess.run(command, capture_output=True, text=True)
                if done.returncode:
                    last = (done.stderr.strip().splitlines() or ["no output"])[-1]
                    print(f"| {name} | {loop} | {micro} | failed: {last} |", flush=True)
                    continue
                figures = json.loads(done.stdout.strip().splitlines()[-1])
                reference = figures["per_second"] if loop == "reference" else reference
                ratio = f"{figures['per_second'] / reference:.2f}" if loop == "pipeline" and reference else ""
                memory = (f"{figures['peak_allocated_gib']:.1f} / {figures['peak_reserved_gib']:.1f} GiB"
                          if figures["peak_allocated_gib"] is not None else "n/a")
                print(f"| {name} | {loop} | {micro} | {1000 * figures['step_seconds']:.0f} ms | "
                      f"{figures['per_second']:,.0f} {figures['unit']}/s | {_percent(figures['mfu'])} | "
                      f"{_percent(figures['mfu_nanogpt'])} | {ratio} | {figures['attention_kernel']} | "
                      f"{figures['graphs']} | {memory} |", flush=True)
                versions = (f"{figures['device']}; torch {figures['torch']} (CUDA {figures['cuda']}), transformers "
                            f"{figures['transformers']}, timm {figures['timm']}; {figures['precision']}"
                            f"{' + compile' if figures['compile'] else ''}; fused AdamW: {figures['fused_adamw']}")
                if args.json:
                    with open(args.json, "a", encoding="utf-8") as log:
                        log.write(json.dumps(figures) + "\n")
    print(f"versions: {versions}")


if __name__ == "__main__":
    main()
