"""Deterministic synthetic sets: instance segmentation in COCO format and semantic
segmentation in Cityscapes layout, rendered by the same generator.

Shapes of three classes (circle, square, triangle) on textured backgrounds, with
occlusions. The backgrounds are near-Nyquist gratings plus noise: subsampling them
without a low-pass filter folds their energy into false low frequencies, which is
what anti-aliasing is meant to prevent.
"""

import json
import os
import shutil
import tempfile
from typing import Callable, Dict, List

import numpy as np
from PIL import Image
from pycocotools import mask as mask_util

CLASSES = ("circle", "square", "triangle")


def _grating(h, w, rng, period_range):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(*period_range)
    phase = rng.uniform(0, 2 * np.pi)
    return np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period + phase)


def textured_background(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Two colored gratings with periods of 2.1-3.5 px, plus pixel noise (H, W, 3) float in [0, 1]."""
    image = np.full((h, w, 3), rng.uniform(0.3, 0.7, size=3), dtype=np.float32)
    for _ in range(2):
        color = rng.uniform(-0.25, 0.25, size=3).astype(np.float32)
        image += _grating(h, w, rng, (2.1, 3.5))[..., None] * color
    image += rng.normal(0, 0.04, size=image.shape).astype(np.float32)
    return image


def shape_mask(
    kind: str, h: int, w: int, cx: float, cy: float, size: float, angle: float
) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    if kind == "circle":
        return (xx - cx) ** 2 + (yy - cy) ** 2 <= (size / 2) ** 2
    corners = 4 if kind == "square" else 3
    radius = size / 2 * (np.sqrt(2) if kind == "square" else 1.2)
    angles = angle + 2 * np.pi * np.arange(corners) / corners
    vx, vy = cx + radius * np.cos(angles), cy + radius * np.sin(angles)
    inside = np.ones((h, w), dtype=bool)
    for i in range(corners):  # convex polygon, counter-clockwise: left of every edge
        x0, y0, x1, y1 = vx[i], vy[i], vx[(i + 1) % corners], vy[(i + 1) % corners]
        inside &= (x1 - x0) * (yy - y0) - (y1 - y0) * (xx - x0) >= 0
    return inside


def render_image(rng: np.random.Generator, height: int, width: int, max_instances: int = 5):
    """One image and its instances [(class index, visible mask)], later shapes occluding earlier ones."""
    image = textured_background(height, width, rng)
    masks, classes, areas = [], [], []
    for _ in range(rng.integers(2, max_instances + 1)):
        kind = int(rng.integers(len(CLASSES)))
        size = rng.uniform(0.15, 0.4) * min(height, width)
        cx, cy = rng.uniform(size / 2, width - size / 2), rng.uniform(size / 2, height - size / 2)
        mask = shape_mask(CLASSES[kind], height, width, cx, cy, size, rng.uniform(0, 2 * np.pi))
        color = rng.uniform(0, 1, size=3).astype(np.float32)
        shading = 0.1 * _grating(height, width, rng, (8.0, 16.0))[..., None]
        image = np.where(mask[..., None], color + shading, image)
        masks = [m & ~mask for m in masks]
        masks.append(mask)
        classes.append(kind)
        areas.append(mask.sum())
    # Mostly hidden shapes are not annotated (nor would a person label them).
    instances = [(k, m) for k, m, a in zip(classes, masks, areas) if m.sum() >= max(40, 0.3 * a)]
    return (np.clip(image, 0, 1) * 255).astype(np.uint8), instances


def coco_annotation(mask: np.ndarray, kind: int, image_id: int, ann_id: int) -> Dict:
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    ys, xs = np.nonzero(mask)
    x0, y0 = float(xs.min()), float(ys.min())
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": kind + 1,
        "segmentation": {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")},
        "area": float(mask.sum()),
        "bbox": [x0, y0, float(xs.max()) + 1 - x0, float(ys.max()) + 1 - y0],
        "iscrowd": 0,
    }


def _write_atomically(root: str, marker: str, write: Callable[[str], None]) -> None:
    """Run `write(folder)` on a temporary folder and rename it to `root`, so a crash
    or a concurrent writer never leaves a partial `root`. Done when `root/marker` exists."""
    if os.path.exists(os.path.join(root, marker)):
        return
    parent = os.path.dirname(os.path.abspath(root))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-", dir=parent)
    try:
        write(tmp)
        try:
            os.rename(tmp, root)
        except OSError:  # another process finished first; its copy is identical
            shutil.rmtree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_instance_split(
    root: str, num_images: int, seed: int, height: int = 160, width: int = 160
) -> None:
    """COCO format: `root/images/*.png` and `root/annotations.json` with RLE masks."""

    def write(folder):
        os.makedirs(os.path.join(folder, "images"))
        rng = np.random.default_rng(seed)
        images: List[Dict] = []
        annotations: List[Dict] = []
        for image_id in range(1, num_images + 1):
            pixels, instances = render_image(rng, height, width)
            file_name = f"{image_id:06d}.png"
            Image.fromarray(pixels).save(os.path.join(folder, "images", file_name))
            images.append(
                {"id": image_id, "file_name": file_name, "height": height, "width": width}
            )
            for kind, mask in instances:
                annotations.append(coco_annotation(mask, kind, image_id, len(annotations) + 1))
        categories = [
            {"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(CLASSES)
        ]
        with open(os.path.join(folder, "annotations.json"), "w") as f:
            json.dump({"images": images, "annotations": annotations, "categories": categories}, f)

    _write_atomically(root, "annotations.json", write)


SEMANTIC_CLASSES = ("background",) + CLASSES
SEMANTIC_CITY = "synthville"
# Cityscapes label ids the shapes are written with in labelIds/instanceIds, so that
# detectron2's Cityscapes instance loader and cityscapesscripts' evaluator read them:
# circle -> person, square -> car, triangle -> bicycle (background stays 0, "unlabeled").
CITYSCAPES_LABEL_IDS = {"circle": 24, "square": 26, "triangle": 33}


def write_semantic_split(
    root: str, split: str, num_images: int, seed: int, height: int = 160, width: int = 160
) -> None:
    """Cityscapes layout under `root`: `leftImg8bit/<split>/<city>/*_leftImg8bit.png` and
    `gtFine/<split>/<city>/*_gtFine_{labelTrainIds,labelIds,instanceIds}.png` plus
    `*_gtFine_polygons.json` (sizes only), as detectron2's Cityscapes loaders expect.
    Train ids: 0 background, 1-3 shapes. Label ids are Cityscapes' (CITYSCAPES_LABEL_IDS);
    instance ids are label id * 1000 + index, as in Cityscapes."""

    def write(folder):
        image_dir = os.path.join(folder, "leftImg8bit", split, SEMANTIC_CITY)
        label_dir = os.path.join(folder, "gtFine", split, SEMANTIC_CITY)
        os.makedirs(image_dir)
        os.makedirs(label_dir)
        rng = np.random.default_rng(seed)
        for index in range(num_images):
            pixels, instances = render_image(rng, height, width)
            train_ids = np.zeros((height, width), dtype=np.uint8)
            label_ids = np.zeros((height, width), dtype=np.uint8)
            # label id × 1000 + instance (< 34,000) fits 16 bits; Pillow >= 10 cannot write 32-bit PNGs.
            instance_ids = np.zeros((height, width), dtype=np.uint16)
            for number, (kind, mask) in enumerate(instances):
                label_id = CITYSCAPES_LABEL_IDS[CLASSES[kind]]
                train_ids[mask] = kind + 1
                label_ids[mask] = label_id
                instance_ids[mask] = label_id * 1000 + number
            stem = os.path.join(label_dir, f"{SEMANTIC_CITY}_{index:06d}_000019_gtFine_")
            Image.fromarray(pixels).save(
                os.path.join(image_dir, f"{SEMANTIC_CITY}_{index:06d}_000019_leftImg8bit.png")
            )
            Image.fromarray(train_ids).save(stem + "labelTrainIds.png")
            Image.fromarray(label_ids).save(stem + "labelIds.png")
            Image.fromarray(instance_ids).save(stem + "instanceIds.png")
            with open(stem + "polygons.json", "w") as f:
                json.dump({"imgHeight": height, "imgWidth": width, "objects": []}, f)

    _write_atomically(root, "gtFine", write)
