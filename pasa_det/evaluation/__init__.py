"""Evaluators."""
from .sem_seg import SemSegEvaluator, scores_from_confusion

__all__ = ["SemSegEvaluator", "scores_from_confusion"]
