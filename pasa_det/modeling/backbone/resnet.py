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

from pasa_det.config.antialias import AntiAlias, antialias_from_cfg, keys_named_in_errors

from .blocks import (
    AntiAliasedBasicBlock,
    AntiAliasedBasicStem,
    AntiAliasedBottleneckBlock,
    AntiAliasedDeepLabStem,
)

_STEMS = {BasicStem: AntiAliasedBasicStem, DeepLabStem: AntiAliasedDeepLabStem}
_BLOCKS = {BottleneckBlock: AntiAliasedBottleneckBlock, BasicBlock: AntiAliasedBasicBlock}


def _frozen(module) -> bool:
    return not any(p.requires_grad for p in module.parameters())


def _replace(module, replacements, antialias: AntiAlias, channels, site, **extra):
    """`module`'s anti-aliased version, frozen (with its filters) if `module` was."""
    try:
        cls = replacements[type(module)]
    except KeyError:
        raise ValueError(
            f"anti-aliasing kind {antialias.kind!r} cannot filter {site}: "
            f"{type(module).__name__} is not supported (only {[c.__name__ for c in replacements]}); "
            "use kind 'none' (MODEL.ANTIALIAS.TYPE none) or a plain block "
            "(e.g. MODEL.RESNETS.DEFORM_ON_PER_STAGE all False)"
        ) from None
    replaced = cls(module, antialias.filter(channels, site), **extra)
    return replaced.freeze() if _frozen(module) else replaced


def antialias_resnet(resnet: ResNet, antialias: AntiAlias) -> ResNet:
    """Move the stride of `resnet`'s stem pooling and of the first block of each stage in
    `antialias.stages` into anti-aliasing filters, in place.

    Stages without stride (res2, dilated stages) are left alone. A module that was frozen
    stays frozen with its filters; nothing else changes what is trained.
    """
    if antialias.kind == "none":
        return resnet
    if antialias.stem:
        resnet.stem = _replace(resnet.stem, _STEMS, antialias, resnet.stem.out_channels, "the stem")
    for name, stage in zip(resnet.stage_names, resnet.stages):
        block = stage[0]
        if name not in antialias.stages or block.stride == 1:
            continue
        shortcut_aa = None
        if antialias.shortcut and block.shortcut is not None:
            shortcut_aa = antialias.filter(block.in_channels, f"{name} shortcut")
        main_channels = (
            block.conv2.out_channels
            if isinstance(block, BottleneckBlock)
            else block.conv1.out_channels
        )
        stage[0] = _replace(block, _BLOCKS, antialias, main_channels, name, shortcut_aa=shortcut_aa)
    return resnet


class AntiAliasedResNet(ResNet):
    """detectron2's `ResNet(stem, stages, num_classes, out_features, freeze_at)` with
    `antialias` applied: what a LazyConfig instantiates, keeping ResNet's arguments (and
    so `${.bottom_up.out_features}` and `freeze_at`) where detectron2's configs have them."""

    def __init__(
        self,
        stem,
        stages,
        num_classes=None,
        out_features=None,
        freeze_at=0,
        antialias: AntiAlias = AntiAlias(),
    ):
        super().__init__(stem, stages, num_classes, out_features, freeze_at)
        antialias_resnet(self, antialias)


@BACKBONE_REGISTRY.register()
def build_resnet_pasa_backbone(cfg, input_shape):
    """detectron2's `build_resnet_backbone`, anti-aliased per `MODEL.ANTIALIAS`."""
    antialias = antialias_from_cfg(cfg)
    with keys_named_in_errors():
        return antialias_resnet(build_resnet_backbone(cfg, input_shape), antialias)
