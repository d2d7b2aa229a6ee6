"""Anti-aliasing operators in plain torch (no detectron2 imports)."""

from .binomial import binomial_kernel
from .lowpass import LowPassFilter
from .pasa import PASA

__all__ = ["PASA", "LowPassFilter", "binomial_kernel"]
