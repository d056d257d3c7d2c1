"""What produced a result: wdrank's version and commit, the libraries that shape numbers, the machine, and sha256
digests of the inputs. Every run records it (a trained run in its summary.json, the other steps in a provenance
file), the aggregate steps gather it into one provenance table per result table, and flag a table whose runs differ
in code, library versions or input data. It is never part of a result table, so that those stay identical across
machines.

Torch-free: versions are read from package metadata (torch's from its version.py, which names its build); CUDA,
cuDNN and GPUs are recorded only when torch is already imported (the steps that may use a GPU import it).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import platform
import re
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from wdrank import __version__
from wdrank.aggregate import read_run_provenance, read_run_settings, write_csv
from wdrank.summary import read_summary
from wdrank.sweeps import SWEEPS
from wdrank.fetch import sha256_of

# The libraries whose versions can change results (Python's version is recorded too).
LIBRARIES = ("torch", "numpy", "transformers", "timm", "tokenizers", "datasets", "safetensors", "peft", "pandas",
             "snakemake")
# The fields that must agree across the runs of one table; the machine may differ (its effect is documented).
MUST_AGREE = ("wdrank", "commit", "dirty", "diff", "python", *LIBRARIES, "cuda", "cudnn", "inputs")
# The columns of a provenance table after a run's identity (`flat`).
FLAT_COLUMNS = ("wdrank", "commit", "dirty", "diff", "python", *LIBRARIES, "cuda", "cudnn", "cpu", "gpus", "inputs")
PACKAGE_ROOT = Path(__file__).resolve().parent


def git_state(folder: Path = PACKAGE_ROOT) -> dict:
    """The commit of the checkout wdrank runs from, whether the package's tracked files differ from it, and a digest
    of that difference (so that two runs edited differently do not look alike); all None when wdrank does not run
    from a git checkout that tracks it (e.g. installed from a wheel)."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.decode(errors="replace").strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None or not git("ls-files", "--", "."):  # no repository, or one that does not track this code
        return {"commit": None, "dirty": None, "diff": None}  # (e.g. a virtual environment inside a user's project)
    diff, untracked = git("diff", "HEAD", "--", "."), git("ls-files", "--others", "--exclude-standard", "--", ".")
    if diff is None or untracked is None:
        return {"commit": commit, "dirty": None, "diff": None}
    new_files = [folder / name for name in sorted(untracked.splitlines())]
    change = diff + "".join(f"\n{path.name} {sha256_of(path)}" for path in new_files if path.is_file())
    digest = hashlib.sha256(change.encode()).hexdigest()[:16] if change else ""
    return {"commit": commit, "dirty": bool(change), "diff": digest}


def torch_build() -> str | None:
    """torch's version with its build (2.14.1+cu130, 2.13.0+cpu: the same release computes differently per build),
    read from its version.py without importing it."""
    spec = importlib.util.find_spec("torch")
    if spec is None or spec.origin is None:
        return None
    text = (Path(spec.origin).parent / "version.py").read_text(encoding="utf-8")
    match = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)", text, re.MULTILINE)
    return match.group(1) if match else importlib.metadata.version("torch")


def library_versions() -> dict:
    """Python and every library of LIBRARIES (None where not installed), and CUDA/cuDNN where torch uses them."""
    versions: dict = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = torch_build() if name == "torch" else importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    torch = sys.modules.get("torch")
    gpu = torch is not None and torch.cuda.is_available()
    versions["cuda"] = torch.version.cuda if gpu else None
    versions["cudnn"] = torch.backends.cudnn.version() if gpu else None
    return versions


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux, else what platform reports)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    """The CPU model and the GPUs this process sees (by torch, when imported)."""
    torch = sys.modules.get("torch")
    gpus = []
    if torch is not None and torch.cuda.is_available():
        gpus = [torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count())]
    return {"cpu": cpu_model(), "gpus": gpus, "host_os": platform.platform()}


def input_digests(paths: Iterable[str | Path]) -> dict[str, str]:
    """sha256 of every input file: a file by its name, a folder's files (recursively) by folder/relative name."""
    digests = {}
    for path in map(Path, paths):
        if path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                digests[f"{path.name}/{file.relative_to(path).as_posix()}"] = sha256_of(file)
        elif path.is_file():
            digests[path.name] = sha256_of(path)
        else:
            raise FileNotFoundError(f"{path}: an input of this run does not exist, so it cannot be digested")
    return digests


def record(inputs: Iterable[str | Path] = ()) -> dict:
    """The provenance of a result made now from `inputs` (files or folders)."""
    return {"code": {"wdrank": __version__, **git_state()}, "libraries": library_versions(), "machine": machine(),
            "inputs": input_digests(inputs)}


def flat(provenance: dict) -> dict:
    """One provenance as a table row: code, library versions, machine, and one digest of all inputs (the digest of
    the sorted name/digest pairs; '' for a run without inputs)."""
    inputs = provenance["inputs"]
    combined = hashlib.sha256(json.dumps(sorted(inputs.items())).encode()).hexdigest()[:16] if inputs else ""
    gpus = provenance["machine"]["gpus"]
    return {**provenance["code"], **provenance["libraries"], "cpu": provenance["machine"]["cpu"],
            "gpus": f"{len(gpus)} x {gpus[0]}" if gpus else "", "inputs": combined}


def provenance_table(runs: Sequence[dict], provenances: Sequence[dict]) -> pd.DataFrame:
    """One row per run: the run's identity (its sweep point, or a name), its flat provenance, and `differs`: the
    fields in which it departs from the grid's most common value ('' when the grid agrees; of equally common values,
    the one that sorts first counts as the grid's)."""
    rows = [{**run, **flat(provenance)} for run, provenance in zip(runs, provenances, strict=True)]
    table = pd.DataFrame(rows)
    differs = [[] for _ in rows]
    for field in MUST_AGREE:
        values = [("" if pd.isna(value) else str(value)) for value in table[field]]
        usual = pd.Series(values).mode().iloc[0]
        for position, value in enumerate(values):
            if value != usual:
                differs[position].append(field)
    table["differs"] = [", ".join(fields) for fields in differs]
    return table


def mixed_warnings(table: pd.DataFrame, name: str) -> list[str]:
    """A line per run of `name` whose code, libraries or inputs differ from the rest of its grid."""
    identity = [column for column in table.columns if column not in (*FLAT_COLUMNS, "differs")]
    lines = []
    for _, row in table[table["differs"].fillna("") != ""].iterrows():
        run = ", ".join(f"{column}={row[column]}" for column in identity if str(row[column]) not in ("", "nan"))
        changes = "; ".join(f"{field} {row[field]}" for field in row["differs"].split(", "))
        lines.append(f"wdrank: WARNING: {name} mixes runs of different provenance: run {run} has {changes}, "
                     "unlike the rest of its grid")
    return lines


def summary(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The provenance tables of several result tables as one, led by a `table` column (each keeps its own
    `differs`: a grid is compared within itself)."""
    frames = [table.assign(table=name) for name, table in tables.items()]
    combined = pd.concat(frames, ignore_index=True).fillna("")
    identity = [column for column in combined.columns if column not in (*FLAT_COLUMNS, "differs", "table")]
    return combined[["table", *identity, *FLAT_COLUMNS, "differs"]]


def of_summaries(paths: Sequence[str | Path]) -> pd.DataFrame:
    """The provenance table of trained runs, each named by its sweep point, from their summary.json files."""
    summaries = [read_summary(path) for path in paths]
    return provenance_table([summary["run"]["sweep"] for summary in summaries],
                            [summary["provenance"] for summary in summaries])


def of_run_tables(paths: Sequence[str | Path]) -> pd.DataFrame:
    """The provenance table of runs written as parquet tables (Fig. 1), each named by its sweep point."""
    settings = [read_run_settings(path) for path in paths]
    points = [{axis: run[axis] for axis in SWEEPS[run["experiment"]]} for run in settings]
    return provenance_table(points, [read_run_provenance(path) for path in paths])


def read_table(path: str | Path) -> pd.DataFrame:
    """A provenance table as written (every field as text, empty where unknown)."""
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def write_table(table: pd.DataFrame, path: str | Path, name: str) -> None:
    """Write the provenance table of result table `name`, and warn on stderr (the job's log) for every run that
    departs from its grid."""
    for line in mixed_warnings(table, name):
        print(line, file=sys.stderr)
    write_csv(table, path)
