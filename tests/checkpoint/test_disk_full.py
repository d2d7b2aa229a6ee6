"""A full disk while saving a checkpoint ends in one line that names the file, the reason
and what survived; the previous checkpoint and last_checkpoint stay as they were.

The disk is made full hermetically: `<name>.tmp`, the file a save writes first, is made a
link to /dev/full, where every write fails with ENOSPC."""

import os

import pytest
import torch
from torch import nn

from pasa_det.checkpoint import CheckpointError, SafeCheckpointer
from tests.helpers.paths import QUICK_INSTANCE
from tests.helpers.scripts import run_tool
from tests.helpers.tiny_training import TINY

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")


def model():
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def fill_disk_for(folder, name):
    os.symlink("/dev/full", os.path.join(folder, f"{name}.tmp"))


def refused_save(checkpointer, name) -> str:
    with pytest.raises(CheckpointError) as refused:
        checkpointer.save(name)
    message = str(refused.value)
    assert "\n" not in message
    return message


def test_full_disk_names_the_file_and_keeps_the_previous_checkpoint(tmp_path):
    checkpointer = SafeCheckpointer(model(), str(tmp_path))
    checkpointer.save("model_0000001")
    saved = {k: v.clone() for k, v in checkpointer.model.state_dict().items()}
    with torch.no_grad():
        checkpointer.model[0].weight.add_(1)
    fill_disk_for(tmp_path, "model_0000002.pth")
    message = refused_save(checkpointer, "model_0000002")
    assert message.startswith(
        f"cannot write {tmp_path / 'model_0000002.pth'}: no space left on device ("
    )
    assert "free on that filesystem)" in message
    assert (
        f"The previous checkpoint, {tmp_path / 'model_0000001.pth'}, is intact and "
        "last_checkpoint still names it" in message
    )
    assert "then run the same command with --resume" in message
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000001.pth"]
    fresh = model()
    SafeCheckpointer(fresh, str(tmp_path)).resume_or_load("", resume=True)
    assert all(torch.equal(v, saved[k]) for k, v in fresh.state_dict().items())


def test_full_disk_before_any_checkpoint_says_there_is_none(tmp_path):
    fill_disk_for(tmp_path, "model_0000001.pth")
    message = refused_save(SafeCheckpointer(model(), str(tmp_path)), "model_0000001")
    assert "No checkpoint was saved before it (last_checkpoint names none yet)" in message
    assert message.endswith("then run the same command again")
    assert os.listdir(tmp_path) == []


def test_full_disk_for_last_checkpoint_leaves_it_naming_the_previous_file(tmp_path):
    checkpointer = SafeCheckpointer(model(), str(tmp_path))
    checkpointer.save("model_0000001")
    fill_disk_for(tmp_path, "last_checkpoint")
    message = refused_save(checkpointer, "model_0000002")
    assert message.startswith(f"cannot write {tmp_path / 'last_checkpoint'}: no space left")
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"
    assert not os.path.lexists(tmp_path / "last_checkpoint.tmp")


def test_train_net_on_a_full_disk_ends_in_one_error_line(tmp_path):
    """Periodic checkpoints are named after the 0-based iteration: with a period of 2,
    model_0000001.pth is saved, then model_0000003.pth finds the disk full."""
    fill_disk_for(tmp_path, "model_0000003.pth")
    run = run_tool(
        "train_net.py",
        "--config-file",
        QUICK_INSTANCE,
        *TINY,
        "SOLVER.CHECKPOINT_PERIOD",
        "2",
        "OUTPUT_DIR",
        tmp_path,
        timeout=600,
    )
    assert run.returncode != 0
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, run.stderr[-3000:]
    assert errors[0].startswith(
        f"error: cannot write {tmp_path / 'model_0000003.pth'}: no space left on device ("
    )
    assert f"The previous checkpoint, {tmp_path / 'model_0000001.pth'}, is intact" in errors[0]
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]
    assert not (tmp_path / "model_final.pth").exists()
    saved = torch.load(tmp_path / "model_0000001.pth", map_location="cpu", weights_only=True)
    assert saved["iteration"] == 1 and saved["model"]
