"""Training and process launching."""

from pasa_det.checkpoint import CheckpointError
from pasa_det.config import ConfigError
from pasa_det.data.checks import DatasetError
from pasa_det.evaluation.headline_metrics import EvaluationFailed

from .interrupt import EvaluationInterrupted, StoppedBySignal, TrainingInterrupted
from .launch import JobFailed, launch
from .trainer import NonFiniteLossError, Trainer, setup_cfg

# What a tool reports in one line ("error: …") instead of a traceback: the message says
# which key, file or setting to change.
USER_ERRORS = (ConfigError, DatasetError, CheckpointError, NonFiniteLossError, EvaluationFailed)

__all__ = [
    "EvaluationInterrupted",
    "JobFailed",
    "NonFiniteLossError",
    "StoppedBySignal",
    "Trainer",
    "TrainingInterrupted",
    "USER_ERRORS",
    "launch",
    "setup_cfg",
]
