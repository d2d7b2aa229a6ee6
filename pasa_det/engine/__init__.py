"""Training and process launching."""

from .interrupt import TrainingInterrupted
from .launch import JobFailed, launch
from .trainer import NonFiniteLossError, Trainer, setup_cfg

__all__ = [
    "JobFailed",
    "NonFiniteLossError",
    "Trainer",
    "TrainingInterrupted",
    "launch",
    "setup_cfg",
]
