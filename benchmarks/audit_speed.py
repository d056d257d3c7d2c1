"""Audit speed on a LLaMA-2-7B-shaped checkpoint: the `wdrank audit` command end to end (load, statistics, table,
figure) against reading the same attention tensors as float32, both measured here, side by side, page cache warm.

The benchmark builds the checkpoint itself: LLaMA-2-7B-hf's names, shapes, dtype (fp16), two shards and index
(13.5 GB); the attention weights are random, every other tensor is a hole in the file (zeros, not written: the audit
never reads them). Each command runs as a user runs it, as its own process, so interpreter start and imports count on
both sides. Also printed: the audit's peak anonymous memory (sampled; the page cache not counted), one layer's
attention in fp16 for scale, and the largest difference between the audit's statistics (Gram matrices) and the QR
route's on layer 0.

    python benchmarks/audit_speed.py                         # 32 layers (13.5 GB in a temporary folder)
    python benchmarks/audit_speed.py --layers 4 --dir /scratch/fake7b   # a quicker look; keep the files
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

D, HEADS, MLP, VOCAB = 4096, 32, 11008, 32000  # LLaMA-2-7B
ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
SHARD_BYTES = 10 * 1024**3  # LLaMA-2-7B-hf: a 9.98 GB shard and a 3.5 GB one
READ_AS_FLOAT32 = """
import sys
from pathlib import Path
from safetensors import safe_open
for shard in sorted(Path(sys.argv[1]).glob("model-*.safetensors")):
    with safe_open(str(shard), framework="pt") as handle:
        for key in handle.keys():
            if key.endswith(("q_proj.weight", "k_proj.weight", "v_proj.weight", "o_proj.weight")):
                handle.get_tensor(key).float()
"""


def tensors(layers: int) -> list[tuple[str, tuple[int, ...]]]:
    """LLaMA-2-7B-hf's tensors, in its files' order."""
    names = [("model.embed_tokens.weight", (VOCAB, D))]
    for layer in range(layers):
        prefix = f"model.layers.{layer}"
        names += [(f"{prefix}.self_attn.{name}.weight", (D, D)) for name in ATTENTION]
        names += [(f"{prefix}.mlp.gate_proj.weight", (MLP, D)), (f"{prefix}.mlp.up_proj.weight", (MLP, D)),
                  (f"{prefix}.mlp.down_proj.weight", (D, MLP)), (f"{prefix}.input_layernorm.weight", (D,)),
                  (f"{prefix}.post_attention_layernorm.weight", (D,))]
    return names + [("model.norm.weight", (D,)), ("lm_head.weight", (VOCAB, D))]


def write_shard(path: Path, entries: list[tuple[str, tuple[int, ...]]], rng: np.random.Generator) -> None:
    """A safetensors file written tensor by tensor: attention weights random fp16, the rest holes (sparse zeros)."""
    header, offset = {}, 0
    for name, shape in entries:
        size = 2 * int(np.prod(shape))
        header[name] = {"dtype": "F16", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    with open(path, "wb") as handle:
        handle.write(len(encoded).to_bytes(8, "little") + encoded)
        for name, shape in entries:
            if name.endswith(tuple(f"{a}.weight" for a in ATTENTION)):
                weight = rng.standard_normal(shape, dtype=np.float32) * 0.02
                handle.write(weight.astype(np.float16).tobytes())
            else:
                handle.seek(2 * int(np.prod(shape)), os.SEEK_CUR)
        handle.truncate()


def build_checkpoint(folder: Path, layers: int) -> None:
    """config.json, the shards and their index, as transformers writes LLaMA-2-7B-hf."""
    folder.mkdir(parents=True, exist_ok=True)
    shards, current, size = [], [], 0
    for entry in tensors(layers):
        nbytes = 2 * int(np.prod(entry[1]))
        if current and size + nbytes > SHARD_BYTES:
            shards.append(current)
            current, size = [], 0
        current.append(entry)
        size += nbytes
    shards.append(current)
    rng = np.random.default_rng(0)
    weight_map = {}
    for index, entries in enumerate(shards, start=1):
        name = f"model-{index:05d}-of-{len(shards):05d}.safetensors"
        write_shard(folder / name, entries, rng)
        weight_map.update(dict.fromkeys((entry[0] for entry in entries), name))
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    (folder / "config.json").write_text(json.dumps({
        "model_type": "llama", "hidden_size": D, "intermediate_size": MLP, "num_attention_heads": HEADS,
        "num_key_value_heads": HEADS, "num_hidden_layers": layers, "vocab_size": VOCAB, "torch_dtype": "float16"}))


def anonymous_memory(pid: int) -> int:
    """Resident anonymous memory of a process (bytes): its own data, not the page cache it maps."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def timed(command: list[str]) -> tuple[float, int]:
    """Wall time of a command and its peak anonymous memory (sampled every 20 ms)."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = [0]

    def sample() -> None:
        while process.poll() is None:
            peak[0] = max(peak[0], anonymous_memory(process.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    _, errors = process.communicate()
    elapsed = time.perf_counter() - start
    sampler.join()
    if process.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{errors}")
    return elapsed, peak[0]


def qr_route_difference(folder: Path, table: pd.DataFrame) -> float:
    """Largest relative difference between the audit's statistics of layer 0 and the QR route's
    (`wdrank.spectra.summarize` on the factors themselves)."""
    from wdrank import spectra
    from wdrank.heads import attention_factors
    from wdrank.weights import open_weights

    worst = 0.0
    state, config = open_weights(folder)
    for factors in attention_factors(state, config):
        if factors.layer > 0:
            break
        reference = spectra.summarize(factors.a, factors.b, (0.01, 0.001))
        rows = table[(table["layer"] == 0) & (table["product"] == factors.product)].sort_values("head")
        for name in ("nuclear_norm", "frobenius_side", "spectral_norm", "effective_rank", "stable_rank"):
            worst = max(worst, float(np.max(np.abs(rows[name].to_numpy() - reference[name]) / reference[name])))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=32, help="layers of the 7B shape (default: all 32)")
    parser.add_argument("--dir", help="build the checkpoint here and keep it (default: a temporary folder)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each command; the fastest counts")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(args.dir) if args.dir else Path(scratch) / "llama-2-7b-shaped"
        if not (folder / "config.json").exists():
            start = time.perf_counter()
            build_checkpoint(folder, args.layers)
            print(f"built {folder} ({args.layers} layers) in {time.perf_counter() - start:.0f} s")
        size = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
        read = [sys.executable, "-c", READ_AS_FLOAT32, str(folder)]
        outputs = {key: Path(scratch) / f"audit.{key}" for key in ("csv", "pdf", "png")}
        audit = [sys.executable, "-m", "wdrank", "audit", str(folder), "--table", str(outputs["csv"]),
                 "--pdf", str(outputs["pdf"]), "--png", str(outputs["png"])]
        timed(read)  # warm the page cache
        reads, audits = [], []
        for _ in range(args.repeats):  # interleaved, so that both see the same machine
            reads.append(timed(read))
            audits.append(timed(audit))
        (read_time, _), (audit_time, audit_memory) = min(reads), min(audits)
        table = pd.read_csv(outputs["csv"])
        difference = qr_route_difference(folder, table)

    layer_bytes = 4 * D * D * 2
    print(f"checkpoint: {args.layers} layers, {size / 1e9:.1f} GB on disk (as files; attention "
          f"{args.layers * layer_bytes / 1e9:.1f} GB), page cache warm, {os.cpu_count()} CPUs")
    print(f"read attention tensors as float32 (python -c, safetensors + torch): {read_time:6.1f} s")
    print(f"wdrank audit, end to end (table, figure):                          {audit_time:6.1f} s  "
          f"({len(table)} rows)")
    print(f"ratio audit / read: {audit_time / read_time:.2f} (goal: at most 3)")
    print(f"audit peak anonymous memory: {audit_memory / 1e9:.2f} GB (one layer's attention in fp16: "
          f"{layer_bytes / 1e9:.2f} GB)")
    print(f"largest relative difference from the QR route on layer 0: {difference:.1e}")


if __name__ == "__main__":
    main()
