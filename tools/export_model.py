#!/usr/bin/env python
"""Export a model to TorchScript or ONNX by tracing, and check the written file against
the eager model on a sample image (detectron2's tools/deploy/export_model.py conventions).

    python tools/export_model.py --config-file configs/…yaml --format torchscript \
        --export-method tracing --output out/ [--sample-image img.jpg] MODEL.WEIGHTS model.pth

Writes out/model.ts or out/model.onnx, runs it (torch.jit.load; onnxruntime) on the
sample, resized as for testing, and prints the largest absolute difference from the
eager model over all outputs. Without --sample-image the sample is one generated image
of the embedded synthetic set's kind, from a fixed seed. Without MODEL.WEIGHTS the model
is randomly initialised (it exports and compares the same way). Bad input ends with one
"error: …" line.
"""

import argparse
import sys

from detectron2.utils.logger import setup_logger

from pasa_det.checkpoint import CheckpointError
from pasa_det.config import ConfigError, load_config
from pasa_det.export import FORMATS, ExportError, export_model


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--format", required=True, help=f"one of {', '.join(FORMATS)}")
    parser.add_argument("--export-method", default="tracing", help="tracing, the one method here")
    parser.add_argument("--output", required=True, help="directory for the exported model")
    parser.add_argument("--sample-image", help="image to trace and check on")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE …")
    args = parser.parse_args(argv)
    setup_logger(name="pasa_det")
    try:
        if args.export_method != "tracing":
            raise ExportError(
                f"--export-method {args.export_method!r}: only tracing exports these models "
                "(detectron2's scripting needs its own model code; caffe2 is gone from torch)"
            )
        cfg = load_config(args.config_file, args.opts)
        cfg.freeze()
        result = export_model(cfg, args.format, args.output, args.sample_image)
    except (ConfigError, CheckpointError, ExportError) as e:
        sys.exit(f"error: {e}")
    print(
        f"wrote {result.path}; on the {result.image_shape[1]}x{result.image_shape[2]} sample its "
        f"{result.outputs} outputs differ from the eager model's by at most {result.max_abs_diff:.3g}"
        + ("; the model is UNTRAINED (MODEL.WEIGHTS is empty)" if not cfg.MODEL.WEIGHTS else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
