#!/usr/bin/env python
"""Parameters, FLOPs (fvcore, PASA's weighted sum and softmax included),
inference time per image and training time per iteration of Mask R-CNN R-50-FPN
and DeepLabV3+ R-103 with no filter, LPF and PASA, timed in one process.

Synthetic inputs: random images (boxes/masks or label maps for training). On
the CPU the default is a reduced size (320x544, batch 2) and BN for SyncBN;
on CUDA the full size 800x1344 (--height/--width set both models' input).

    python tools/benchmark_model.py --output results/cpu/model_benchmark.json
    python tools/benchmark_model.py --device cuda --height 800 --width 1344
"""

import argparse
import json
from pathlib import Path

import torch

from pasa_det.analysis.environment import describe_run
from pasa_det.analysis.model_benchmark import MODELS, benchmark_models
from pasa_det.config import ANTIALIAS_TYPES

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    cuda = torch.cuda.is_available()
    parser.add_argument("--device", default="cuda" if cuda else "cpu")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument(
        "--configs", type=Path, default=CONFIGS, help="the configs/ folder holding the models"
    )
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--height", type=int, help="default: 800 on CUDA, 320 on CPU")
    parser.add_argument("--width", type=int, help="default: 1344 on CUDA, 544 on CPU")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", help="JSON file for the results")
    args = parser.parse_args(argv)
    environment = describe_run(args.device)  # before the run: its commit is what ran
    on_cuda = args.device.startswith("cuda")
    height = args.height or (800 if on_cuda else 320)
    width = args.width or (1344 if on_cuda else 544)
    results = {}
    print(f"device={args.device} input={args.batch}x3x{height}x{width} repeats={args.repeats}")
    print(
        f"{'model':<24}{'aa':<6}{'params M':>9}{'GFLOPs':>8}{'x none':>7}{'infer s/img':>12}{'x none':>7}"
        f"{'train s/it':>11}{'x none':>7}  unsupported ops"
    )
    for key in args.models:
        results[key] = benchmark_models(
            key, args.batch, height, width, args.repeats, args.device, args.configs
        )
        for aa in ANTIALIAS_TYPES:
            r = results[key][aa]
            print(
                f"{key:<24}{aa:<6}{r['params'] / 1e6:9.2f}{r['flops'] / 1e9:8.1f}{r['flops_vs_none']:7.3f}"
                f"{r['inference_s_per_image']:12.3f}{r['inference_s_per_image_vs_none']:7.3f}"
                f"{r['train_s_per_iter']:11.3f}{r['train_s_per_iter_vs_none']:7.3f}  {sorted(r['unsupported_ops'])}"
            )
    if args.output:
        meta = {
            "device": args.device,
            "input": [args.batch, 3, height, width],
            "repeats": args.repeats,
        }
        report = {"environment": environment, "config": meta, "results": results}
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        with open(args.output, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
