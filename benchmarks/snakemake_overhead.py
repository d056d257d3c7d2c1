"""Snakemake's own cost: dry-run time of the paper-scale grid and of the default config, against a baseline
measured in the same run (the same workflow with every experiment disabled: interpreter start, Snakemake import,
config validation and parsing, no jobs).

    python benchmarks/snakemake_overhead.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = ("factorized", "language_model", "vision_transformer", "toy_transformer", "scalar_pair", "audit")


def dry_run(workdir: Path, configfile: Path) -> tuple[float, int]:
    """(seconds, number of jobs) of one `snakemake -n` in an empty working directory."""
    command = [sys.executable, "-m", "snakemake", "-n", "--snakefile", str(REPO / "Snakefile"), "--directory",
               str(workdir), "--configfile", str(configfile), "--cores", "1"]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - started
    total = re.search(r"^total\s+(\d+)", result.stdout, re.MULTILINE)
    return seconds, int(total.group(1)) if total else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="median of this many dry runs per case")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        empty = tmp / "empty.yaml"
        empty.write_text("".join(f"{name}: {{enabled: false}}\n" for name in EXPERIMENTS))
        cases = {"baseline (no experiment)": empty, "default config": REPO / "config.yaml",
                 "paper-scale grid": REPO / "workflow/configs/paper_scale.yaml"}
        timings = {}
        for name, configfile in cases.items():
            runs = [dry_run(tmp / f"work{i}", configfile) for i in range(args.repeats)]
            timings[name] = (statistics.median(s for s, _ in runs), runs[0][1])
    base = timings["baseline (no experiment)"][0]
    print(f"{'case':<26} {'jobs':>5} {'dry run (s)':>12} {'x baseline':>11} {'ms per job':>11}")
    for name, (seconds, jobs) in timings.items():
        per_job = f"{1000 * (seconds - base) / jobs:.1f}" if jobs else "-"
        print(f"{name:<26} {jobs:>5} {seconds:>12.2f} {seconds / base:>11.2f} {per_job:>11}")


if __name__ == "__main__":
    main()
