#!/usr/bin/env python
"""Peak-RSS growth of evaluation and of the demo over many small generated images
(docs/RELIABILITY.md): neither should grow with the number of images beyond the
predictions evaluation must keep.

    nice python dev/measure_memory.py --eval-images 2000 --demo-images 1000
"""

import argparse
import json
import os
import resource
import sys
import tempfile

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(
    ROOT, "configs", "Synthetic-InstanceSegmentation", "mask_rcnn_R_18_FPN_quick_pasa.yaml"
)
OPTS = [
    "MODEL.WEIGHTS",
    "",
    "TEST.DETECTIONS_PER_IMAGE",
    "5",
    "INPUT.MIN_SIZE_TEST",
    "64",
    "INPUT.MAX_SIZE_TEST",
    "64",
    "DATALOADER.NUM_WORKERS",
    "0",
]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_images(folder, count):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
            os.path.join(folder, f"{i:05d}.png")
        )


class Sampler:
    """Peak RSS after 10%, 50% and 100% of `total` calls of `tick`."""

    def __init__(self, total):
        self.total, self.done, self.samples = total, 0, {}

    def tick(self):
        self.done += 1
        for fraction in (0.1, 0.5, 1.0):
            if self.done == max(1, int(self.total * fraction)):
                self.samples[f"{int(fraction * 100)}%"] = round(peak_rss_mib(), 1)
                print(
                    f"  {self.done}/{self.total} images: peak RSS {self.samples[f'{int(fraction * 100)}%']} MiB",
                    flush=True,
                )


def measure_eval(count, workdir):
    from detectron2.data.datasets import register_coco_instances
    from detectron2.evaluation import inference_on_dataset

    from pasa_det.config import load_config
    from pasa_det.engine import Trainer

    images = os.path.join(workdir, "eval_images")
    write_images(images, count)
    annotations = {
        "images": [
            {"id": i + 1, "file_name": f"{i:05d}.png", "width": 64, "height": 64}
            for i in range(count)
        ],
        "annotations": [
            {
                "id": i + 1,
                "image_id": i + 1,
                "category_id": 1,
                "bbox": [8, 8, 24, 24],
                "area": 576,
                "iscrowd": 0,
                "segmentation": [[8, 8, 32, 8, 32, 32, 8, 32]],
            }
            for i in range(count)
        ],
        "categories": [{"id": c, "name": n} for c, n in enumerate(["a", "b", "c"], 1)],
    }
    json_file = os.path.join(workdir, "eval.json")
    with open(json_file, "w") as f:
        json.dump(annotations, f)
    register_coco_instances("memory_eval", {}, json_file, images)
    cfg = load_config(
        CONFIG,
        OPTS + ["DATASETS.TEST", "('memory_eval',)", "OUTPUT_DIR", os.path.join(workdir, "out")],
    )
    model = Trainer.build_model(cfg).eval()
    evaluator = Trainer.build_evaluator(cfg, "memory_eval")
    sampler, process = Sampler(count), evaluator.process

    def counted(inputs, outputs):
        process(inputs, outputs)
        sampler.tick()

    evaluator.process = counted
    start = peak_rss_mib()
    inference_on_dataset(model, Trainer.build_test_loader(cfg, "memory_eval"), evaluator)
    return start, sampler.samples


def measure_demo(count, workdir):
    import pasa_det.engine.demo as demo
    from pasa_det.config import load_config

    images = os.path.join(workdir, "demo_images")
    write_images(images, count)
    cfg = load_config(CONFIG, OPTS)
    sampler, draw = Sampler(count), demo.draw_predictions

    def counted(*args, **kwargs):
        sampler.tick()
        return draw(*args, **kwargs)

    demo.draw_predictions = counted
    start = peak_rss_mib()
    demo.run_demo(cfg, [images], os.path.join(workdir, "demo_out"))
    return start, sampler.samples


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--eval-images", type=int, default=2000)
    parser.add_argument("--demo-images", type=int, default=1000)
    parser.add_argument("--only", choices=["eval", "demo"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        for name, count, measure in (
            ("eval", args.eval_images, measure_eval),
            ("demo", args.demo_images, measure_demo),
        ):
            if args.only in (None, name):
                start, samples = measure(count, workdir)
                print(
                    f"{name} over {count} images: peak RSS {start:.1f} MiB before the loop, "
                    + ", ".join(f"{k}: {v} MiB (+{v - start:.1f})" for k, v in samples.items()),
                    flush=True,
                )


if __name__ == "__main__":
    sys.exit(main())
