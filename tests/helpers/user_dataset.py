"""A small COCO-format dataset shaped like users' data rather than like the embedded set:
JPEG and PNG mixed, portrait and landscape, a grayscale image, an RGBA PNG, a JPEG stored
rotated with an EXIF orientation, an image without annotations, category ids 3/17/90,
polygons and one crowd RLE."""

import json
import math
import os

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_util

CATEGORIES = [
    {"id": 3, "name": "square"},
    {"id": 17, "name": "triangle"},
    {"id": 90, "name": "disc"},
]


def _polygon(kind, cx, cy, r):
    if kind == "square":
        return [cx - r, cy - r, cx + r, cy - r, cx + r, cy + r, cx - r, cy + r]
    if kind == "triangle":
        return [cx, cy - r, cx + r, cy + r, cx - r, cy + r]
    points = []
    for i in range(16):
        a = 2 * math.pi * i / 16
        points += [cx + r * math.cos(a), cy + r * math.sin(a)]
    return points


def _draw(size, objects, rng):
    w, h = size
    image = Image.fromarray(rng.integers(0, 80, (h, w, 3), dtype=np.uint8))
    draw = ImageDraw.Draw(image)
    colours = {"square": (230, 60, 60), "triangle": (60, 230, 60), "disc": (60, 60, 230)}
    for kind, polygon in objects:
        draw.polygon(polygon, fill=colours[kind])
    return image


def write_user_dataset(root: str, num_images: int = 12, seed: int = 0) -> tuple:
    """Writes `root/images/*` and `root/annotations.json`; returns (json path, image folder)."""
    rng = np.random.default_rng(seed)
    images_dir = os.path.join(root, "images")
    os.makedirs(images_dir, exist_ok=True)
    images, annotations = [], []
    by_name = {c["name"]: c["id"] for c in CATEGORIES}
    for i in range(num_images):
        size = (128, 96) if i % 2 else (96, 128)  # landscape, portrait
        objects = []
        if i != 1:  # image 1 has no annotations
            for _ in range(int(rng.integers(1, 4))):
                kind = ["square", "triangle", "disc"][int(rng.integers(0, 3))]
                r = float(rng.integers(10, 20))
                cx = float(rng.integers(int(r) + 2, size[0] - int(r) - 2))
                cy = float(rng.integers(int(r) + 2, size[1] - int(r) - 2))
                objects.append((kind, _polygon(kind, cx, cy, r)))
        image = _draw(size, objects, rng)
        name = f"{i:03d}.jpg" if i % 3 else f"{i:03d}.png"
        path = os.path.join(images_dir, name)
        if i == 2:
            image.convert("L").save(path)  # grayscale
        elif i == 3:
            image.convert("RGBA").save(path)  # RGBA PNG
        elif i == 4:
            # Stored rotated; EXIF orientation 6 says "turn 90 degrees clockwise to show".
            exif = Image.Exif()
            exif[0x0112] = 6
            image.transpose(Image.Transpose.ROTATE_90).save(path, exif=exif)
        else:
            image.save(path)
        images.append({"id": i + 1, "file_name": name, "width": size[0], "height": size[1]})
        for kind, polygon in objects:
            xs, ys = polygon[0::2], polygon[1::2]
            box = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
            rle = mask_util.merge(mask_util.frPyObjects([polygon], size[1], size[0]))
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": by_name[kind],
                    "segmentation": [polygon],
                    "area": float(mask_util.area(rle)),
                    "bbox": box,
                    "iscrowd": 0,
                }
            )
    # One crowd region, as a compressed RLE, on the landscape image without objects.
    mask = np.zeros((96, 128), dtype=np.uint8, order="F")
    mask[70:90, 5:40] = 1
    counts = mask_util.encode(mask)
    annotations.append(
        {
            "id": len(annotations) + 1,
            "image_id": 2,
            "category_id": 3,
            "segmentation": {"size": [96, 128], "counts": counts["counts"].decode()},
            "area": float(mask.sum()),
            "bbox": [5.0, 70.0, 35.0, 20.0],
            "iscrowd": 1,
        }
    )
    json_path = os.path.join(root, "annotations.json")
    with open(json_path, "w") as f:
        json.dump({"images": images, "annotations": annotations, "categories": CATEGORIES}, f)
    return json_path, images_dir
