"""Training (one loop, `Training`, behind the yacs `Trainer` and the LazyConfig route),
evaluation, process launching and how the tools end."""

from .command import USER_ERRORS, launch_tool, run_reporting_errors
from .interrupt import EvaluationInterrupted, StoppedBySignal, TrainingInterrupted
from .launch import JobFailed, launch
from .lazy import lazy_test, lazy_training
from .setup import setup_cfg, setup_lazy_cfg
from .step import NonFiniteLossError, TrainingStep
from .trainer import Trainer
from .training import Training

__all__ = [
    "EvaluationInterrupted",
    "JobFailed",
    "NonFiniteLossError",
    "StoppedBySignal",
    "Trainer",
    "Training",
    "TrainingInterrupted",
    "TrainingStep",
    "USER_ERRORS",
    "launch",
    "launch_tool",
    "lazy_test",
    "lazy_training",
    "run_reporting_errors",
    "setup_cfg",
    "setup_lazy_cfg",
]
