"""detectron2's `TracingAdapter` (flattens a model's dict/Instances inputs and outputs to
tensors for torch.jit.trace and the ONNX exporter), importable on every detectron2 route.

It lives in detectron2/export/flatten.py. On detectron2 main, `detectron2.export`
imports; on 0.6 from PyPI its package `__init__` imports caffe2 exports (gone from
torch), so the two files TracingAdapter needs are loaded from that folder under a
private package name, leaving `detectron2.export` itself untouched.
"""

import importlib.util
import os
import sys
import types

_PRIVATE = "pasa_det._detectron2_export"


def _load_without_package_init():
    spec = importlib.util.find_spec("detectron2")
    folder = os.path.join(os.path.dirname(spec.origin), "export")
    if _PRIVATE not in sys.modules:
        package = types.ModuleType(_PRIVATE)
        package.__path__ = [folder]  # submodules resolve there; no __init__ runs
        sys.modules[_PRIVATE] = package
    return importlib.import_module(f"{_PRIVATE}.flatten").TracingAdapter


def tracing_adapter_class():
    """`detectron2.export.TracingAdapter`, from the package where it imports."""
    try:
        from detectron2.export import TracingAdapter
    except ImportError:  # detectron2 0.6: `No module named 'caffe2'` from the package __init__
        return _load_without_package_init()
    return TracingAdapter
