"""Memory of one training step at the paper's shapes, per sample and fixed, measured on this machine's CPU.

Each setting runs in its own process (allocator caches never mix) with MALLOC_MMAP_THRESHOLD_=65536, so that freed
tensors return to the system and the resident set tracks live memory. In that process: build the model, take one
step (forward, backward, clipping, AdamW: the optimizer state now exists, compilation is done), reset the peak
resident set (/proc/self/clear_refs), take a second step and read the peak (VmHWM) minus the resident set before it.
Between batch b and 2b the difference over b is the memory per sample (b = 1 for the language model, whose sample is
1.2 GiB; b = 8 for the ViT, whose smaller steps the allocator's rounding hides at batch 1 and 2); the peak at b minus
b samples is the fixed cost of a step beyond what was already resident (gradients, transient buffers). Weights and AdamW state are reported from their
sizes. The output head alone (logits and the loss) is measured the same way, between 4 and 8 sequences, to show its
share. The language model
is measured by both routes of `wdrank.models.next_token`: plain (full logits, what the CPU runs) and chunked (the
output layer and loss fused by chunks of rows, what CUDA runs).

    python benchmarks/train_memory.py                                 # language model (both routes) and ViT, fp32
    python benchmarks/train_memory.py --models vit --settings fp32 bf16 bf16+compile

bf16 on a CPU without bf16 instructions (e.g. the AMD EPYC of the development machine) is emulated: a GPT-2-small step
then takes minutes, and a compiled one longer still.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

GIB = 1024**3
BASE_BATCH = {"lm": 1, "vit": 8}
HEAD_BATCHES = (4, 8)  # sequences: 3,024 and 6,048 rows, beyond one chunk of the chunked route (2,670 rows)


def resident() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_resident() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def worker(model_name: str, batch: int, precision: str, compile_model: bool, head_only: bool, chunked: bool) -> dict:
    """One process: the step's peak memory above what was resident before it."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    if model_name == "lm":
        from wdrank.models.lm import LMShape, build_lm
        from wdrank.models.next_token import NextTokenLoss, linear_cross_entropy

        shape = LMShape("gpt2", n_layer=12, n_embd=768, n_head=12, context=756, vocab_size=50257)
        model = build_lm(shape, seed=0)
        inputs = torch.randint(0, shape.vocab_size, (batch, shape.context))
        if head_only:  # the output head alone: final hidden states -> logits -> loss
            model = model.lm_head
            hidden = torch.randn(batch * shape.context, shape.n_embd, requires_grad=False)

            def loss_of(head):
                if chunked:
                    return linear_cross_entropy(hidden, head.weight, inputs.reshape(-1))
                logits = head(hidden)
                return F.cross_entropy(logits.float(), inputs.reshape(-1))
        else:
            module = NextTokenLoss(model, chunked)

            def loss_of(forward):
                return forward(inputs)
    else:
        from wdrank.models.vit import ViTShape, build_vit

        shape = ViTShape(image_size=224, channels=3, num_classes=1000, patch_size=16, depth=12, embed_dim=384,
                         n_head=6, mlp_ratio=4.0)
        model = build_vit(shape, seed=0)
        images, labels = torch.randn(batch, 3, 224, 224), torch.randint(0, 1000, (batch,))

        def loss_of(module):
            return F.cross_entropy(module(images), labels)

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1)
    module = module if model_name == "lm" and not head_only else model
    forward = torch.compile(module) if compile_model else module

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = loss_of(forward)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()
    before = resident()
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak to the current resident set
    step()
    parameters = sum(p.numel() for p in model.parameters())
    return {"step_peak_above_resident": peak_resident() - before, "parameters": parameters}


def measure(model_name: str, batch: int, precision: str, compile_model: bool, head_only: bool = False,
            chunked: bool = False) -> dict:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    command = [sys.executable, __file__, "--worker", model_name, str(batch), precision, str(int(compile_model)),
               str(int(head_only)), str(int(chunked))]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=["lm", "vit"], default=["lm", "vit"])
    parser.add_argument("--settings", nargs="+", choices=["fp32", "bf16", "bf16+compile"], default=["fp32"])
    parser.add_argument("--routes", nargs="+", choices=["plain", "chunked"], default=["plain", "chunked"],
                        help="the language model's output layer and loss (wdrank.models.next_token)")
    parser.add_argument("--worker", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        name, batch, precision, compiled, head, chunked = args.worker
        print(json.dumps(worker(name, int(batch), precision, compiled == "1", head == "1", chunked == "1")))
        return

    print("| model | setting | step peak at batch b / 2b | per sample | fixed per step | weights + AdamW state |")
    print("|---|---|---|---|---|---|")
    for model_name in args.models:
        base = BASE_BATCH[model_name]
        for setting in args.settings:
            precision, compiled = setting.removesuffix("+compile"), setting.endswith("+compile")
            for route in args.routes if model_name == "lm" else ["plain"]:
                chunked, label = route == "chunked", f"{setting}, {route}" if model_name == "lm" else setting
                one, two = (measure(model_name, batch, precision, compiled, chunked=chunked)
                            for batch in (base, 2 * base))
                peaks = one["step_peak_above_resident"], two["step_peak_above_resident"]
                per_sample = (peaks[1] - peaks[0]) / base
                states = 12 * one["parameters"]  # fp32 weights + AdamW's two moments
                print(f"| {model_name} | {label} | {peaks[0] / GIB:.3f} / {peaks[1] / GIB:.3f} GiB (b = {base}) | "
                      f"{per_sample / GIB:.4f} GiB | {(peaks[0] - base * per_sample) / GIB:.3f} GiB | "
                      f"{states / GIB:.3f} GiB |", flush=True)
                if model_name == "lm":
                    one_head, two_head = (measure("lm", batch, precision, compiled, head_only=True, chunked=chunked)
                                          for batch in HEAD_BATCHES)
                    head = (two_head["step_peak_above_resident"] - one_head["step_peak_above_resident"]) / (
                        HEAD_BATCHES[1] - HEAD_BATCHES[0])
                    print(f"| lm output head alone | {label} | | {head / GIB:.3f} GiB | | |", flush=True)


if __name__ == "__main__":
    main()
