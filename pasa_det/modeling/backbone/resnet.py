"""Anti-aliased ResNet: detectron2's ResNet with its strided modules swapped."""

from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone.resnet import (
    BasicBlock,
    BasicStem,
    BottleneckBlock,
    ResNet,
    build_resnet_backbone,
)
from detectron2.projects.deeplab.resnet import DeepLabStem

from pasa_det.config import check_antialias_config

from .antialias import build_antialias_filter
from .blocks import (
    AntiAliasedBasicBlock,
    AntiAliasedBasicStem,
    AntiAliasedBottleneckBlock,
    AntiAliasedDeepLabStem,
)

_STEMS = {BasicStem: AntiAliasedBasicStem, DeepLabStem: AntiAliasedDeepLabStem}
_BLOCKS = {BottleneckBlock: AntiAliasedBottleneckBlock, BasicBlock: AntiAliasedBasicBlock}


def _antialias_module(module, replacements, cfg, channels, site, **extra):
    try:
        cls = replacements[type(module)]
    except KeyError:
        raise ValueError(
            f"MODEL.ANTIALIAS.TYPE={cfg.MODEL.ANTIALIAS.TYPE!r} cannot filter {site}: "
            f"{type(module).__name__} is not supported (only {[c.__name__ for c in replacements]}); "
            "use MODEL.ANTIALIAS.TYPE none or a plain block (e.g. MODEL.RESNETS.DEFORM_ON_PER_STAGE all False)"
        ) from None
    return cls(module, build_antialias_filter(cfg, channels, site), **extra)


def antialias_resnet(resnet: ResNet, cfg) -> ResNet:
    """Move the stride of `resnet`'s stem pooling and of the first block of each
    stage in `MODEL.ANTIALIAS.STAGES` into anti-aliasing filters, in place.

    Stages without stride (res2, dilated stages) are left alone. Freezing is
    re-applied, so the filters of frozen stages are frozen too.
    """
    check_antialias_config(cfg)
    aa = cfg.MODEL.ANTIALIAS
    if aa.TYPE == "none":
        return resnet
    if aa.STEM:
        resnet.stem = _antialias_module(
            resnet.stem, _STEMS, cfg, resnet.stem.out_channels, "the stem"
        )
    for name, stage in zip(resnet.stage_names, resnet.stages):
        block = stage[0]
        if name not in aa.STAGES or block.stride == 1:
            continue
        shortcut_aa = None
        if aa.SHORTCUT and block.shortcut is not None:
            shortcut_aa = build_antialias_filter(cfg, block.in_channels, f"{name} shortcut")
        main_channels = (
            block.conv2.out_channels
            if isinstance(block, BottleneckBlock)
            else block.conv1.out_channels
        )
        stage[0] = _antialias_module(
            block, _BLOCKS, cfg, main_channels, f"{name}", shortcut_aa=shortcut_aa
        )
    return resnet.freeze(cfg.MODEL.BACKBONE.FREEZE_AT)


@BACKBONE_REGISTRY.register()
def build_resnet_pasa_backbone(cfg, input_shape):
    """detectron2's `build_resnet_backbone`, anti-aliased per `MODEL.ANTIALIAS`."""
    return antialias_resnet(build_resnet_backbone(cfg, input_shape), cfg)
