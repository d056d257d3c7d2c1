"""Training throughput of the language model: tokens/s, and model FLOP/s as a fraction of dense-matmul FLOP/s.

The baseline (dense float32 matmul FLOP/s of this machine, same thread count) is measured in the same run, so
the printed fraction is comparable across machines and not a timing assertion. Model FLOPs per token follow
the usual 6·N (N = non-embedding parameters) + 6·n_layer·context·d_model (attention scores and mixing).

    python benchmarks/train_throughput.py                    # the default config's model, 1 thread
    python benchmarks/train_throughput.py --n-layer 4 --n-embd 128 --threads 2
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from wdrank.experiments.lm import LMTask
from wdrank.models.lm import LMShape, build_lm, flops_per_token
from wdrank.optim import WeightDecays, build_optimizer


def matmul_flops_per_second(size: int = 1024, seconds: float = 2.0) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm up
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    return 2 * size**3 * count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-layer", type=int, default=2)
    parser.add_argument("--n-embd", type=int, default=64)
    parser.add_argument("--n-head", type=int, default=4)
    parser.add_argument("--context", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--vocab-size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    shape = LMShape("gpt2", args.n_layer, args.n_embd, args.n_head, args.context, args.vocab_size)
    model = build_lm(shape, seed=0)
    optimizer = build_optimizer(model, WeightDecays(1.0, 0.1), lr=3e-3, betas=(0.9, 0.95), eps=1e-8)
    tokens = np.random.default_rng(0).integers(0, args.vocab_size, 200_000).astype(np.uint16)
    task = LMTask(tokens, tokens, args.context, args.batch_size, seed=0, eval_batches=1,
                  eval_batch_size=args.batch_size)
    whole, module = slice(0, args.batch_size), task.training_module(model)

    def step(i: int) -> None:
        task.loss(module, task.batch(i, whole)).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for i in range(3):
        step(i)
    start = time.perf_counter()
    for i in range(args.steps):
        step(i)
    elapsed = time.perf_counter() - start
    tokens_per_second = args.steps * args.batch_size * args.context / elapsed
    achieved = tokens_per_second * flops_per_token(model, shape)
    baseline = matmul_flops_per_second()
    print(f"model: {shape}, batch {args.batch_size}, {args.threads} thread(s)")
    print(f"step time            {1000 * elapsed / args.steps:8.1f} ms")
    print(f"throughput           {tokens_per_second:8.0f} tokens/s")
    print(f"model FLOP/s         {achieved / 1e9:8.2f} GFLOP/s")
    print(f"dense matmul FLOP/s  {baseline / 1e9:8.2f} GFLOP/s (baseline, same run)")
    print(f"ratio model/matmul   {achieved / baseline:8.3f}")


if __name__ == "__main__":
    main()
