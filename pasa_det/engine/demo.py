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
from pasa_det.data.checks import check_datasets_registered, check_num_classes
from pasa_det.data.datasets.from_config import register_datasets_from_config

logger = logging.getLogger(__name__)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
DRAWN_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff")  # what matplotlib writes


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


def class_metadata(cfg):
    """The metadata whose class names label the drawings: of the first dataset the
    config names (TEST, else TRAIN), checked against the model's class count."""
    register_datasets_from_config(cfg)
    names = [*cfg.DATASETS.TEST, *cfg.DATASETS.TRAIN]
    if not names:
        logger.warning(
            "the config names no dataset (DATASETS.TEST or TRAIN), so the drawings label "
            "classes by their index; name the data the model was trained on to show its names"
        )
        return MetadataCatalog.get("__unused")
    check_datasets_registered(cfg)
    check_num_classes(cfg, names[:1])
    return MetadataCatalog.get(names[0])


def output_name(path: str, taken: set) -> str:
    """The input's file name, kept (a.jpg and a.png stay apart; other formats get ".png"
    added); a name met before in this run, from another folder, gets a numbered suffix."""
    name = os.path.basename(path)
    if not name.lower().endswith(DRAWN_EXTENSIONS):  # a format the drawing cannot be saved in
        name += ".png"
    stem, ext = os.path.splitext(name)
    number = 1
    while name in taken:
        number += 1
        name = f"{stem}-{number}{ext}"
    if number > 1:
        logger.warning(f"{path}: another input had its name; drawn as {name}")
    taken.add(name)
    return name


def run_demo(
    cfg, inputs: Iterable[str], output_dir: str, confidence_threshold: float = 0.5
) -> Tuple[int, int]:
    """Write `<output_dir>/<input file name>` for every readable input image; return
    (images written, images skipped because they could not be read)."""
    metadata = class_metadata(cfg)
    predictor = _predictor(cfg)
    os.makedirs(output_dir, exist_ok=True)
    written = skipped = 0
    taken = set()
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
        drawn.save(os.path.join(output_dir, output_name(path, taken)))
        written += 1
    return written, skipped
