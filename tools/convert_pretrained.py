#!/usr/bin/env python
"""Convert ImageNet ResNet weights (the PASA authors' or torchvision's) for detectron2.

    python tools/convert_pretrained.py resnet101_k3_pasa_group8_softmax.pth R-101-pasa-k3.pkl

Then train with MODEL.WEIGHTS R-101-pasa-k3.pkl and a config built on
configs/Base-RCNN-FPN-Torchvision-Weights.yaml (RGB input, ImageNet mean/std, stride in
the 3x3).
"""

import argparse
import sys

from pasa_det.checkpoint import (
    CheckpointFormatError,
    convert_resnet,
    load_source,
    save_detectron2_checkpoint,
)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("input", help="torchvision-layout checkpoint (.pth/.pth.tar)")
    parser.add_argument("output", help="detectron2 checkpoint to write (.pkl or .pth)")
    parser.add_argument(
        "--format",
        choices=["seed", "torchvision"],
        help="seed: the authors' {'state_dict': {'module.…'}} files; torchvision: a plain state dict "
        "(default: detected from the keys)",
    )
    args = parser.parse_args(argv)
    try:
        conversion = convert_resnet(load_source(args.input, args.format), args.input)
    except (CheckpointFormatError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
    for source, target in conversion.mapped.items():
        print(f"mapped   {source} -> {target}")
    for source, why in conversion.dropped.items():
        print(f"dropped  {source} ({why})")
    save_detectron2_checkpoint(conversion.model, args.output)
    print(f"\nwrote {len(conversion.model)} tensors to {args.output}")
    if conversion.suggested_config:
        print(
            "load it with: " + " ".join(f"{k} {v}" for k, v in conversion.suggested_config.items())
        )


if __name__ == "__main__":
    main()
