"""SafeCheckpointer: clear errors on missing, truncated, foreign and untrusted
checkpoints; saves that a crash cannot leave half-written."""

import os
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from pasa_det.checkpoint import CheckpointError, SafeCheckpointer


def model(out=3):
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, out))


class Payload:
    """Stands for any pickled object: unpickling it runs code."""

    def __reduce__(self):
        return (print, ("payload ran",))


def test_missing_file_is_named(tmp_path):
    with pytest.raises(CheckpointError, match=r"nope\.pth: no such checkpoint file"):
        SafeCheckpointer(model()).load(str(tmp_path / "nope.pth"))


def test_truncated_file_is_named(tmp_path):
    path = tmp_path / "half.pth"
    torch.save({"model": model().state_dict()}, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(
        CheckpointError, match=r"half\.pth: truncated, corrupted or not a torch checkpoint"
    ):
        SafeCheckpointer(model()).load(str(path))


def test_garbage_pkl_is_named(tmp_path):
    path = tmp_path / "garbage.pkl"
    path.write_bytes(b"definitely not a pickle")
    with pytest.raises(CheckpointError, match=r"garbage\.pkl: truncated or not a pickle file"):
        SafeCheckpointer(model()).load(str(path))


def test_pickled_objects_are_refused_unless_trusted(tmp_path, capsys):
    path = tmp_path / "objects.pth"
    torch.save({"model": model().state_dict(), "extra": Payload()}, path)
    with pytest.raises(
        CheckpointError,
        match=r"objects\.pth: torch\.load\(weights_only=True\) refused it: it pickles \S*print"
        r".*MODEL\.WEIGHTS_TRUST_PICKLE True",
    ):
        SafeCheckpointer(model()).load(str(path))
    assert "payload ran" not in capsys.readouterr().out
    SafeCheckpointer(model(), trust_pickle=True).load(str(path))
    assert "payload ran" in capsys.readouterr().out


def test_pkl_with_code_is_refused_and_plain_numpy_pkl_loads(tmp_path, capsys):
    source = model()
    weights = {k: v.numpy() for k, v in source.state_dict().items()}
    plain, evil = tmp_path / "plain.pkl", tmp_path / "evil.pkl"
    plain.write_bytes(pickle.dumps({"model": weights, "__author__": "test"}))
    evil.write_bytes(pickle.dumps({"model": weights, "__author__": Payload()}))
    with pytest.raises(
        CheckpointError,
        match=r"evil\.pkl: refused to unpickle: it references builtins\.print.*WEIGHTS_TRUST_PICKLE",
    ):
        SafeCheckpointer(model()).load(str(evil))
    assert "payload ran" not in capsys.readouterr().out
    target = model()
    SafeCheckpointer(target).load(str(plain))
    assert all(np.array_equal(v.numpy(), weights[k]) for k, v in target.state_dict().items())


def test_other_architecture_lists_mismatched_shapes_and_loads_partially_on_request(tmp_path):
    path = tmp_path / "five_classes.pth"
    source = model(out=5)
    torch.save({"model": source.state_dict()}, path)
    with pytest.raises(
        CheckpointError,
        match=r"another architecture.*\n"
        r"  2\.weight: \(5, 8\) in the checkpoint, \(3, 8\) in the model\n"
        r"  2\.bias: \(5,\) in the checkpoint, \(3,\) in the model\n"
        r".*MODEL\.WEIGHTS_ALLOW_PARTIAL True",
    ):
        SafeCheckpointer(model()).load(str(path))
    target = model()
    SafeCheckpointer(target, allow_partial=True).load(str(path))
    assert torch.equal(target[0].weight, source[0].weight)


def test_nothing_matching_is_refused(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"model": {"encoder.weight": torch.zeros(2)}}, path)
    with pytest.raises(
        CheckpointError,
        match=r"no weight of the checkpoint matches the model \(its keys look like: encoder\.weight\)",
    ):
        SafeCheckpointer(model()).load(str(path))


def test_only_buffers_matching_is_refused(tmp_path):
    """BN step counters (and pixel_mean/std) say nothing about the weights: a checkpoint
    that matches the model only there loads nothing."""
    target = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    before = {k: v.clone() for k, v in target.state_dict().items()}
    path = tmp_path / "counters.pth"
    torch.save({"1.num_batches_tracked": torch.tensor(7), "encoder.weight": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match=r"no weight of the checkpoint matches the model"):
        SafeCheckpointer(target).load(str(path))
    weights = {k: v for k, v in target.state_dict().items() if not k.endswith("batches_tracked")}
    assert all(torch.equal(v, before[k]) for k, v in weights.items())


def test_backbone_only_checkpoint_loads_without_its_missing_heads(tmp_path):
    path = tmp_path / "backbone.pkl"
    source = model()
    first_layer = {f"0.{k}": v.numpy() for k, v in source[0].state_dict().items()}
    path.write_bytes(
        pickle.dumps({"model": first_layer, "__author__": "test", "matching_heuristics": True})
    )
    target = model()
    SafeCheckpointer(target).load(str(path))
    assert torch.equal(target[0].weight, source[0].weight)


def test_crash_while_saving_leaves_last_checkpoint_on_the_previous_complete_file(
    tmp_path, monkeypatch
):
    checkpointer = SafeCheckpointer(model(), str(tmp_path))
    checkpointer.save("model_0000001")
    saved = {k: v.clone() for k, v in checkpointer.model.state_dict().items()}
    real_save = torch.save

    def crash_half_way(obj, f):
        real_save(obj, f)
        f.truncate(f.tell() // 2)
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash_half_way)
    with pytest.raises(CheckpointError, match=r"model_0000002\.pth: disk full"):
        checkpointer.save("model_0000002")
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000001.pth"]
    assert checkpointer.get_checkpoint_file() == str(tmp_path / "model_0000001.pth")
    fresh = model()
    SafeCheckpointer(fresh, str(tmp_path)).resume_or_load("", resume=True)
    assert all(torch.equal(v, saved[k]) for k, v in fresh.state_dict().items())
