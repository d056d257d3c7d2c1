"""Checkpoints at every instant of a save: a kill never leaves a run without a complete checkpoint, an incomplete
folder is never listed, and a save that fails names the file and keeps the earlier checkpoints."""

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from torch import nn

from conftest import REPO
from test_training import train_command
from wdrank.checkpoint import discard_checkpoint, list_checkpoints, load_checkpoint, save_checkpoint


def model_and_optimizer(seed: int) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(256, 512), nn.Linear(512, 256))  # 1 MB of weights, 3 MB with AdamW's state
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randn(4, 256)).sum().backward()
    optimizer.step()
    return model, optimizer


def assert_every_listed_checkpoint_is_complete(directory) -> list[int]:
    steps = []
    for path in list_checkpoints(directory):
        model, optimizer = model_and_optimizer(0)
        steps.append(load_checkpoint(path, model, optimizer)["step"])  # raises on a missing or truncated file
        assert steps[-1] == int(path.name.removeprefix("step_"))
    return steps


@pytest.mark.slow
def test_a_kill_at_any_instant_of_saving_and_pruning_leaves_a_complete_checkpoint(tmp_path):
    """A writer saves step after step and removes the one before, as training does. It is frozen (SIGSTOP) at 60
    random instants: what is on disk then is what a SIGKILL at that instant would leave. Every time, at least one
    checkpoint is listed and every listed one loads completely; then it is killed for real, and the same holds."""
    writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO / "tests")!r})
        from test_checkpoint import model_and_optimizer
        from wdrank.checkpoint import discard_checkpoint, save_checkpoint
        model, optimizer = model_and_optimizer(0)
        previous = save_checkpoint({str(tmp_path)!r}, 0, model, optimizer, None)
        print("ready", flush=True)
        step = 1
        while True:
            latest = save_checkpoint({str(tmp_path)!r}, step, model, optimizer, None)
            discard_checkpoint(previous)
            previous, step = latest, step + 1
        """)], stdout=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        assert writer.stdout.readline().strip() == "ready"
        rng, seen = random.Random(0), set()
        for _ in range(60):
            time.sleep(rng.uniform(0, 0.05))
            writer.send_signal(signal.SIGSTOP)
            try:
                steps = assert_every_listed_checkpoint_is_complete(tmp_path)
                assert steps, "no complete checkpoint at this instant"
                seen.update(steps)
            finally:
                writer.send_signal(signal.SIGCONT)
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        assert assert_every_listed_checkpoint_is_complete(tmp_path)
        assert len(seen) > 10, "the writer hardly wrote: the instants tested were not inside saves"
    finally:
        writer.kill()
    # the next save clears what the killed writer left half-written or half-removed
    model, optimizer = model_and_optimizer(0)
    save_checkpoint(tmp_path, 10**6, model, optimizer, None)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


@pytest.mark.slow
def test_a_failed_save_names_the_file_and_keeps_the_earlier_checkpoint(tmp_path):
    """A file-size limit (RLIMIT_FSIZE: writes fail with EFBIG, as they would with ENOSPC on a full disk) set after
    the first checkpoint: the second save raises a CheckpointError that names the file, leaves nothing behind, and
    the first checkpoint stays complete."""
    script = textwrap.dedent(f"""
        import resource, signal, sys
        sys.path.insert(0, {str(REPO / "tests")!r})
        from test_checkpoint import model_and_optimizer
        from wdrank.checkpoint import CheckpointError, save_checkpoint
        model, optimizer = model_and_optimizer(0)
        save_checkpoint({str(tmp_path)!r}, 100, model, optimizer, None)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, resource.RLIM_INFINITY))
        try:
            save_checkpoint({str(tmp_path)!r}, 200, model, optimizer, None)
        except CheckpointError as error:
            print(error)
        """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    message = result.stdout.strip()
    assert message.startswith(f"cannot write checkpoint file {tmp_path / 'step_000200' / 'model.safetensors'}: ")
    assert "earlier checkpoints" in message and "\n" not in message
    assert [p.name for p in tmp_path.iterdir()] == ["step_000100"]  # no step_000200, no hidden leftover
    assert assert_every_listed_checkpoint_is_complete(tmp_path) == [100]


@pytest.mark.slow
def test_training_that_cannot_write_its_checkpoint_exits_non_zero_naming_the_file(tiny_corpus, tmp_path):
    """The same failure through the command a rule runs: exit 1, one line naming the file, no checkpoint listed."""

    def limit_file_size():
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, resource.RLIM_INFINITY))

    result = subprocess.run(train_command(tiny_corpus, tmp_path, 20, 10), capture_output=True, text=True,
                            preexec_fn=limit_file_size)
    assert result.returncode == 1, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("wdrank train: error: cannot write checkpoint file ") and "step_000000" in last
    assert list_checkpoints(tmp_path / "ckpt") == []
    assert not [p for p in (tmp_path / "ckpt").iterdir() if p.is_dir()]
    assert not (tmp_path / "run" / "summary.json").exists()


@pytest.fixture
def small_file_system(tmp_path):
    """A 5 MiB tmpfs (a full disk without filling the machine's); skipped where mounting is not allowed."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=5m", "tmpfs", str(mount_point)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=True)


@pytest.mark.parametrize("filled_bytes, failing_file", [(0, "optimizer.pt"), (1_500_000, "model.safetensors")],
                         ids=["torch's writer", "safetensors' writer"])
def test_a_save_that_runs_out_of_space_says_so_with_the_bytes_needed_and_free(small_file_system, filled_bytes,
                                                                              failing_file):
    """A full disk (a real one: ENOSPC from a 5 MiB tmpfs) is named as such, in one line, with the bytes the
    checkpoint needs and those free once its partial write is gone, whichever writer meets it; the earlier
    checkpoint stays complete and nothing else is left."""
    from wdrank.checkpoint import CheckpointError, _checkpoint_bytes
    from wdrank.disk_space import size

    (small_file_system / "other").write_bytes(bytes(filled_bytes))
    directory = small_file_system / "ckpt"
    model, optimizer = model_and_optimizer(0)
    save_checkpoint(directory, 100, model, optimizer, None)  # 3.2 MB: what is left cannot hold another
    with pytest.raises(CheckpointError) as raised:
        save_checkpoint(directory, 200, model, optimizer, None)
    free = os.statvfs(directory).f_bavail * os.statvfs(directory).f_frsize
    message = str(raised.value)
    assert message == (f"cannot write checkpoint file {directory / 'step_000200' / failing_file}: no space left on "
                       f"device: {directory} needs about {size(_checkpoint_bytes(model, optimizer))} and has "
                       f"{size(free)} free; the earlier checkpoints in {directory} are kept")
    assert [p.name for p in directory.iterdir()] == ["step_000100"]
    assert assert_every_listed_checkpoint_is_complete(directory) == [100]


def test_a_full_quota_is_named_as_such(tmp_path, monkeypatch):
    """EDQUOT (a user's quota, with room left on the file system) gets its own words and where to look."""
    import errno

    from wdrank import checkpoint
    from wdrank.checkpoint import CheckpointError

    def quota_exceeded(*args, **kwargs):
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))

    monkeypatch.setattr(checkpoint, "save_file", quota_exceeded)
    model, optimizer = model_and_optimizer(0)
    with pytest.raises(CheckpointError, match=r": disk quota exceeded: .* free on its file system, but your quota "
                                              r"there is full \(see `quota -s`"):
        save_checkpoint(tmp_path, 100, model, optimizer, None)
    assert list(tmp_path.iterdir()) == []


def test_discarding_hides_the_checkpoint_before_deleting_it(tmp_path, monkeypatch):
    """A removal killed in mid-delete (here: rmtree fails after the rename) leaves no `step_*` folder behind."""
    model, optimizer = model_and_optimizer(0)
    path = save_checkpoint(tmp_path, 7, model, optimizer, None)
    monkeypatch.setattr("shutil.rmtree", lambda *args, **kwargs: None)
    discard_checkpoint(path)
    assert list_checkpoints(tmp_path) == [] and not path.exists()
    assert json.loads(next(tmp_path.glob(".step_000007.removed.*/step_000007/trainer_state.json")).read_text()) == {
        "step": 7}
