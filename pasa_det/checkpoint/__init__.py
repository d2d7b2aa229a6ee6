"""Checkpoint conversion for pretrained ImageNet weights, and checked loading and saving."""

from .loading import CheckpointError, SafeCheckpointer, load_checkpoint
from .pretrained import (
    CheckpointFormatError,
    Conversion,
    convert_resnet,
    load_source,
    save_detectron2_checkpoint,
)

__all__ = [
    "CheckpointError",
    "SafeCheckpointer",
    "load_checkpoint",
    "CheckpointFormatError",
    "Conversion",
    "convert_resnet",
    "load_source",
    "save_detectron2_checkpoint",
]
