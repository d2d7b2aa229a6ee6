"""Anti-aliased backbones against detectron2's own builders."""

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.layers import FrozenBatchNorm2d, ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, build_backbone, build_model
from detectron2.projects.deeplab import add_deeplab_config
from detectron2.structures import BitMasks, Boxes, Instances
from detectron2.utils.events import EventStorage

from pasa_det import add_pasa_config
from pasa_det.layers import PASA, LowPassFilter

BUILDERS = {  # ours -> detectron2's
    "build_resnet_pasa_backbone": "build_resnet_backbone",
    "build_resnet_pasa_fpn_backbone": "build_resnet_fpn_backbone",
    "build_resnet_pasa_deeplab_backbone": "build_resnet_deeplab_backbone",
    "build_retinanet_resnet_pasa_fpn_backbone": "build_retinanet_resnet_fpn_backbone",
}
STAGES = ["res2", "res3", "res4", "res5"]


def make_cfg(builder, aa_type="none", depth=50, **antialias):
    cfg = get_cfg()
    add_deeplab_config(cfg)
    add_pasa_config(cfg)
    cfg.MODEL.BACKBONE.NAME = builder
    cfg.MODEL.RESNETS.DEPTH = depth
    cfg.MODEL.RESNETS.OUT_FEATURES = list(STAGES)
    cfg.MODEL.FPN.IN_FEATURES = list(STAGES)
    cfg.MODEL.RESNETS.NORM = "BN"
    if depth < 50:
        cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    if "deeplab" in builder:
        cfg.MODEL.RESNETS.STEM_TYPE = "deeplab"
        cfg.MODEL.RESNETS.STEM_OUT_CHANNELS = 128
        cfg.MODEL.RESNETS.RES5_DILATION = 2
        cfg.MODEL.RESNETS.RES5_MULTI_GRID = [1, 2, 4]
    cfg.MODEL.ANTIALIAS.TYPE = aa_type
    for key, value in antialias.items():
        cfg.MODEL.ANTIALIAS[key] = value
    return cfg


def build(cfg):
    return BACKBONE_REGISTRY.get(cfg.MODEL.BACKBONE.NAME)(cfg, ShapeSpec(channels=3))


def randomize_bn_stats_(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model


CASES = [
    (b, d)
    for b in BUILDERS
    for d in ((18, 50) if "retinanet" in b else (18, 34, 50, 101, 152))
    if not ("deeplab" in b and d < 50)
]


@pytest.mark.parametrize("builder, depth", CASES)
def test_none_is_detectron2s_backbone(builder, depth):
    cfg = make_cfg(builder, "none", depth)
    ours = build(cfg).eval()
    d2_cfg = cfg.clone()
    d2_cfg.MODEL.BACKBONE.NAME = BUILDERS[builder]
    theirs = randomize_bn_stats_(build(d2_cfg)).eval()
    assert type(ours) is type(theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out_ours, out_theirs = ours(x), theirs(x)
    assert out_ours.keys() == out_theirs.keys()
    for name in out_ours:
        torch.testing.assert_close(out_ours[name], out_theirs[name], rtol=0, atol=0)


def _shapes(model, size):
    with torch.no_grad():
        return {k: tuple(v.shape) for k, v in model(torch.randn(1, 3, *size)).items()}


@pytest.mark.parametrize("aa_type", ["lpf", "pasa"])
@pytest.mark.parametrize(
    "builder, depth",
    [(b, d) for b in BUILDERS for d in (18, 50) if not ("deeplab" in b and d < 50)],
)
def test_antialiased_backbone_keeps_feature_names_channels_strides(builder, depth, aa_type):
    plain = build(make_cfg(builder, "none", depth)).eval()
    aa = build(make_cfg(builder, aa_type, depth)).eval()
    assert aa.output_shape() == plain.output_shape()
    # FPN needs sizes divisible by its coarsest stride (detectron2 pads images to it);
    # the ResNets take any size.
    sizes = [(64, 96), (32, 32)] if "fpn" in builder else [(64, 96), (67, 101), (33, 47)]
    for size in sizes:
        assert _shapes(aa, size) == _shapes(plain, size)
    # Every parameter of detectron2's backbone keeps its name; the filters are extra children.
    plain_keys, aa_keys = set(plain.state_dict()), set(aa.state_dict())
    assert plain_keys <= aa_keys
    extra = aa_keys - plain_keys
    assert all(".aa." in "." + k or "shortcut_aa." in k for k in extra)
    assert bool(extra) == (aa_type == "pasa")  # the LPF's fixed filter is not saved


def test_placement_matches_design():
    fpn = build(make_cfg("build_resnet_pasa_fpn_backbone", "pasa", 50, GROUP=8))
    resnet = fpn.bottom_up
    sites = {name: m.in_channels for name, m in fpn.named_modules() if isinstance(m, PASA)}
    assert sites == {
        "bottom_up.stem.aa": 64,
        "bottom_up.res3.0.aa": 128,
        "bottom_up.res3.0.shortcut_aa": 256,
        "bottom_up.res4.0.aa": 256,
        "bottom_up.res4.0.shortcut_aa": 512,
        "bottom_up.res5.0.aa": 512,
        "bottom_up.res5.0.shortcut_aa": 1024,
    }  # P6: plain subsampling by default, as the authors; FPN_TOP filters it too
    with_top = build(make_cfg("build_resnet_pasa_fpn_backbone", "pasa", 50, FPN_TOP=True))
    assert with_top.top_block.aa.in_channels == 256
    # The stride moved out of every convolution into the filters.
    for stage in ("res3", "res4", "res5"):
        block = getattr(resnet, stage)[0]
        assert [c.stride for c in (block.conv1, block.conv2, block.conv3, block.shortcut)] == [
            (1, 1)
        ] * 4
    assert resnet.stem.conv1.stride == (2, 2)


def test_basic_block_and_dilated_deeplab_placement():
    r18 = build(make_cfg("build_resnet_pasa_backbone", "lpf", 18))
    assert {n for n, m in r18.named_modules() if isinstance(m, LowPassFilter)} == {
        "stem.aa",
        "res3.0.aa",
        "res3.0.shortcut_aa",
        "res4.0.aa",
        "res4.0.shortcut_aa",
        "res5.0.aa",
        "res5.0.shortcut_aa",
    }
    deeplab = build(make_cfg("build_resnet_pasa_deeplab_backbone", "pasa", 50))
    sites = {n: m.in_channels for n, m in deeplab.named_modules() if isinstance(m, PASA)}
    # The deep stem is filtered; dilated res5 has no stride, hence no filter.
    assert sites == {
        "stem.aa": 128,
        "res3.0.aa": 128,
        "res3.0.shortcut_aa": 256,
        "res4.0.aa": 256,
        "res4.0.shortcut_aa": 512,
    }


def test_placement_switches():
    cfg = make_cfg(
        "build_resnet_pasa_fpn_backbone",
        "pasa",
        50,
        STEM=False,
        STAGES=["res4"],
        SHORTCUT=False,
        FPN_TOP=False,
    )
    fpn = build(cfg)
    assert {n for n, m in fpn.named_modules() if isinstance(m, PASA)} == {"bottom_up.res4.0.aa"}
    res4 = fpn.bottom_up.res4[0]
    assert res4.shortcut.stride == (2, 2)  # unfiltered shortcut keeps detectron2's strided 1x1
    assert _shapes(fpn, (64, 64)) == _shapes(
        build(make_cfg("build_resnet_pasa_fpn_backbone", "none", 50)), (64, 64)
    )


def test_freeze_at_freezes_filters_of_frozen_stages():
    cfg = make_cfg("build_resnet_pasa_backbone", "pasa", 50)
    cfg.MODEL.BACKBONE.FREEZE_AT = 3  # stem, res2, res3
    resnet = build(cfg)
    for name in ("stem.aa", "res3.0.aa", "res3.0.shortcut_aa"):
        module = resnet.get_submodule(name)
        assert isinstance(module.norm, FrozenBatchNorm2d), name
        assert not any(p.requires_grad for p in module.parameters()), name
    assert all(p.requires_grad for p in resnet.res4[0].aa.parameters())
    assert isinstance(resnet.res4[0].aa.norm, torch.nn.BatchNorm2d)


def test_model_with_pasa_fpn_runs_training_step_and_sizes_not_divisible():
    cfg = make_cfg("build_resnet_pasa_fpn_backbone", "pasa", 50)
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.META_ARCHITECTURE = "GeneralizedRCNN"
    cfg.MODEL.MASK_ON = True
    cfg.MODEL.RPN.IN_FEATURES = ["p2", "p3", "p4", "p5", "p6"]
    cfg.MODEL.ROI_HEADS.IN_FEATURES = ["p2", "p3", "p4", "p5"]
    cfg.MODEL.ROI_HEADS.NAME = "StandardROIHeads"
    cfg.MODEL.ROI_BOX_HEAD.NAME = "FastRCNNConvFCHead"
    cfg.MODEL.ROI_BOX_HEAD.NUM_FC = 2
    cfg.MODEL.ROI_MASK_HEAD.NAME = "MaskRCNNConvUpsampleHead"
    cfg.MODEL.ANCHOR_GENERATOR.SIZES = [[32], [64], [128], [256], [512]]
    model = build_model(cfg)
    inst = Instances(
        (75, 99), gt_boxes=Boxes(torch.tensor([[10.0, 10, 50, 60]])), gt_classes=torch.tensor([1])
    )
    mask = torch.zeros(1, 75, 99, dtype=torch.bool)
    mask[0, 10:60, 10:50] = True
    inst.gt_masks = BitMasks(mask)
    with EventStorage():
        losses = model([{"image": torch.rand(3, 75, 99) * 255, "instances": inst}])
    sum(losses.values()).backward()
    assert model.backbone.bottom_up.res3[0].aa.conv.weight.grad is not None
    assert model.backbone.bottom_up.stem.aa.conv.weight.grad is None  # frozen (FREEZE_AT 2)
    model.eval()
    with torch.no_grad():
        (out,) = model([{"image": torch.rand(3, 75, 99) * 255}])
    assert out["instances"].image_size == (75, 99)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("TYPE", "blur", "MODEL.ANTIALIAS.TYPE"),
        ("KERNEL_SIZE", 4, "MODEL.ANTIALIAS.KERNEL_SIZE"),
        ("GROUP", 48, "MODEL.ANTIALIAS.GROUP=48 must divide the 64 channels filtered at the stem"),
        ("GROUP", 0, "MODEL.ANTIALIAS.GROUP"),
        ("SOFTMAX", "pixel", "MODEL.ANTIALIAS.SOFTMAX"),
        ("PAD_MODE", "mirror", "MODEL.ANTIALIAS.PAD_MODE"),
        ("STAGES", ["res6"], "MODEL.ANTIALIAS.STAGES"),
        ("NORM", "GN", "MODEL.ANTIALIAS.NORM"),
        ("NORM", "LayerNorm", "MODEL.ANTIALIAS.NORM"),
    ],
)
def test_invalid_config_names_the_key(key, value, message):
    cfg = make_cfg("build_resnet_pasa_fpn_backbone", "pasa", 50, **{key: value})
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        build(cfg)


def test_deformable_blocks_are_refused_with_the_key():
    cfg = make_cfg("build_resnet_pasa_backbone", "pasa", 50)
    cfg.MODEL.RESNETS.DEFORM_ON_PER_STAGE = [False, True, False, False]
    with pytest.raises(ValueError, match="DEFORM_ON_PER_STAGE"):
        build(cfg)


def test_retinanet_backbone_gives_p3_to_p7_and_refuses_a_filtered_top():
    cfg = make_cfg("build_retinanet_resnet_pasa_fpn_backbone", "pasa", 18)
    cfg.MODEL.RESNETS.OUT_FEATURES = cfg.MODEL.FPN.IN_FEATURES = ["res3", "res4", "res5"]
    fpn = build(cfg)
    assert list(fpn.output_shape()) == ["p3", "p4", "p5", "p6", "p7"]
    assert isinstance(fpn.bottom_up.res3[0].aa, PASA)
    cfg.MODEL.ANTIALIAS.FPN_TOP = True
    with pytest.raises(ValueError, match="FPN_TOP"):
        build(cfg)


def test_builders_registered_via_build_backbone():
    cfg = make_cfg("build_resnet_pasa_backbone", "pasa", 18)
    assert isinstance(build_backbone(cfg).stem.aa, PASA)


@pytest.mark.parametrize("norm", ["BN", "FrozenBN"])
def test_fresh_pasa_backbone_computes_what_the_lpf_backbone_does(norm):
    """MODEL.ANTIALIAS.INIT lpf: before training, and with a checkpoint that holds no
    filters, a group-softmax PASA backbone is the LPF backbone."""
    lpf = randomize_bn_stats_(build(make_cfg("build_resnet_pasa_fpn_backbone", "lpf", 18)))
    pasa = build(make_cfg("build_resnet_pasa_fpn_backbone", "pasa", 18, SOFTMAX="group", NORM=norm))
    missing = pasa.load_state_dict(lpf.state_dict(), strict=False).missing_keys
    assert missing and all(".aa." in k or "_aa." in k for k in missing)  # the filters alone
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        for got, expected in zip(pasa.eval()(x).values(), lpf.eval()(x).values()):
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_random_init_keeps_the_published_start():
    pasa = build(make_cfg("build_resnet_pasa_backbone", "pasa", 18, INIT="random"))
    assert torch.equal(pasa.res3[0].aa.norm.weight, torch.ones(72))
