#!/usr/bin/env python
"""Train the none, lpf and pasa variants of one config with the same seed and budget,
then compare accuracy, shift consistency, parameters, FLOPs and speed.

    python tools/compare_antialiasing.py \
        --config-file configs/Synthetic-InstanceSegmentation/mask_rcnn_R_18_FPN_quick_pasa.yaml \
        --output output/compare_instances [--variants none,pasa] [KEY VALUE …]

Writes OUTPUT/comparison.json and OUTPUT/comparison.md; each variant trains in OUTPUT/<variant>/.
"""

import argparse

from detectron2.utils.logger import setup_logger

from pasa_det.analysis.compare import TIMING_ROUNDS, VARIANTS, compare


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
        "--timing-rounds",
        type=int,
        default=TIMING_ROUNDS,
        help="interleaved timing rounds (medians)",
    )
    parser.add_argument(
        "opts", nargs=argparse.REMAINDER, help="config overrides for every variant: KEY VALUE …"
    )
    args = parser.parse_args(argv)
    variants = args.variants.split(",")
    if not variants or set(variants) - set(VARIANTS):
        parser.error(f"--variants must name some of {','.join(VARIANTS)}, got {args.variants!r}")
    setup_logger(args.output, name="detectron2")
    setup_logger(args.output, name="pasa_det")
    _, table = compare(args.config_file, args.output, variants, args.opts, args.timing_rounds)
    print(table)
    print(f"\nwritten: {args.output}/comparison.json, {args.output}/comparison.md")


if __name__ == "__main__":
    main()
