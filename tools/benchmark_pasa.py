#!/usr/bin/env python
"""Time PASA at every anti-aliasing site of Mask R-CNN R-50-FPN against the
published full-resolution formulation, the LPF, plain subsampling and the
filter-logit convolution alone (the floor), in one process.

Input shapes come from the real backbone for a (batch, 3, 800*scale,
1344*scale) image batch. Eval forward and train forward+backward; median time
over interleaved repeats and peak memory. A full-size CPU run takes tens of
minutes (the published formulation is slow), so on the CPU --scale defaults to
0.5; on CUDA to 1.0.

    python tools/benchmark_pasa.py --output results/cpu/pasa_benchmark.json
    python tools/benchmark_pasa.py --device cuda --kernel-sizes 3 5 --repeats 10
"""

import argparse
import json
import math
import sys
from pathlib import Path

import torch

from pasa_det.analysis.benchmark import (
    add_site_memory,
    format_table,
    mask_rcnn_aa_sites,
    summarize,
    time_site,
)
from pasa_det.analysis.environment import describe_run

CONFIG = (
    Path(__file__).resolve().parents[1]
    / "configs/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x_pasa.yaml"
)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--config-file", default=str(CONFIG), help="PASA config whose backbone gives the sites"
    )
    parser.add_argument(
        "--sites", nargs="*", help="substrings of site names to keep (default: all)"
    )
    parser.add_argument("--kernel-sizes", nargs="+", type=int, default=[3, 5])
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument(
        "--scale", type=float, help="input side scale (default: 1.0 on CUDA, 0.5 on CPU)"
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", help="JSON file for all measurements and the summary")
    args = parser.parse_args(argv)
    environment = describe_run(args.device)  # before the run: its commit is what ran
    scale = args.scale or (1.0 if args.device.startswith("cuda") else 0.5)
    height, width = (
        32 * math.ceil(side * scale / 32) for side in (800, 1344)
    )  # FPN: multiples of 32
    sites = mask_rcnn_aa_sites(args.batch, height, width, args.config_file)
    if args.sites:
        sites = [s for s in sites if any(key in s["site"] for key in args.sites)]
    records = []
    for k in args.kernel_sizes:
        for site in sites:
            records.append(
                {
                    **site,
                    "kernel_size": k,
                    **time_site(site["shape"], k, args.group, args.repeats, args.device),
                }
            )
            print(f"timed {site['site']} k={k}", file=sys.stderr, flush=True)
    for record in records:  # last: measuring CPU memory changes malloc's settings
        add_site_memory(record, record["kernel_size"], args.group, args.device)
    summary = summarize(records)
    print(
        f"device={args.device} input={args.batch}x3x{height}x{width} group={args.group} repeats={args.repeats}"
    )
    print(format_table(records, summary))
    if args.output:
        meta = {
            "device": args.device,
            "input": [args.batch, 3, height, width],
            "group": args.group,
            "repeats": args.repeats,
        }
        report = {
            "environment": environment,
            "config": meta,
            "records": records,
            "summary": summary,
        }
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        with open(args.output, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
