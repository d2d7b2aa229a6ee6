"""detectron2 glue: anti-aliased backbones, registered on import."""

from . import backbone
from .backbone import (
    AntiAlias,
    AntiAliasedResNet,
    AntiAliasError,
    antialias_resnet,
    build_resnet_pasa_backbone,
    build_resnet_pasa_deeplab_backbone,
    build_resnet_pasa_fpn_backbone,
    build_retinanet_resnet_pasa_fpn_backbone,
)

__all__ = [
    "AntiAlias",
    "AntiAliasedResNet",
    "AntiAliasError",
    "antialias_resnet",
    "backbone",
    "build_resnet_pasa_backbone",
    "build_resnet_pasa_fpn_backbone",
    "build_retinanet_resnet_pasa_fpn_backbone",
    "build_resnet_pasa_deeplab_backbone",
]
