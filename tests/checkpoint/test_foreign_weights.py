"""MODEL.WEIGHTS in another framework's layout is refused with the command that converts it,
never loaded as 0 tensors; converted ImageNet weights without PASA filters say how the
filters start."""

import logging
import os
import re

import pytest
import torch
import torchvision
from detectron2.modeling import build_model

from pasa_det.checkpoint import CheckpointError, SafeCheckpointer
from pasa_det.config import load_config
from pasa_det.layers import PASA
from tests.helpers.paths import QUICK_INSTANCE, ROOT
from tests.helpers.scripts import run_tool


@pytest.fixture(scope="module")
def quick_model():
    """The quick PASA Mask R-CNN R-18, untrained."""
    cfg = load_config(QUICK_INSTANCE, ["MODEL.DEVICE", "cpu"])
    return cfg, build_model(cfg)


def weights_of(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_unchanged(model, before):
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def refusal(model, path, **kwargs) -> str:
    with pytest.raises(CheckpointError) as refused:
        SafeCheckpointer(model, **kwargs).load(str(path))
    message = str(refused.value)
    assert "\n" not in message
    return message


def converter_command(message: str) -> list:
    """The `python tools/convert_pretrained.py IN OUT` the message tells to run, as arguments."""
    command = re.search(r"`python tools/convert_pretrained\.py (\S+) (\S+)`", message)
    assert command, message
    return list(command.groups())


def test_torchvision_resnet_is_refused_with_its_converter_command(tmp_path, quick_model):
    cfg, model = quick_model
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    before = weights_of(model)
    for allow_partial in (False, True):  # "" is the way to start from scratch
        message = refusal(model, path, allow_partial=allow_partial)
        assert_unchanged(model, before)
    assert message.startswith(f"{path} holds a torchvision/timm ResNet state dict")
    assert converter_command(message) == [str(path), str(tmp_path / "resnet18-detectron2.pkl")]
    assert "config built on configs/Base-RCNN-FPN-Torchvision-Weights.yaml" in message
    assert os.path.isfile(os.path.join(ROOT, "configs", "Base-RCNN-FPN-Torchvision-Weights.yaml"))


def test_authors_checkpoint_is_refused_and_the_told_command_converts_it(
    tmp_path, quick_model, caplog
):
    """The authors' {'state_dict': {'module.…'}} layout (here without filters, as an ImageNet
    ResNet without PASA); the converted file then trains, its PASA filters starting as
    MODEL.ANTIALIAS.INIT says."""
    cfg, model = quick_model
    path = tmp_path / "resnet18_authors.pth.tar"
    state = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(
        {
            "epoch": 90,
            "arch": "resnet18",
            "state_dict": {f"module.{k}": v for k, v in state.items()},
        },
        path,
    )
    before = weights_of(model)
    message = refusal(model, path)
    assert_unchanged(model, before)
    assert message.startswith(f"{path} holds an ImageNet checkpoint in the PASA authors' layout")

    source, converted = converter_command(message)
    run = run_tool("convert_pretrained.py", source, converted)
    assert run.returncode == 0, run.stderr[-2000:]
    log = logging.getLogger("pasa_det.checkpoint.loading")
    log.addHandler(caplog.handler)  # whatever pasa_det's own logger setup propagates
    try:
        with caplog.at_level(logging.INFO, logger=log.name):
            SafeCheckpointer.from_config(cfg, model).load(converted)
    finally:
        log.removeHandler(caplog.handler)
    torch.testing.assert_close(
        model.backbone.bottom_up.res2[0].conv1.weight, state["layer1.0.conv1.weight"]
    )
    pasa = tuple(f"{name}." for name, m in model.named_modules() if isinstance(m, PASA))
    filters = [k for k in model.state_dict() if k.startswith(pasa) and "batches" not in k]
    assert filters and all(torch.equal(model.state_dict()[k], before[k]) for k in filters)
    assert (
        f"The {len(filters)} PASA filter tensors the checkpoint lacks (e.g. "
        "backbone.bottom_up.res3.0.aa.conv.weight) are expected for ImageNet weights without PASA "
        "filters: they start as MODEL.ANTIALIAS.INIT lpf sets them" in caplog.text
    )
