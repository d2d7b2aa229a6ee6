"""Anti-aliased ResNet-FPN."""

from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone.fpn import build_resnet_fpn_backbone

from .antialias import build_antialias_filter
from .blocks import AntiAliasedLastLevel
from .resnet import antialias_resnet


@BACKBONE_REGISTRY.register()
def build_resnet_pasa_fpn_backbone(cfg, input_shape):
    """detectron2's `build_resnet_fpn_backbone` with an anti-aliased bottom-up
    ResNet and, with `MODEL.ANTIALIAS.FPN_TOP`, P6 filtered from P5."""
    fpn = build_resnet_fpn_backbone(cfg, input_shape)
    antialias_resnet(fpn.bottom_up, cfg)
    if cfg.MODEL.ANTIALIAS.TYPE != "none" and cfg.MODEL.ANTIALIAS.FPN_TOP:
        aa = build_antialias_filter(cfg, cfg.MODEL.FPN.OUT_CHANNELS, "the FPN top block (P6)")
        fpn.top_block = AntiAliasedLastLevel(aa, fpn.top_block.in_feature)
    return fpn
