"""Checkpoint conversion for pretrained ImageNet weights."""
from .pretrained import (
    CheckpointFormatError,
    Conversion,
    convert_resnet,
    load_source,
    save_detectron2_checkpoint,
)

__all__ = ["CheckpointFormatError", "Conversion", "convert_resnet", "load_source", "save_detectron2_checkpoint"]
