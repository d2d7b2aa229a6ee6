"""Anti-aliasing operators in plain torch (no detectron2 imports)."""

from .lowpass import LowPassFilter, binomial_kernel
from .pasa import PASA

__all__ = ["PASA", "LowPassFilter", "binomial_kernel"]
