"""Atomic writes: a failure inside the block leaves no file; success leaves a normally readable one."""

import os
import stat

import pytest

from wdrank.io import atomic_path


def test_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "out" / "table.csv"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half a table")
            raise RuntimeError("killed")
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_successful_write_replaces_and_keeps_suffix(tmp_path):
    target = tmp_path / "figure.png"
    target.write_text("old")
    with atomic_path(target) as tmp:
        assert tmp.suffix == ".png" and tmp.parent == tmp_path
        tmp.write_text("new")
    assert target.read_text() == "new"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["figure.png"]
