"""Whole detectron2 models (PASA, LPF or plain backbones) to TorchScript or ONNX by
tracing through detectron2's `TracingAdapter`, then checked: the written file is run
on the sample image and compared with the eager model, output by output."""

import os
from dataclasses import dataclass
from typing import List, Optional

import numpy as np
import torch
from detectron2.data import transforms as T
from detectron2.data.detection_utils import read_image
from detectron2.modeling import GeneralizedRCNN, build_model

from pasa_det.checkpoint import load_checkpoint

from .tracing_adapter import tracing_adapter_class

FORMATS = ("torchscript", "onnx")
FILE_NAMES = {"torchscript": "model.ts", "onnx": "model.onnx"}
# The legacy exporter: TracingAdapter's flattening is made for torch.jit.trace. Opset 17,
# not detectron2's 11: PASA's channel groups (unflatten) need 13 or later.
ONNX_OPSET = 17
SAMPLE_SEED = 0


class ExportError(ValueError):
    """An export that cannot start: a missing sample image, an unknown format."""


@dataclass
class ExportResult:
    path: str
    image_shape: tuple  # (3, H, W) as the model saw it
    outputs: int  # tensors the flattened model returns
    max_abs_diff: float  # exported file against eager, over every output


def build_eval_model(cfg):
    """The config's model in eval mode, with MODEL.WEIGHTS loaded and checked when set
    (random weights otherwise, which export and compare just as well)."""
    model = build_model(cfg).eval()
    if cfg.MODEL.WEIGHTS:
        load_checkpoint(cfg, model)
    return model


def _generated_image(cfg) -> np.ndarray:
    """One image of the embedded synthetic set's kind (shapes on aliasing-prone
    textures), rendered from a fixed seed at the config's test size."""
    from pasa_det.data.synthetic_generator import render_image

    side = cfg.INPUT.MIN_SIZE_TEST
    rgb, _ = render_image(np.random.default_rng(SAMPLE_SEED), side, side)
    return rgb[:, :, ::-1] if cfg.INPUT.FORMAT == "BGR" else rgb


def sample_image(cfg, path: Optional[str] = None) -> torch.Tensor:
    """(3, H, W) float tensor as detectron2's predictor feeds the model: the image at
    `path` (or a generated one) in INPUT.FORMAT, resized for testing."""
    if path is None:
        image = _generated_image(cfg)
    elif not os.path.isfile(path):
        raise ExportError(f"--sample-image {path}: no such file")
    else:
        try:
            image = read_image(path, format=cfg.INPUT.FORMAT)
        except Exception as e:  # not an image PIL reads
            raise ExportError(f"--sample-image {path}: cannot be read as an image ({e})") from None
    resize = T.ResizeShortestEdge(
        [cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MIN_SIZE_TEST], cfg.INPUT.MAX_SIZE_TEST
    )
    resized = resize.get_transform(image).apply_image(image)
    return torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1)).astype("float32"))


def _detector_inference(model, inputs):
    """R-CNN inference without postprocessing (no resize to the input's size, masks
    kept as ROI masks): what traces; detectron2's export does the same."""
    return [{"instances": model.inference(inputs, do_postprocess=False)[0]}]


def traceable_model(model, image: torch.Tensor):
    """`model` on one image tensor, its outputs flattened to a tuple of tensors. In eval
    mode: a new module starts in training mode, and the ONNX exporter, which evaluates
    during export, restores that mode afterwards, the model's too."""
    inference = _detector_inference if isinstance(model, GeneralizedRCNN) else None
    return tracing_adapter_class()(model, [{"image": image}], inference).eval()


def write_exported(adapter, image: torch.Tensor, fmt: str, output_dir: str) -> str:
    """Trace `adapter` on `image` and write it as `fmt` (one of FORMATS) into output_dir."""
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, FILE_NAMES[fmt])
    with torch.no_grad():
        if fmt == "torchscript":
            torch.jit.save(torch.jit.trace(adapter, (image,), check_trace=False), path)
        else:
            torch.onnx.export(
                adapter,
                (image,),
                path,
                dynamo=False,
                opset_version=ONNX_OPSET,
                input_names=["image"],
                dynamic_axes={"image": {1: "height", 2: "width"}},
            )
    return path


def run_exported(path: str, fmt: str, image: torch.Tensor) -> List[torch.Tensor]:
    """The outputs of the file at `path` on `image`: TorchScript loaded with torch.jit,
    ONNX run in onnxruntime on the CPU."""
    if fmt == "torchscript":
        with torch.no_grad():
            return list(torch.jit.load(path)(image))
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return [torch.from_numpy(o) for o in session.run(None, {"image": image.numpy()})]


def largest_difference(got: List[torch.Tensor], expected: List[torch.Tensor]) -> float:
    """The largest absolute difference over all outputs (infinite where their number,
    shape or dtype kind differ: the export then computes something else)."""
    if len(got) != len(expected):
        return float("inf")
    worst = 0.0
    for g, e in zip(got, expected):
        if g.shape != e.shape or g.dtype.is_floating_point != e.dtype.is_floating_point:
            return float("inf")
        if e.numel():
            worst = max(worst, (g.double() - e.double()).abs().max().item())
    return worst


def export_model(
    cfg, fmt: str, output_dir: str, sample: Optional[str] = None, model=None
) -> ExportResult:
    """Export the config's model as `fmt` into output_dir and check the file on the
    sample image (`sample`, or a generated one) against the eager model."""
    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    image = sample_image(cfg, sample)
    model = build_eval_model(cfg) if model is None else model
    adapter = traceable_model(model, image)
    path = write_exported(adapter, image, fmt, output_dir)
    with torch.no_grad():
        expected = list(adapter(image))
    diff = largest_difference(run_exported(path, fmt, image), expected)
    return ExportResult(path, tuple(image.shape), len(expected), diff)
