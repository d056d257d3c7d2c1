"""Telling a write that failed for lack of space (a full disk, a full quota) from other failures, and saying so in
the user's words: what was being written, where, how much it needed and how much is free there.

Writers report a full disk in their own words: Python as OSError ENOSPC or EDQUOT, safetensors (Rust) as
"... (os error 28)", torch's C++ writer as "unexpected pos ..." (which is why checkpoints hand torch a Python file).
"""

from __future__ import annotations

import errno
import re
import shutil
from pathlib import Path

REASONS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded"}
_RUST_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def out_of_space(error: BaseException) -> str | None:
    """"no space left on device" or "disk quota exceeded" when `error` (or an error it was raised from) is a write
    that ran out of space, else None."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in REASONS:
            return REASONS[error.errno]
        code = _RUST_OS_ERROR.search(str(error))
        if code and int(code.group(1)) in REASONS:
            return REASONS[int(code.group(1))]
        error = error.__cause__ or error.__context__
    return None


def free_bytes(path: str | Path) -> int:
    """Bytes free to an unprivileged user on the file system of `path` (its nearest existing folder)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def size(count: int) -> str:
    """A byte count for people: '1.2 GB (1,234,567,890 bytes)'."""
    value, unit = float(count), "bytes"
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            break
        value /= 1000
    return f"{count:,} bytes" if unit == "bytes" else f"{value:.1f} {unit} ({count:,} bytes)"


def explain(reason: str, folder: str | Path, needed: int | None = None) -> str:
    """One line: `reason`, what `folder` needed (when known) and what it has free; for a quota, where to look."""
    needs = f"needs about {size(needed)} and " if needed is not None else ""
    line = f"{reason}: {folder} {needs}has {size(free_bytes(folder))} free"
    if reason == REASONS[errno.EDQUOT]:
        line += " on its file system, but your quota there is full (see `quota -s` or your cluster's docs)"
    return line
