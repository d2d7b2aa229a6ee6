"""Evaluators."""

from .cityscapes import CityscapesInstanceEvaluator
from .export import json_ready
from .sem_seg import SemSegEvaluator, scores_from_confusion
from .shift_consistency import (
    InstanceShiftConsistency,
    SemSegShiftConsistency,
    build_shift_consistency_evaluator,
)

__all__ = [
    "json_ready",
    "CityscapesInstanceEvaluator",
    "SemSegEvaluator",
    "scores_from_confusion",
    "InstanceShiftConsistency",
    "SemSegShiftConsistency",
    "build_shift_consistency_evaluator",
]
