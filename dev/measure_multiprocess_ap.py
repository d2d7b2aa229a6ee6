#!/usr/bin/env python
"""The quickstart trained by 2 processes: the AP printed at the end of training, and the
AP of `--eval-only` of the model_final.pth it wrote, with 1 and with 2 processes. They
must be equal to the last printed digit (the norms' running statistics are the same in
every process). Writes results/cpu/multiprocess_ap.json (rendered in docs/RELIABILITY.md).

    python dev/measure_multiprocess_ap.py [--output output/multiprocess_ap]
"""

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from pasa_det.analysis.environment import describe_run  # noqa: E402
from pasa_det.analysis.printed_results import copypaste_results  # noqa: E402

CONFIG = "configs/Synthetic-InstanceSegmentation/mask_rcnn_R_18_FPN_quick_pasa.yaml"
TWO = ["--num-gpus", "2", "--dist-url", "auto"]


def train_net(*args):
    """The metrics `tools/train_net.py ARGS` printed, and its wall time."""
    start = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "tools/train_net.py", "--config-file", CONFIG, *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if run.returncode != 0:
        sys.exit(f"train_net {' '.join(map(str, args))} failed:\n{run.stderr[-3000:]}")
    results = copypaste_results(run.stdout + run.stderr)
    return {task: results[task] for task in ("bbox", "segm")}, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="output/multiprocess_ap")
    parser.add_argument("--result", default="results/cpu/multiprocess_ap.json")
    args = parser.parse_args()
    train_dir = os.path.join(args.output, "train")
    runs = []
    trained, seconds = train_net(*TWO, "OUTPUT_DIR", train_dir)
    runs.append({"run": "training, printed at its end", "processes": 2, "metrics": trained,
                 "minutes": seconds / 60})  # fmt: skip
    weights = os.path.join(train_dir, "model_final.pth")
    for processes in (1, 2):
        metrics, seconds = train_net(
            *(TWO if processes == 2 else []), "--eval-only", "MODEL.WEIGHTS", weights,
            "OUTPUT_DIR", os.path.join(args.output, f"eval{processes}"),
        )  # fmt: skip
        runs.append({"run": "--eval-only of its model_final.pth", "processes": processes,
                     "metrics": metrics, "minutes": seconds / 60})  # fmt: skip
    report = {
        "environment": describe_run("cpu"),
        "config": CONFIG,
        "runs": runs,
        "all_equal": all(r["metrics"] == trained for r in runs),
    }
    with open(os.path.join(ROOT, args.result), "w") as f:
        json.dump(report, f, indent=2)
    print(json.dumps({r["run"] + f" ({r['processes']})": r["metrics"]["segm"]["AP"] for r in runs}))
    print(f"written: {args.result}; all equal: {report['all_equal']}")


if __name__ == "__main__":
    main()
