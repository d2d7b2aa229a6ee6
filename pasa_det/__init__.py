"""Anti-aliased (PASA / LPF) backbones and tools for detectron2."""

try:
    import detectron2  # noqa: F401
except ImportError as e:
    raise ImportError(
        "pasa_det needs detectron2, which is not importable here "
        f"({e}). From the pasa_det checkout run `make setup` (it builds detectron2 0.6 "
        "from PyPI when none is installed), or install detectron2 yourself: "
        "https://detectron2.readthedocs.io/en/latest/tutorials/install.html"
    ) from e

from . import data, modeling  # noqa: F401  (registers datasets and backbones)
from .config import add_pasa_config

__version__ = "0.1.0"
__all__ = ["add_pasa_config"]
