"""Anti-aliased detectron2 backbones from plain arguments (`AntiAlias`,
`antialias_resnet`, `AntiAliasedResNet`), and their yacs builders, registered in
BACKBONE_REGISTRY on import."""

from pasa_det.config.antialias import AntiAlias, AntiAliasError, antialias_from_cfg

from .blocks import AntiAliasedLastLevel
from .deeplab import build_resnet_pasa_deeplab_backbone
from .fpn import build_resnet_pasa_fpn_backbone, build_retinanet_resnet_pasa_fpn_backbone
from .resnet import AntiAliasedResNet, antialias_resnet, build_resnet_pasa_backbone

__all__ = [
    "AntiAlias",
    "AntiAliasError",
    "AntiAliasedLastLevel",
    "AntiAliasedResNet",
    "antialias_from_cfg",
    "antialias_resnet",
    "build_resnet_pasa_backbone",
    "build_resnet_pasa_fpn_backbone",
    "build_retinanet_resnet_pasa_fpn_backbone",
    "build_resnet_pasa_deeplab_backbone",
]
