"""The embedded synthetic set: deterministic, valid COCO, occlusions, aliasing textures."""

import json

import numpy as np
import pytest
from detectron2.data import MetadataCatalog
from PIL import Image
from pycocotools import mask as mask_util

from pasa_det.data.prepare import prepare_dataset
from pasa_det.data.synthetic_generator import CLASSES, textured_background, write_instance_split


def test_split_is_deterministic_and_valid_coco(tmp_path):
    write_instance_split(str(tmp_path / "a"), 12, seed=3, height=96, width=128)
    write_instance_split(str(tmp_path / "b"), 12, seed=3, height=96, width=128)
    a = json.loads((tmp_path / "a" / "annotations.json").read_text())
    assert a == json.loads((tmp_path / "b" / "annotations.json").read_text())
    assert (tmp_path / "a/images/000007.png").read_bytes() == (
        tmp_path / "b/images/000007.png"
    ).read_bytes()
    assert [c["name"] for c in a["categories"]] == list(CLASSES)
    assert {ann["category_id"] for ann in a["annotations"]} == {1, 2, 3}
    per_image = {}
    for ann in a["annotations"]:
        mask = mask_util.decode(ann["segmentation"]).astype(bool)
        assert mask.shape == (96, 128) and mask.sum() == ann["area"] >= 40
        x, y, w, h = ann["bbox"]
        ys, xs = np.nonzero(mask)
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x, y, x + w, y + h)
        per_image.setdefault(ann["image_id"], []).append(mask)
    # Visible masks never overlap: occluded parts belong to the shape in front.
    assert all(np.sum(masks, axis=0).max() == 1 for masks in per_image.values())
    assert np.mean([len(m) for m in per_image.values()]) >= 2
    image = np.asarray(Image.open(tmp_path / "a/images/000001.png"))
    assert image.shape == (96, 128, 3)


def test_background_energy_lies_above_the_stride_two_nyquist_frequency():
    background = textured_background(128, 128, np.random.default_rng(0)).mean(axis=2)
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2(background - background.mean()))) ** 2
    freq = np.fft.fftshift(np.fft.fftfreq(128))
    radius = np.hypot(*np.meshgrid(freq, freq))
    # A stride-2 grid resolves |f| < 0.25 cycles/px; most of the texture is above it.
    assert spectrum[radius > 0.25].sum() > 0.5 * spectrum.sum()


def test_registered_split_has_metadata_for_coco_evaluation():
    meta = MetadataCatalog.get("synthetic_instances_val")
    assert meta.evaluator_type == "coco" and meta.thing_classes == list(CLASSES)
    assert meta.json_file.endswith("synthetic/instances_val/annotations.json")


def test_missing_real_dataset_names_the_path_and_what_to_do(tmp_path):
    MetadataCatalog.get("coco_missing_test").set(
        json_file=str(tmp_path / "coco/annotations/x.json"), image_root=str(tmp_path)
    )
    with pytest.raises(FileNotFoundError, match=r"coco/annotations/x\.json.*datasets/README\.md"):
        prepare_dataset("coco_missing_test")
