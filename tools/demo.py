#!/usr/bin/env python
"""Draw a trained model's predictions on images.

    python tools/demo.py --config-file configs/…yaml --input 'photos/*.jpg' img.png some_dir/ \
        --output out/ MODEL.WEIGHTS output/model_final.pth
"""

import argparse
import os
import re
import sys

from detectron2.utils.logger import setup_logger

from pasa_det.checkpoint import CheckpointError
from pasa_det.config import ConfigError, load_config
from pasa_det.data.checks import DatasetError
from pasa_det.engine.demo import DemoError, run_demo

CONFIG_KEY = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)+$")


def split_overrides(inputs):
    """--input takes every word after it, so `--input dir/ MODEL.WEIGHTS w.pth` would read
    the override as files: the first word shaped like a config key (and not a file)
    starts the KEY VALUE overrides."""
    for i, item in enumerate(inputs):
        if CONFIG_KEY.match(item) and not os.path.exists(item):
            return inputs[:i], inputs[i:]
    return inputs, []


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument(
        "--input", nargs="+", required=True, help="image files, glob patterns or directories"
    )
    parser.add_argument("--output", required=True, help="directory for the drawn images")
    parser.add_argument("--confidence-threshold", type=float, default=0.5)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE …")
    args = parser.parse_args(argv)
    args.input, overrides = split_overrides(args.input)
    args.opts = overrides + args.opts
    if not args.input:
        parser.error("--input names no image before the KEY VALUE overrides")
    setup_logger(name="pasa_det")
    setup_logger(name="detectron2")
    try:
        cfg = load_config(args.config_file, args.opts)
        cfg.freeze()
        written, skipped = run_demo(cfg, args.input, args.output, args.confidence_threshold)
    except (ConfigError, CheckpointError, DatasetError, DemoError) as e:
        sys.exit(f"error: {e}")
    if skipped and not written:
        sys.exit(
            f"error: no file --input gave could be read as an image ({skipped} skipped, each "
            "named in a warning above); give image files, or folders and patterns that hold them"
        )
    print(
        f"wrote {written} images to {args.output}"
        + (f"; skipped {skipped} unreadable" if skipped else "")
        + (
            "; drawn by an UNTRAINED model (MODEL.WEIGHTS is empty)"
            if not cfg.MODEL.WEIGHTS
            else ""
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
