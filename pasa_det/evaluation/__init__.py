"""Evaluators."""

from .checks import check_evaluation_data
from .cityscapes import CityscapesInstanceEvaluator
from .coco import CheckedCOCOEvaluator
from .export import json_ready
from .sem_seg import SemSegEvaluator, scores_from_confusion
from .shift_consistency import (
    InstanceShiftConsistency,
    SemSegShiftConsistency,
    build_shift_consistency_evaluator,
)

__all__ = [
    "check_evaluation_data",
    "json_ready",
    "CheckedCOCOEvaluator",
    "CityscapesInstanceEvaluator",
    "SemSegEvaluator",
    "scores_from_confusion",
    "InstanceShiftConsistency",
    "SemSegShiftConsistency",
    "build_shift_consistency_evaluator",
]
