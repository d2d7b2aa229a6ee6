#!/usr/bin/env python
"""Show where a PASA model's predicted filters blur: per anti-aliasing site, the
normalised entropy of the filters over each image (1 = box blur, 0 = no blur),
per-group maps and the mean filter per group, plus a JSON of the numbers.

    python tools/visualize_filters.py --config-file configs/…yaml --input img.png 'more/*.jpg' \
        --output filters/ [--sites stem.aa,res4.0.aa] MODEL.WEIGHTS output/model_final.pth
"""

import argparse
import os
import sys

from detectron2.utils.logger import setup_logger

from pasa_det.analysis.filter_figures import visualize_filters
from pasa_det.analysis.filter_maps import UnknownSiteError
from pasa_det.checkpoint import CheckpointError
from pasa_det.config import ConfigError, load_config


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument(
        "--input", nargs="+", required=True, help="image files, glob patterns or directories"
    )
    parser.add_argument(
        "--output", required=True, help="directory for the figures and filters.json"
    )
    parser.add_argument(
        "--sites",
        action="extend",
        type=lambda v: [s for s in v.split(",") if s],
        metavar="NAME[,NAME…]",
        help="PASA modules to show, by full name or its end (stem.aa, res3.0.shortcut_aa, top_block.aa; "
        "aa: every main-path filter); default: all",
    )
    parser.add_argument("--alpha", type=float, default=0.5, help="opacity of the entropy overlay")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE …")
    args = parser.parse_args(argv)
    setup_logger(name="pasa_det")
    try:
        cfg = load_config(args.config_file, args.opts)
        cfg.freeze()
        result = visualize_filters(cfg, args.input, args.output, args.sites, args.alpha)
    except (ConfigError, CheckpointError, UnknownSiteError) as e:
        sys.exit(f"error: {e}")
    print(
        f"wrote figures for {len(result['images'])} images and {os.path.join(args.output, 'filters.json')}"
        + (f"; skipped {len(result['skipped'])} unreadable" if result["skipped"] else "")
    )
    return 0 if result["images"] or not result["skipped"] else 1


if __name__ == "__main__":
    sys.exit(main())
