"""Demo inference: draw a model's predictions on image files, streamed one at a time."""

import glob
import itertools
import logging
import os
import tempfile
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


class DemoError(ValueError):
    """--input or --output that the demo cannot work with."""


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


def checked_image_paths(inputs) -> Iterator[str]:
    """`iter_image_paths`, refused when it yields nothing at all: before the model is built,
    rather than ending with "wrote 0 images"."""
    inputs = [str(item) for item in inputs]
    paths = iter_image_paths(inputs)
    first = next(paths, None)
    if first is None:
        raise DemoError(
            f"--input {' '.join(inputs)} matches no file: a folder gives its "
            f"{' '.join(IMAGE_EXTENSIONS)} files (not its subfolders'), a glob pattern the files "
            "it matches; name image files, folders that hold them, or a quoted pattern like "
            "'photos/**/*.jpg'"
        )
    return itertools.chain([first], paths)


def check_output_dir(output_dir: str) -> None:
    """Create `output_dir` and write a probe file in it, so that a folder that cannot take
    the drawings is named before the model is built, not after the first image."""
    try:
        os.makedirs(output_dir, exist_ok=True)
        with tempfile.TemporaryFile(dir=output_dir):
            pass
    except OSError as e:
        existing = output_dir
        while existing and not os.path.exists(existing):
            existing = os.path.dirname(existing)
        why = (
            f"{existing} is a file, not a folder"
            if os.path.isfile(existing)
            else (e.strerror or str(e)).lower()
        )
        raise DemoError(
            f"--output {output_dir} cannot be written ({why}); choose a folder you can write to"
        ) from None


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
    (DefaultPredictor's own DetectionCheckpointer checks nothing).

    Empty MODEL.WEIGHTS is warned about, not refused: drawing an untrained model's output
    is how the demo is smoke-tested and measured (tests, dev/measure_memory.py), while a
    user who forgot the weights sees the warning first and in the summary line."""
    if not cfg.MODEL.WEIGHTS:
        logger.warning(
            "MODEL.WEIGHTS is empty: the drawings come from an UNTRAINED, randomly initialised "
            "model and show nothing learned; set MODEL.WEIGHTS to a trained checkpoint (e.g. "
            "OUTPUT_DIR/model_final.pth)"
        )
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
    check_output_dir(output_dir)
    paths = checked_image_paths(inputs)
    metadata = class_metadata(cfg)
    predictor = _predictor(cfg)
    written = skipped = 0
    taken = set()
    for path in tqdm(paths, desc="demo", unit="img"):
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
