"""Demo inference: draw a model's predictions on image files, streamed one at a time."""

import glob
import logging
import os
from typing import Iterable, Iterator, Tuple

import torch
from detectron2.data import MetadataCatalog
from detectron2.data.detection_utils import read_image
from detectron2.engine import DefaultPredictor
from detectron2.utils.visualizer import ColorMode, Visualizer
from tqdm import tqdm

from pasa_det.checkpoint import load_checkpoint

logger = logging.getLogger(__name__)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def iter_image_paths(inputs: Iterable[str]) -> Iterator[str]:
    """Files as given, glob patterns and directories (their image files, sorted),
    yielded lazily so a large folder is never listed into memory at once."""
    for item in inputs:
        if os.path.isdir(item):
            with os.scandir(item) as entries:
                names = sorted(e.name for e in entries if e.name.lower().endswith(IMAGE_EXTENSIONS))
            yield from (os.path.join(item, n) for n in names)
        elif glob.has_magic(item):
            yield from sorted(glob.iglob(item, recursive=True))
        else:
            yield item


def draw_predictions(image_rgb, predictions, metadata, confidence_threshold: float):
    """The image (RGB, HWC uint8) with instances above the threshold, or the
    semantic map, drawn by detectron2's Visualizer."""
    visualizer = Visualizer(image_rgb, metadata, instance_mode=ColorMode.IMAGE)
    if "instances" in predictions:
        instances = predictions["instances"].to("cpu")
        instances = instances[instances.scores >= confidence_threshold]
        return visualizer.draw_instance_predictions(instances)
    return visualizer.draw_sem_seg(predictions["sem_seg"].argmax(dim=0).to("cpu"))


def _predictor(cfg) -> DefaultPredictor:
    """detectron2's predictor with MODEL.WEIGHTS loaded by SafeCheckpointer
    (DefaultPredictor's own DetectionCheckpointer checks nothing)."""
    bare = cfg.clone()
    bare.defrost()
    bare.MODEL.WEIGHTS = ""
    predictor = DefaultPredictor(bare)
    load_checkpoint(cfg, predictor.model)
    return predictor


def run_demo(
    cfg, inputs: Iterable[str], output_dir: str, confidence_threshold: float = 0.5
) -> Tuple[int, int]:
    """Write `<output_dir>/<name>` for every readable input image; return
    (images written, images skipped because they could not be read)."""
    predictor = _predictor(cfg)
    metadata = MetadataCatalog.get(cfg.DATASETS.TEST[0] if cfg.DATASETS.TEST else "__unused")
    os.makedirs(output_dir, exist_ok=True)
    written = skipped = 0
    for path in tqdm(iter_image_paths(inputs), desc="demo", unit="img"):
        try:
            image = read_image(path, format=cfg.INPUT.FORMAT)
        except Exception as e:  # unreadable, truncated or missing file: name it and go on
            logger.warning(f"skipped {path}: cannot read it as an image ({e})")
            skipped += 1
            continue
        with torch.no_grad():
            predictions = predictor(image)
        rgb = image[:, :, ::-1] if cfg.INPUT.FORMAT == "BGR" else image
        drawn = draw_predictions(rgb, predictions, metadata, confidence_threshold)
        drawn.save(os.path.join(output_dir, os.path.splitext(os.path.basename(path))[0] + ".png"))
        written += 1
    return written, skipped
