"""tools/convert_pretrained.py on checkpoints built here in the published layouts."""

import os
import pickle

import pytest
import torch
import torch.nn.functional as F
import torchvision
from detectron2.config import get_cfg
from detectron2.layers import FrozenBatchNorm2d, ShapeSpec
from detectron2.modeling import build_model
from torch import nn

from pasa_det import add_pasa_config
from pasa_det.checkpoint import (
    CheckpointFormatError,
    SafeCheckpointer,
    convert_resnet,
    load_source,
    save_detectron2_checkpoint,
)
from pasa_det.config import load_config
from pasa_det.layers import PASA, binomial_kernel
from pasa_det.modeling import build_resnet_pasa_backbone
from tests.helpers.paths import CONFIGS, ROOT
from tests.helpers.reference_pasa import PublishedPASA, randomize_norms_
from tests.helpers.scripts import run_tool

TORCHVISION_WEIGHTS_BASE = os.path.join(ROOT, "configs", "Base-RCNN-FPN-Torchvision-Weights.yaml")


class PublishedLPF(nn.Module):
    """Zhang's layout: a fixed binomial `filt` buffer of shape (C, 1, k, k), saved in checkpoints."""

    def __init__(self, channels, kernel_size=3):
        super().__init__()
        self.register_buffer(
            "filt", binomial_kernel(kernel_size).expand(channels, 1, -1, -1).clone()
        )

    def forward(self, x):
        p = self.filt.shape[-1] // 2
        return F.conv2d(F.pad(x, (p,) * 4, mode="reflect"), self.filt, stride=2, groups=x.shape[1])


class TrainingArgs:
    """Stands for the argparse namespaces some training scripts pickle with their weights."""


def antialiased_torchvision_resnet(depth, make_filter):
    """A torchvision ResNet with filters where the PASA authors put them."""
    model = getattr(torchvision.models, f"resnet{depth}")(weights=None)
    model.maxpool = nn.Sequential(nn.MaxPool2d(kernel_size=2, stride=1), make_filter(64))
    for layer in (model.layer2, model.layer3, model.layer4):
        block = layer[0]
        if hasattr(block, "conv3"):  # bottleneck: filter before conv3
            block.conv2.stride = (1, 1)
            block.conv3 = nn.Sequential(make_filter(block.conv2.out_channels), block.conv3)
        else:  # basic block: filter before conv2
            block.conv1.stride = (1, 1)
            block.conv2 = nn.Sequential(make_filter(block.conv1.out_channels), block.conv2)
        conv, bn = block.downsample
        conv.stride = (1, 1)
        block.downsample = nn.Sequential(make_filter(conv.in_channels), conv, bn)
    return model


def calibrated(model, seed=0):
    """Random BN affine parameters, and running statistics from real forward
    passes so that activations stay O(1) through the whole network."""
    randomize_norms_(model, seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 3, 128, 128))
    return model.eval()


def torchvision_stages(model, x):
    x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    outs = {}
    for i, layer in enumerate((model.layer1, model.layer2, model.layer3, model.layer4)):
        x = layer(x)
        outs[f"res{i + 2}"] = x
    return outs


def backbone_cfg(aa_type, depth, **antialias):
    cfg = get_cfg()
    add_pasa_config(cfg)
    cfg.merge_from_file(TORCHVISION_WEIGHTS_BASE)
    cfg.MODEL.RESNETS.DEPTH = depth
    if depth < 50:
        cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.ANTIALIAS.TYPE = aa_type
    cfg.MODEL.ANTIALIAS.SOFTMAX = "joint"  # what the authors' weights were trained with
    for key, value in antialias.items():
        cfg.MODEL.ANTIALIAS[key] = value
    return cfg


class ReportingCheckpointer(SafeCheckpointer):
    """The loader MODEL.WEIGHTS goes through, keeping its report of incompatible keys."""

    def _load_model(self, checkpoint):
        self.report = super()._load_model(checkpoint)
        return self.report


def load_with_report(model, path):
    checkpointer = ReportingCheckpointer(model)
    checkpointer.load(path)
    return checkpointer.report


def save_as_authors(model, path):
    torch.save(
        {
            "epoch": 90,
            "arch": "resnet",
            "state_dict": {"module." + k: v for k, v in model.state_dict().items()},
        },
        path,
    )


def assert_same_stages(model, backbone):
    """res2..res5 equal layer1..layer4 in eval mode. Compared in float64: activations
    reach ~1e2 in these random networks, where float32 rounding alone exceeds 1e-4."""
    x = torch.randn(2, 3, 224, 224, dtype=torch.float64)
    with torch.no_grad():
        expected = torchvision_stages(model.double().eval(), x)
        got = backbone.double().eval()(x)
    for name in ("res2", "res3", "res4", "res5"):
        assert expected[name].abs().max() > 1  # not a degenerate network
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=1e-4, msg=name)


def assert_loads_and_matches(model, converted_path, aa_type, depth):
    """The converted file loads into the matching backbone with no missing,
    unexpected or misshapen key, and reproduces the source model's stages."""
    backbone = build_resnet_pasa_backbone(backbone_cfg(aa_type, depth), ShapeSpec(channels=3))
    report = load_with_report(backbone, converted_path)
    assert (
        report.missing_keys == [] and report.unexpected_keys == [] and report.incorrect_shapes == []
    )
    assert_same_stages(model, backbone)


def test_authors_pasa_resnet50_converts_and_matches(tmp_path):
    model = calibrated(antialiased_torchvision_resnet(50, PublishedPASA))
    source = tmp_path / "resnet50_k3_pasa_group8_softmax.pth"
    save_as_authors(model, source)
    output = tmp_path / "R-50-pasa.pkl"
    run = run_tool("convert_pretrained.py", source, output)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "maxpool.1.conv.weight -> stem.aa.conv.weight" in run.stdout
    assert "layer2.0.conv3.0.bn.running_var -> res3.0.aa.norm.running_var" in run.stdout
    assert "layer2.0.downsample.1.weight -> res3.0.shortcut.weight" in run.stdout
    assert "dropped  fc.weight (ImageNet classifier)" in run.stdout
    assert (
        "MODEL.ANTIALIAS.TYPE pasa MODEL.ANTIALIAS.KERNEL_SIZE 3 MODEL.ANTIALIAS.GROUP 8"
        in run.stdout
    )
    with open(output, "rb") as f:
        assert pickle.load(f)["matching_heuristics"] is True
    assert_loads_and_matches(model, str(output), "pasa", 50)


def test_authors_lpf_resnet18_converts_and_matches(tmp_path):
    model = calibrated(antialiased_torchvision_resnet(18, PublishedLPF))
    source = tmp_path / "resnet18_lpf3.pth.tar"
    save_as_authors(model, source)
    conversion = convert_resnet(load_source(str(source)))
    assert conversion.dropped["maxpool.1.filt"].startswith("fixed LPF")
    assert conversion.suggested_config == {
        "MODEL.RESNETS.RES2_OUT_CHANNELS": 64,
        "MODEL.RESNETS.DEPTH": 18,
        "MODEL.ANTIALIAS.TYPE": "lpf",
        "MODEL.ANTIALIAS.KERNEL_SIZE": 3,
    }
    output = str(tmp_path / "R-18-lpf.pth")
    save_detectron2_checkpoint(conversion.model, output)
    assert_loads_and_matches(model, output, "lpf", 18)


def test_plain_torchvision_resnet_into_none_backbone(tmp_path):
    model = calibrated(torchvision.models.resnet50(weights=None), seed=1)
    source = tmp_path / "resnet50.pth"
    torch.save(model.state_dict(), source)
    conversion = convert_resnet(load_source(str(source)))
    output = str(tmp_path / "R-50-torchvision.pkl")
    save_detectron2_checkpoint(conversion.model, output)
    assert_loads_and_matches(model, output, "none", 50)


def test_converted_weights_load_into_whole_model_through_model_weights(tmp_path):
    model = calibrated(antialiased_torchvision_resnet(50, PublishedPASA))
    source = tmp_path / "pasa.pth"
    save_as_authors(model, source)
    output = str(tmp_path / "R-50-pasa.pkl")
    save_detectron2_checkpoint(convert_resnet(load_source(str(source))).model, output)

    cfg = backbone_cfg("pasa", 50)
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.BACKBONE.NAME = "build_resnet_pasa_fpn_backbone"
    cfg.MODEL.FPN.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.RPN.IN_FEATURES = ["p2", "p3", "p4", "p5", "p6"]
    cfg.MODEL.ROI_HEADS.IN_FEATURES = ["p2", "p3", "p4", "p5"]
    cfg.MODEL.ROI_HEADS.NAME = "StandardROIHeads"
    cfg.MODEL.ROI_BOX_HEAD.NAME = "FastRCNNConvFCHead"
    cfg.MODEL.ROI_BOX_HEAD.NUM_FC = 2
    cfg.MODEL.WEIGHTS = output
    detector = build_model(cfg)
    report = load_with_report(detector, cfg.MODEL.WEIGHTS)
    assert report.unexpected_keys == []
    assert not [k for k in report.missing_keys if k.startswith("backbone.bottom_up.")]
    torch.testing.assert_close(
        detector.backbone.bottom_up.res4[0].aa.conv.weight, model.layer3[0].conv3[0].conv.weight
    )


def test_unreadable_and_mismatched_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_source(str(tmp_path / "missing.pth"))

    truncated = tmp_path / "truncated.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), truncated)
    truncated.write_bytes(truncated.read_bytes()[:1000])
    with pytest.raises(CheckpointFormatError, match="truncated.pth.*weights_only=True"):
        load_source(str(truncated))

    unsafe = tmp_path / "unsafe.pth"
    torch.save({"state_dict": {"conv1.weight": torch.zeros(1)}, "args": TrainingArgs()}, unsafe)
    with pytest.raises(CheckpointFormatError, match="unsafe.pth"):
        load_source(str(unsafe))

    detectron2_style = tmp_path / "model_final.pth"
    torch.save({"stem.conv1.weight": torch.zeros(64, 3, 7, 7)}, detectron2_style)
    with pytest.raises(CheckpointFormatError, match=r"model_final.pth: key 'stem.conv1.weight'"):
        convert_resnet(load_source(str(detectron2_style)), str(detectron2_style))

    bad_filter = antialiased_torchvision_resnet(18, PublishedLPF).state_dict()
    bad_filter["maxpool.1.filt"] = bad_filter["maxpool.1.filt"] * 2
    with pytest.raises(CheckpointFormatError, match="maxpool.1.filt"):
        convert_resnet(bad_filter, "lpf.pth")


def test_cli_reports_errors_without_traceback(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("not a checkpoint")
    run = run_tool("convert_pretrained.py", bad, tmp_path / "out.pkl")
    assert run.returncode != 0
    assert "notes.txt" in run.stderr and "Traceback" not in run.stderr


def test_authors_config_freezes_the_converted_logit_norm_as_the_authors_did(tmp_path):
    model = calibrated(antialiased_torchvision_resnet(50, PublishedPASA))
    source = tmp_path / "pasa.pth"
    save_as_authors(model, source)
    output = str(tmp_path / "R-50-pasa-k3.pkl")
    save_detectron2_checkpoint(convert_resnet(load_source(str(source))).model, output)
    config = os.path.join(
        CONFIGS, "COCO-InstanceSegmentation", "mask_rcnn_R_101_FPN_3x_pasa_k3_authors.yaml"
    )
    cfg = load_config(config, ["MODEL.RESNETS.DEPTH", "50", "MODEL.WEIGHTS", output])
    detector = build_model(cfg)
    SafeCheckpointer(detector).load(cfg.MODEL.WEIGHTS)
    aa = detector.backbone.bottom_up.res4[0].aa
    assert isinstance(aa.norm, FrozenBatchNorm2d) and list(aa.norm.parameters()) == []
    published = model.layer3[0].conv3[0].bn
    torch.testing.assert_close(aa.norm.running_var, published.running_var)
    torch.testing.assert_close(aa.norm.weight, published.weight.detach())
    # P6 is plain subsampling, as in the authors' detection code: no filter in the top block.
    assert not [m for m in detector.backbone.top_block.modules() if isinstance(m, PASA)]
