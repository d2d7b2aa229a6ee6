#!/usr/bin/env python
"""The main job: train PASA Mask R-CNN on the embedded synthetic set on the CPU, evaluate
COCO box and mask AP, save the metrics as JSON and draw predictions on validation images.

    python tools/quickstart.py [--config-file …] [KEY VALUE …]
"""

import hashlib
import json
import logging
import math
import os
import time

import torch
from detectron2.data import MetadataCatalog
from detectron2.engine import default_argument_parser
from detectron2.utils import comm

from pasa_det.analysis.environment import describe_run
from pasa_det.engine import Trainer, run_reporting_errors, setup_cfg
from pasa_det.engine.arguments import parse_args
from pasa_det.engine.demo import run_demo
from pasa_det.evaluation import json_ready

DEFAULT_CONFIG = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "configs",
    "Synthetic-InstanceSegmentation",
    "mask_rcnn_R_18_FPN_quick_pasa.yaml",
)
DEMO_IMAGES = 8
logger = logging.getLogger("pasa_det.quickstart")


def _weights_sha256(path: str) -> str:
    """Of the trained weights alone: equal hashes mean bit-identical training runs."""
    weights = torch.load(path, map_location="cpu", weights_only=True)["model"]
    digest = hashlib.sha256()
    for name in sorted(weights):
        digest.update(name.encode())
        digest.update(weights[name].contiguous().numpy().tobytes())
    return digest.hexdigest()


def main():
    parser = default_argument_parser()
    parser.set_defaults(config_file=DEFAULT_CONFIG)
    run_reporting_errors(run, parse_args(parser))


def coco_ap(results, task: str) -> dict:
    """The COCO metrics of `task`. A model that detects nothing has AP 0 (detectron2 reports
    NaN for boxes then, and no mask metrics at all)."""
    metrics = dict(results.get(task, {}))
    if not math.isfinite(metrics.get("AP", math.nan)):
        logger.warning(f"{task}: the model detected nothing in the test set; AP 0")
        metrics["AP"] = 0.0
    return metrics


def run(args):
    start = time.perf_counter()
    cfg = setup_cfg(args)
    environment = describe_run(cfg.MODEL.DEVICE)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    results = trainer.train()  # evaluates on DATASETS.TEST after the last iteration
    if not comm.is_main_process():
        return
    # NaN (e.g. APl: no large objects) is not JSON: written as null.
    metrics = json_ready({task: coco_ap(results, task) for task in ("bbox", "segm")})
    metrics_path = os.path.join(cfg.OUTPUT_DIR, "metrics_final.json")
    train_and_eval_minutes = (time.perf_counter() - start) / 60
    with open(metrics_path, "w") as f:
        report = {
            **metrics,
            "environment": environment,
            "iterations": cfg.SOLVER.MAX_ITER,
            "train_and_eval_minutes": train_and_eval_minutes,
            "weights_sha256": _weights_sha256(os.path.join(cfg.OUTPUT_DIR, "model_final.pth")),
        }
        json.dump(report, f, indent=2)

    demo_cfg = cfg.clone()
    demo_cfg.defrost()
    demo_cfg.MODEL.WEIGHTS = os.path.join(cfg.OUTPUT_DIR, "model_final.pth")
    image_root = MetadataCatalog.get(cfg.DATASETS.TEST[0]).image_root
    images = [os.path.join(image_root, n) for n in sorted(os.listdir(image_root))[:DEMO_IMAGES]]
    demo_dir = os.path.join(cfg.OUTPUT_DIR, "demo")
    run_demo(demo_cfg, images, demo_dir)

    minutes = (time.perf_counter() - start) / 60
    print(
        f"\nquickstart done in {minutes:.1f} min: box AP {metrics['bbox']['AP']:.1f}, "
        f"mask AP {metrics['segm']['AP']:.1f} on {cfg.DATASETS.TEST[0]}\n"
        f"  metrics:     {metrics_path}\n"
        f"  model:       {demo_cfg.MODEL.WEIGHTS}\n"
        f"  predictions: {demo_dir}/ ({len(images)} validation images)\n"
        f"  training log: {os.path.join(cfg.OUTPUT_DIR, 'log.txt')}, metrics.json, TensorBoard events"
    )


if __name__ == "__main__":
    main()
