"""Exporting whole models: TorchScript and ONNX by tracing, checked against eager."""

from .model import FORMATS, ExportError, ExportResult, export_model
from .tracing_adapter import tracing_adapter_class

__all__ = ["FORMATS", "ExportError", "ExportResult", "export_model", "tracing_adapter_class"]
