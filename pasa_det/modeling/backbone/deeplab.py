"""Anti-aliased DeepLab ResNet (deep stem, multi-grid, dilated res5)."""

from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.projects.deeplab.resnet import build_resnet_deeplab_backbone

from pasa_det.config.antialias import antialias_from_cfg, keys_named_in_errors

from .resnet import antialias_resnet


@BACKBONE_REGISTRY.register()
def build_resnet_pasa_deeplab_backbone(cfg, input_shape):
    """`detectron2.projects.deeplab`'s ResNet, anti-aliased per `MODEL.ANTIALIAS`.
    Needs `add_deeplab_config(cfg)` as the plain DeepLab backbone does."""
    antialias = antialias_from_cfg(cfg)
    with keys_named_in_errors():
        return antialias_resnet(build_resnet_deeplab_backbone(cfg, input_shape), antialias)
