"""Anti-aliased detectron2 backbones; importing registers them in BACKBONE_REGISTRY."""

from .deeplab import build_resnet_pasa_deeplab_backbone
from .fpn import build_resnet_pasa_fpn_backbone
from .resnet import antialias_resnet, build_resnet_pasa_backbone

__all__ = [
    "antialias_resnet",
    "build_resnet_pasa_backbone",
    "build_resnet_pasa_fpn_backbone",
    "build_resnet_pasa_deeplab_backbone",
]
