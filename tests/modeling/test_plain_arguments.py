"""Backbones from plain arguments (`AntiAlias`) are the ones the yacs builders make."""

import pytest
import torch
from detectron2.modeling.backbone import BasicStem, ResNet

from pasa_det.modeling import AntiAlias, AntiAliasedResNet, AntiAliasError, antialias_resnet
from tests.modeling.test_backbones import build, make_cfg, randomize_bn_stats_


@pytest.mark.parametrize("kind", ["none", "lpf", "pasa"])
def test_python_builds_the_yacs_backbone(kind):
    cfg = make_cfg("build_resnet_pasa_backbone", kind, 50, SOFTMAX="joint", KERNEL_SIZE=5)
    cfg.MODEL.BACKBONE.FREEZE_AT = 2
    yacs = randomize_bn_stats_(build(cfg)).eval()
    python = AntiAliasedResNet(
        stem=BasicStem(norm="BN"),
        stages=ResNet.make_default_stages(50, stride_in_1x1=True, norm="BN"),
        out_features=["res2", "res3", "res4", "res5"],
        freeze_at=2,
        antialias=AntiAlias(kind=kind, softmax="joint", kernel_size=5),
    ).eval()
    assert [type(m) for m in python.modules()][1:] == [type(m) for m in yacs.modules()][1:]
    assert [p.requires_grad for p in python.parameters()] == [
        p.requires_grad for p in yacs.parameters()
    ]
    python.load_state_dict(yacs.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for got, expected in zip(python(x).values(), yacs(x).values()):
            assert torch.equal(got, expected)


def test_none_leaves_detectron2s_resnet_untouched():
    resnet = ResNet(BasicStem(), ResNet.make_default_stages(18), out_features=["res5"])
    keys = list(resnet.state_dict())
    assert antialias_resnet(resnet, AntiAlias(kind="none")) is resnet
    assert list(resnet.state_dict()) == keys and type(resnet.stem) is BasicStem


@pytest.mark.parametrize(
    "values, field",
    [
        ({"kind": "blur"}, "kind"),
        ({"kernel_size": 4}, "kernel_size"),
        ({"group": 0}, "group"),
        ({"softmax": "pixel"}, "softmax"),
        ({"pad_mode": "mirror"}, "pad_mode"),
        ({"stages": ["res6"]}, "stages"),
        ({"norm": "LayerNorm"}, "norm"),
        ({"norm": "", "init": "lpf"}, "init"),
        ({"kind": "lpf", "kernel_size": 2}, "kernel_size"),
    ],
)
def test_a_bad_value_names_its_field(values, field):
    with pytest.raises(AntiAliasError) as error:
        AntiAlias(**values)
    assert error.value.field == field and str(error.value).startswith(field)


def test_a_group_that_does_not_divide_a_site_names_it():
    resnet = ResNet(BasicStem(), ResNet.make_default_stages(18), out_features=["res5"])
    with pytest.raises(
        AntiAliasError, match="group=48 must divide the 64 channels filtered at the stem"
    ):
        antialias_resnet(resnet, AntiAlias(group=48))


def test_checking_the_values_leaves_the_rng_that_initialises_the_model_alone():
    """The probe filter that checks the values is initialised at random too: a backbone
    built after it must get the weights it gets without the check."""
    state = torch.random.get_rng_state()
    AntiAlias(kind="pasa", kernel_size=5)
    assert torch.equal(torch.random.get_rng_state(), state)
