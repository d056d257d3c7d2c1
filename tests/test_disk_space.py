"""A write that runs out of space is named as such by any command: the reason in the user's words, the file and
the space free where it was written, in one line (checkpoints add the bytes they need: tests/test_checkpoint.py)."""

import errno
import shutil

import pytest

from wdrank import cli
from wdrank.commands import configuration
from wdrank.disk_space import out_of_space, size


@pytest.mark.parametrize("error, reason", [
    (OSError(errno.ENOSPC, "No space left on device"), "no space left on device"),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), "disk quota exceeded"),
    (RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)"),
     "no space left on device"),  # safetensors (Rust)
    (OSError(errno.EACCES, "Permission denied"), None),
    (RuntimeError("Error while serializing: I/O error: Permission denied (os error 13)"), None),
], ids=["ENOSPC", "EDQUOT", "safetensors ENOSPC", "EACCES", "safetensors EACCES"])
def test_out_of_space_is_told_from_other_failures(error, reason):
    assert out_of_space(error) == reason
    try:  # as an error raised while handling it (torch's writer raises its own over the OSError)
        try:
            raise error
        except Exception:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 20800 vs 20688")
    except RuntimeError as wrapped:
        assert out_of_space(wrapped) == reason


def test_sizes_read_at_a_glance():
    assert size(999) == "999 bytes"
    assert size(20_800) == "20.8 kB (20,800 bytes)"
    assert size(1_234_567_890) == "1.2 GB (1,234,567,890 bytes)"


def test_a_command_out_of_space_ends_in_one_line_naming_the_file_and_the_space_free(tmp_path, monkeypatch, capsys):
    target = tmp_path / "tables" / "lm_runs.csv"

    def handler(args):
        raise OSError(errno.ENOSPC, "No space left on device", str(target))

    monkeypatch.setattr(configuration, "_print_config", handler)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 512, 512))
    assert cli.main(["config"]) == 1
    assert capsys.readouterr().err == (f"wdrank config: error: cannot write {target}: no space left on device: "
                                       f"{target.parent} has 512 bytes free\n")
