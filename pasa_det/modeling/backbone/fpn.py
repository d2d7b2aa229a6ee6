"""Anti-aliased ResNet-FPN, as Mask R-CNN's (P2-P6) and RetinaNet's (P3-P7) backbones."""

from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone.fpn import (
    build_resnet_fpn_backbone,
    build_retinanet_resnet_fpn_backbone,
)

from pasa_det.config.antialias import antialias_from_cfg, keys_named_in_errors

from .blocks import AntiAliasedLastLevel
from .resnet import antialias_resnet


@BACKBONE_REGISTRY.register()
def build_resnet_pasa_fpn_backbone(cfg, input_shape):
    """detectron2's `build_resnet_fpn_backbone` with an anti-aliased bottom-up
    ResNet and, with `MODEL.ANTIALIAS.FPN_TOP`, P6 filtered from P5."""
    antialias = antialias_from_cfg(cfg)
    fpn = build_resnet_fpn_backbone(cfg, input_shape)
    with keys_named_in_errors():
        antialias_resnet(fpn.bottom_up, antialias)
        if antialias.kind != "none" and cfg.MODEL.ANTIALIAS.FPN_TOP:
            aa = antialias.filter(cfg.MODEL.FPN.OUT_CHANNELS, "the FPN top block (P6)")
            fpn.top_block = AntiAliasedLastLevel(aa, fpn.top_block.in_feature)
    return fpn


@BACKBONE_REGISTRY.register()
def build_retinanet_resnet_pasa_fpn_backbone(cfg, input_shape):
    """detectron2's `build_retinanet_resnet_fpn_backbone` (P6 and P7 by strided 3x3
    convolutions from res5, kept as they are) with an anti-aliased bottom-up ResNet."""
    if cfg.MODEL.ANTIALIAS.FPN_TOP:
        raise ValueError(
            "MODEL.ANTIALIAS.FPN_TOP filters the P6 max-pool of Mask R-CNN's FPN; RetinaNet's "
            "P6 and P7 are strided convolutions, kept as detectron2's: set FPN_TOP False"
        )
    antialias = antialias_from_cfg(cfg)
    fpn = build_retinanet_resnet_fpn_backbone(cfg, input_shape)
    with keys_named_in_errors():
        antialias_resnet(fpn.bottom_up, antialias)
    return fpn
