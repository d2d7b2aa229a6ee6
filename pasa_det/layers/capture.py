"""Whether the ops being run are also being recorded into a graph, which decides the
form PASA and the padded convolution take."""

import torch


def portable_trace() -> bool:
    """torch.jit.trace or an ONNX export (either exporter): the graph must hold standard
    torch ops only, so that it runs without pasa_det (TorchScript, onnxruntime)."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


def capturing() -> bool:
    """Any graph capture, dynamo's (torch.compile, torch.export) included: these derive
    gradients themselves and trace with symbolic sizes, so the eager-only forms
    (autograd Functions with hand-written backwards, index tables) stay out."""
    return portable_trace() or torch.compiler.is_compiling()
