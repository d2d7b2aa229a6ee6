#!/usr/bin/env python
"""Time a backbone with each filter (none, LPF, PASA) eager and under torch.compile, in
one process: inference (no_grad forward) and a training step (forward and backward),
median seconds over interleaved repeats, with each run's ratio to the same filter's eager
run and to the plain backbone's eager run in this process.

Two compiled modes are timed: inductor's defaults ("compiled"), and the same with
inductor's layout optimization off ("compiled_no_layout_opt"). On the CPU that
optimization converts convolution activations to channels-last and back, which costs the
training step more than it saves (see docs/PERFORMANCE.md).

The backbone is the quick config's (R-18-FPN) unless --config-file names another.

    python tools/benchmark_compile.py --output results/cpu/compile_benchmark.json
"""

import argparse
import copy
import json
import sys
from pathlib import Path

import torch
from detectron2.modeling import build_backbone

from pasa_det.analysis.benchmark import interleaved_medians
from pasa_det.analysis.environment import describe_run
from pasa_det.config import load_config

CONFIG = (
    Path(__file__).resolve().parents[1]
    / "configs/Synthetic-InstanceSegmentation/mask_rcnn_R_18_FPN_quick_pasa.yaml"
)
AA_TYPES = ("none", "lpf", "pasa")
MODES = {
    "eager": lambda m: m,
    "compiled": torch.compile,
    "compiled_no_layout_opt": lambda m: torch.compile(m, options={"layout_optimization": False}),
}


def _steps(model, x):
    """(inference, training step) closures over `model` (eager or compiled) and `x`."""

    def infer():
        with torch.no_grad():
            model(x)

    def train():
        sum(f.sum() for f in model(x).values()).backward()

    return infer, train


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", default=str(CONFIG))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, nargs=2, default=[160, 160], metavar=("H", "W"))
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--output", help="JSON file for the measurements")
    args = parser.parse_args(argv)
    environment = describe_run(args.device)
    x = torch.randn(args.batch, 3, *args.size, device=args.device)
    infer, train = {}, {}
    for aa in AA_TYPES:
        cfg = load_config(
            args.config_file, ["MODEL.ANTIALIAS.TYPE", aa, "MODEL.DEVICE", args.device]
        )
        torch.manual_seed(0)
        eval_model = build_backbone(cfg).to(args.device).eval()
        train_model = copy.deepcopy(eval_model).train()
        for mode, wrap in MODES.items():  # a copy per mode: no compiled code is shared
            infer[f"{aa}/{mode}"] = _steps(wrap(copy.deepcopy(eval_model)), x)[0]
            train[f"{aa}/{mode}"] = _steps(wrap(copy.deepcopy(train_model)), x)[1]
    # Two warm-up rounds: the first compiles (per mode), the second runs the compiled code.
    times = {
        "inference": interleaved_medians(infer, args.repeats, args.device, warmup=2),
        "training_step": interleaved_medians(train, args.repeats, args.device, warmup=2),
    }
    records = []
    for step, medians in times.items():
        for aa in AA_TYPES:
            for mode in MODES:
                seconds = medians[f"{aa}/{mode}"]
                records.append(
                    {
                        "step": step,
                        "antialias": aa,
                        "mode": mode,
                        "seconds": seconds,
                        "vs_eager": seconds / medians[f"{aa}/eager"],
                        "vs_none_eager": seconds / medians["none/eager"],
                    }
                )
    result = {
        "environment": environment,
        "setup": {"config": Path(args.config_file).name, "input": [args.batch, 3, *args.size]},
        "records": records,
    }
    for r in records:
        print(
            f"{r['step']:>13} {r['antialias']:>4} {r['mode']:>22}: {r['seconds'] * 1e3:7.1f} ms "
            f"({r['vs_eager']:.2f}× eager, {r['vs_none_eager']:.2f}× none eager)"
        )
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
