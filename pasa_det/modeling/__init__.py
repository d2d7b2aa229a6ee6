"""detectron2 glue: registered anti-aliased backbones."""

from .backbone import (
    antialias_resnet,
    build_resnet_pasa_backbone,
    build_resnet_pasa_deeplab_backbone,
    build_resnet_pasa_fpn_backbone,
)

__all__ = [
    "antialias_resnet",
    "build_resnet_pasa_backbone",
    "build_resnet_pasa_fpn_backbone",
    "build_resnet_pasa_deeplab_backbone",
]
