#!/usr/bin/env python
"""Train the none, lpf and pasa variants of one config with the same budget under N
seeds (SEED 0 … N-1, each shared by the variants), then compare accuracy and shift
consistency (mean ± std over seeds), parameters, FLOPs and speed.

    python tools/compare_antialiasing.py \
        --config-file configs/Synthetic-InstanceSegmentation/mask_rcnn_R_18_FPN_quick_pasa.yaml \
        --output output/compare_instances --seeds 3 [--variants none,pasa] [KEY VALUE …]

Writes OUTPUT/comparison.json and OUTPUT/comparison.md, and the pictures
OUTPUT/shift_curves.png (each shift metric against the shift distance, mean ± std over
seeds) and OUTPUT/shift_strip.png and .gif (the first test image's predictions under
shifts of 0-8 px, the variants side by side); each run trains in
OUTPUT/seed<S>/<variant>/. Run again with the same arguments to continue an interrupted
comparison: finished runs are read, not repeated.
"""

import argparse
import sys

from detectron2.utils.logger import setup_logger

from pasa_det.analysis.compare import TIMING_ROUNDS, VARIANTS, compare, redraw_figures
from pasa_det.engine import USER_ERRORS, StoppedBySignal


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument(
        "--output", required=True, help="folder for the tables and the variants' training runs"
    )
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help="comma-separated subset of none,lpf,pasa"
    )
    parser.add_argument(
        "--seeds", type=int, default=1, help="train every variant under SEED 0 … N-1"
    )
    parser.add_argument(
        "--timing-rounds",
        type=int,
        default=TIMING_ROUNDS,
        help="interleaved timing rounds (medians)",
    )
    parser.add_argument(
        "--figures-only",
        action="store_true",
        help="redraw the pictures of a finished comparison in OUTPUT (no training, scoring or timing)",
    )
    parser.add_argument(
        "opts", nargs=argparse.REMAINDER, help="config overrides for every variant: KEY VALUE …"
    )
    args = parser.parse_args(argv)
    variants = args.variants.split(",")
    if not variants or set(variants) - set(VARIANTS):
        parser.error(f"--variants must name some of {','.join(VARIANTS)}, got {args.variants!r}")
    if args.seeds < 1:
        parser.error(f"--seeds must be at least 1, got {args.seeds}")
    setup_logger(args.output, name="detectron2")
    setup_logger(args.output, name="pasa_det")
    seeds = list(range(args.seeds))
    if args.figures_only:
        for path in redraw_figures(args.config_file, args.output, args.opts):
            print(f"written: {path}")
        return
    try:
        _, table = compare(
            args.config_file, args.output, variants, args.opts, args.timing_rounds, seeds
        )
    except USER_ERRORS as e:
        sys.exit(f"error: {e}")
    except StoppedBySignal as e:
        print(
            f"{e.what_happened}; run the same command again to continue the comparison",
            file=sys.stderr,
        )
        sys.exit(128 + e.signum)
    print(table)
    print(
        f"\nwritten: {args.output}/comparison.json, {args.output}/comparison.md, "
        f"{args.output}/shift_curves.png, {args.output}/shift_strip.png and .gif"
    )


if __name__ == "__main__":
    main()
