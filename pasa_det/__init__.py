"""Anti-aliased (PASA / LPF) backbones and tools for detectron2.

`pasa_det.layers` (the operators) is plain torch and imports without detectron2; the rest
of the package needs it, and importing the package registers its datasets and backbones.
"""

__version__ = "0.1.0"
__all__ = ["add_pasa_config"]

try:
    import detectron2  # noqa: F401
except ImportError as e:
    _DETECTRON2_MISSING = ImportError(
        "pasa_det needs detectron2 for everything but pasa_det.layers, and it is not importable "
        f"here ({e}). From the pasa_det checkout run `make setup` (it installs detectron2 when "
        "none is), or install detectron2 yourself: "
        "https://detectron2.readthedocs.io/en/latest/tutorials/install.html"
    )
else:
    _DETECTRON2_MISSING = None
    from . import data, modeling  # noqa: F401  (registers datasets and backbones)
    from .config import add_pasa_config


def __getattr__(name):
    if _DETECTRON2_MISSING is not None and name in ("add_pasa_config", "data", "modeling"):
        raise _DETECTRON2_MISSING
    raise AttributeError(f"module 'pasa_det' has no attribute {name!r}")
