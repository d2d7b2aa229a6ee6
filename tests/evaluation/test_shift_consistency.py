"""Shift-consistency evaluators on stub models with known answers: a model that is
exactly shift-equivariant scores full agreement, one that looks at absolute
position scores measurably less."""

import json
import logging
import os

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog, detection_utils
from detectron2.data.datasets import load_coco_json
from detectron2.structures import Boxes, Instances
from PIL import Image
from pycocotools import mask as mask_util

from pasa_det.config import ConfigError, load_config
from pasa_det.evaluation import (
    InstanceShiftConsistency,
    SemSegShiftConsistency,
    check_evaluation_data,
)
from pasa_det.evaluation.image_shifts import shared_view, translate
from pasa_det.evaluation.shift_consistency import label_agreement, match_instances
from tests.helpers.paths import ROOT

GRID = 8


def snap_to_grid(mask: torch.Tensor) -> torch.Tensor:
    """Mark every GRID x GRID cell (of the image's own pixel grid) that the mask touches:
    the output depends on where the content sits relative to the grid."""
    h, w = mask.shape
    cells = torch.nn.functional.max_pool2d(mask[None, None].float(), GRID, ceil_mode=True)[0, 0]
    return cells.repeat_interleave(GRID, 0).repeat_interleave(GRID, 1)[:h, :w].bool()


# --- semantic segmentation -------------------------------------------------------------


def semantic_stub(position_dependent: bool):
    def model(inputs):
        outputs = []
        for inp in inputs:
            labels = (inp["image"][0] > 128).long()
            if position_dependent:
                labels = snap_to_grid(labels.bool()).long()
            outputs.append(
                {"sem_seg": torch.nn.functional.one_hot(labels, 2).permute(2, 0, 1).float()}
            )
        return outputs

    return model


def semantic_inputs(n=3, size=(72, 88)):
    rng = np.random.default_rng(0)
    inputs = []
    for i in range(n):
        image = np.zeros((3, *size), dtype=np.uint8)
        for _ in range(4):
            y, x = rng.integers(0, size[0] - 12), rng.integers(0, size[1] - 12)
            image[:, y : y + 11, x : x + 13] = 255
        inputs.append({"image": torch.from_numpy(image), "file_name": f"image{i}.png"})
    return inputs


def semantic_consistency(model, inputs, **kwargs):
    evaluator = SemSegShiftConsistency(model, **kwargs)
    evaluator.reset()
    evaluator.process(inputs, [None] * len(inputs))
    return evaluator.evaluate()["shift_consistency"]


def test_label_agreement_compares_the_overlap_only():
    a = torch.zeros(4, 4, dtype=torch.long)
    b = torch.zeros(4, 4, dtype=torch.long)
    b[:, 3] = 1
    # With b one column to the right, the overlap holds a's columns 1-3 and b's 0-2.
    assert label_agreement(a, (0, 0), b, (0, 1)) == 1.0
    assert label_agreement(a, (0, 0), b, (0, 0)) == 0.75


def test_equivariant_segmenter_agrees_everywhere():
    res = semantic_consistency(
        semantic_stub(False), semantic_inputs(), num_pairs=4, max_shift=16, seed=0
    )
    assert res["consistency"] == 100.0 and res["pairs"] == 12


def test_position_dependent_segmenter_agrees_measurably_less():
    inputs = semantic_inputs()
    res = semantic_consistency(semantic_stub(True), inputs, num_pairs=4, max_shift=16, seed=0)
    assert res["consistency"] < 97
    again = semantic_consistency(semantic_stub(True), inputs, num_pairs=4, max_shift=16, seed=0)
    assert again == res  # seeded by (seed, file name)
    other_seed = semantic_consistency(
        semantic_stub(True), inputs, num_pairs=4, max_shift=16, seed=1
    )
    assert other_seed != res


def test_max_shift_larger_than_the_image_is_a_config_error_with_the_fix():
    """The config check bounds MAX_SHIFT by the test sizes; an image whose aspect ratio
    makes its input smaller still is named here."""
    with pytest.raises(ConfigError) as e:
        semantic_consistency(semantic_stub(False), semantic_inputs(size=(40, 52)), max_shift=45)
    assert str(e.value) == (
        "TEST.SHIFT_CONSISTENCY.MAX_SHIFT=45 leaves no crop of the (40, 52) test input of "
        "image0.png: set it below 40, or make the test inputs larger (INPUT.MIN_SIZE_TEST)"
    )


# --- instance segmentation -------------------------------------------------------------


def test_translate_and_shared_view():
    a = np.arange(12).reshape(3, 4)
    moved = translate(a, 1, -1)  # right by 1, up by 1
    assert moved.tolist() == [[0, 4, 5, 6], [0, 8, 9, 10], [0, 0, 0, 0]]
    assert np.array_equal(
        translate(moved, -1, 1)[shared_view(3, 4, 1, -1)], a[shared_view(3, 4, 1, -1)]
    )
    assert shared_view(3, 4, 1, -1) == (slice(1, 3), slice(0, 3))


def test_match_instances_is_greedy_one_to_one():
    a = torch.zeros(2, 4, 4, dtype=torch.bool)
    a[0, :2, :2] = True
    a[1, 2:, 2:] = True
    b = torch.stack([a[1], a[0], torch.zeros(4, 4, dtype=torch.bool)])
    assert sorted(match_instances(a, b, 0.5)) == [(0, 1, 1.0), (1, 0, 1.0)]
    assert match_instances(a, b[2:], 0.5) == []


@pytest.fixture(scope="module")
def squares_dataset(tmp_path_factory):
    return write_squares(tmp_path_factory.mktemp("squares"), "test_shift_squares")


def write_squares(root, name, extra_annotations=(), side=None):
    """Dark images with two bright squares each (of `side` px, or 13-23 px at random),
    kept 24 px from the borders so that no shift of the protocol moves them out of frame;
    COCO json with their masks (and `extra_annotations`), registered as `name`."""
    rng = np.random.default_rng(1)
    images, annotations = [], []
    for image_id in range(1, 4):
        pixels = np.full((96, 112, 3), 20, dtype=np.uint8)
        for x0 in (24, 64):
            y0, size = int(rng.integers(24, 48)), int(rng.integers(13, 24))
            size = side or size
            pixels[y0 : y0 + size, x0 : x0 + size] = 230
            mask = np.zeros((96, 112), dtype=np.uint8)
            mask[y0 : y0 + size, x0 : x0 + size] = 1
            rle = mask_util.encode(np.asfortranarray(mask))
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": 1,
                    "iscrowd": 0,
                    "segmentation": {"size": [96, 112], "counts": rle["counts"].decode()},
                    "area": float(size * size),
                    "bbox": [x0, y0, size, size],
                }
            )
        Image.fromarray(pixels).save(root / f"{image_id}.png")
        images.append({"id": image_id, "file_name": f"{image_id}.png", "height": 96, "width": 112})
    json_file = str(root / "annotations.json")
    with open(json_file, "w") as f:
        json.dump(
            {
                "images": images,
                "annotations": annotations + list(extra_annotations),
                "categories": [{"id": 1, "name": "square"}],
            },
            f,
        )
    if name not in DatasetCatalog.list():
        DatasetCatalog.register(name, lambda: load_coco_json(json_file, str(root), name))
        MetadataCatalog.get(name).set(
            json_file=json_file, image_root=str(root), evaluator_type="coco"
        )
    return name


def instance_stub(position_dependent: bool):
    """One instance per bright 4-connected column band (the squares never share columns)."""

    def model(inputs):
        outputs = []
        for inp in inputs:
            bright = inp["image"].float().mean(dim=0) > 128
            columns = bright.any(dim=0).int()
            starts = torch.nonzero(
                torch.diff(columns, prepend=torch.zeros(1, dtype=torch.int32)) == 1
            ).flatten()
            ends = (
                torch.nonzero(
                    torch.diff(columns, append=torch.zeros(1, dtype=torch.int32)) == -1
                ).flatten()
                + 1
            )
            masks = []
            for s, e in zip(starts.tolist(), ends.tolist()):
                m = torch.zeros_like(bright)
                m[:, s:e] = bright[:, s:e]
                masks.append(snap_to_grid(m) if position_dependent else m)
            masks = (
                torch.stack(masks) if masks else torch.zeros((0, *bright.shape), dtype=torch.bool)
            )
            instances = Instances(tuple(bright.shape))
            instances.pred_masks = masks
            ys, xs = masks.any(dim=2), masks.any(dim=1)
            boxes = [
                [x.nonzero().min(), y.nonzero().min(), x.nonzero().max() + 1, y.nonzero().max() + 1]
                for x, y in zip(xs, ys)
            ]
            instances.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
            instances.scores = torch.ones(len(masks))
            instances.pred_classes = torch.zeros(len(masks), dtype=torch.int64)
            outputs.append({"instances": instances})
        return outputs

    return model


def instance_consistency(
    dataset_name, model, shifts=(1, 2, 5, 10, 20), output_dir=None, shifted_model=None, **protocols
):
    """The evaluator's results on `dataset_name`: `model` predicts the original images,
    `shifted_model` (default: `model`) the shifted ones; `protocols`: the evaluator's
    protocol arguments."""
    cfg = load_config(
        os.path.join(
            ROOT, "configs/Synthetic-InstanceSegmentation/mask_rcnn_R_18_FPN_quick_pasa.yaml"
        )
    )
    cfg.merge_from_list(
        ["INPUT.MIN_SIZE_TEST", "96", "INPUT.MAX_SIZE_TEST", "1000", "INPUT.FORMAT", "RGB"]
    )
    evaluator = InstanceShiftConsistency(
        shifted_model or model,
        dataset_name,
        detection_utils.build_augmentation(cfg, is_train=False),
        cfg.INPUT.FORMAT,
        cfg.MODEL.MASK_ON,
        shifts=shifts,
        output_dir=output_dir,
        **protocols,
    )
    evaluator.reset()
    for d in DatasetCatalog.get(dataset_name):
        inp = {
            "file_name": d["file_name"],
            "image_id": d["image_id"],
            "height": d["height"],
            "width": d["width"],
        }
        inp["image"] = torch.from_numpy(
            np.asarray(Image.open(d["file_name"]).convert("RGB")).transpose(2, 0, 1).copy()
        )
        evaluator.process([inp], model([inp]))
    return evaluator.evaluate()["shift_consistency"]


def test_equivariant_instance_model_keeps_ap_and_instances_at_every_shift(squares_dataset):
    res = instance_consistency(squares_dataset, instance_stub(False))
    aps = {
        k: v
        for k, v in res.items()
        if k.startswith("segm_AP_")
        and k[8:].rstrip("0123456789") in ("", "right", "left", "up", "down")
    }
    assert len(aps) == 21 and set(aps.values()) == {100.0}
    assert res["segm_AP_spread"] == 0 and res["bbox_AP_spread"] == 0
    assert res["mask_iou"] == 100 and res["class_agreement"] == 100 and res["unmatched"] == 0


def test_position_dependent_instance_model_is_measurably_less_consistent(squares_dataset):
    res = instance_consistency(squares_dataset, instance_stub(True), shifts=(1, 2, 5))
    assert res["mask_iou"] < 95
    assert res["segm_AP_spread"] > 0
    assert res["class_agreement"] == 100  # it moves masks, never changes classes


class Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.text = ""

    def emit(self, record):
        self.text += record.getMessage() + "\n"


def test_instance_results_are_written_as_json_and_logged_as_a_table(squares_dataset, tmp_path):
    shift_logger, collect = logging.getLogger("pasa_det.evaluation.shift_consistency"), Collect()
    shift_logger.addHandler(collect)
    level = shift_logger.level
    shift_logger.setLevel(logging.INFO)
    try:
        res = instance_consistency(
            squares_dataset, instance_stub(True), shifts=(1, 5), output_dir=str(tmp_path)
        )
    finally:
        shift_logger.removeHandler(collect)
        shift_logger.setLevel(level)
    written = json.loads((tmp_path / "shift_consistency.json").read_text())
    assert written == pytest.approx(dict(res))
    table = collect.text.split(f"Shift consistency on {squares_dataset}:")[1]
    lines = table.strip().splitlines()
    assert lines[0] == f"mask AP: unshifted {res['segm_AP_0']:.2f}"
    assert lines[1].split() == ["shift", "px", "right", "left", "down", "up"]
    assert lines[2].split() == ["1"] + [
        f"{res[f'segm_AP_{d}1']:.2f}" for d in ("right", "left", "down", "up")
    ]
    assert lines[3].split()[0] == "5"
    assert f"mask IoU of matched instances, %: {res['mask_iou']:.2f}" in table


def test_shifts_that_move_an_image_wholly_out_of_frame_are_a_config_error(squares_dataset):
    """They used to end, after the whole inference, in KeyError: 'segm' (or an AP of a
    black image)."""
    with pytest.raises(ConfigError) as e:
        instance_consistency(squares_dataset, instance_stub(False), shifts=(1, 96))
    assert str(e.value) == (
        "TEST.SHIFT_CONSISTENCY.SHIFTS=[1, 96]: a shift of 96 px moves image 1.png of "
        "'test_shift_squares' (112x96 px) wholly out of frame. Shifts are px of the original "
        "image and must stay below every image's width and height: use shifts up to 95 (the "
        "default is [1, 2, 5, 10, 20])"
    )


def test_an_adversarial_grid_as_wide_as_an_image_is_a_config_error(squares_dataset):
    """It gave the AP of zero-filled copies instead."""
    with pytest.raises(ConfigError) as e:
        instance_consistency(
            squares_dataset,
            instance_stub(False),
            protocols=["adversarial"],
            adversarial_max_shift=96,
        )
    assert str(e.value) == (
        "TEST.SHIFT_CONSISTENCY.ADVERSARIAL_MAX_SHIFT=96: a shift of 96 px moves image 1.png "
        "of 'test_shift_squares' (112x96 px) wholly out of frame. Shifts are px of the "
        "original image and must stay below every image's width and height: use shifts up "
        "to 95 (the default is 2)"
    )


def test_the_check_before_training_tests_only_the_shifts_the_protocols_run(squares_dataset):
    """It tested SHIFTS whatever the protocols, and stopped runs that never shift by them."""
    too_far = {"shifts": [1, 96], "adversarial_max_shift": 96}
    check_evaluation_data([squares_dataset], {"protocols": ["subpixel"], **too_far})
    for protocols, key in (
        (["subpixel", "worst_case"], r"SHIFTS=\[1, 96\]"),
        (["adversarial"], "ADVERSARIAL_MAX_SHIFT=96"),
    ):
        with pytest.raises(ConfigError, match=rf"^TEST\.SHIFT_CONSISTENCY\.{key}: a shift of 96"):
            check_evaluation_data([squares_dataset], {"protocols": protocols, **too_far})
    with pytest.raises(ConfigError, match=r"^dataloader\.shift_consistency\.shifts=\[1, 96\]"):
        check_evaluation_data([squares_dataset], too_far, "dataloader.shift_consistency")


def test_a_shift_without_any_prediction_is_scored_not_a_key_error(squares_dataset):
    """COCOEvaluator infers its tasks from the predictions: none at a shift meant no "segm"."""

    def blind(inputs):  # finds nothing in any shifted input
        return instance_stub(False)([{**i, "image": torch.zeros_like(i["image"])} for i in inputs])

    res = instance_consistency(squares_dataset, instance_stub(False), (1,), shifted_model=blind)
    assert res["segm_AP_0"] == 100 and np.isnan(res["segm_AP_right1"])
    assert np.isnan(res["bbox_AP_mean"])


def test_malformed_ground_truth_is_left_out_as_in_training(tmp_path):
    """Without it pycocotools fails on the 2-point polygon; kept, the box of width 0 would
    be an object the model misses, at every shift."""
    malformed = [
        {"id": 101, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 1.0}
        | {"segmentation": [[1, 1, 2, 2]], "bbox": [1, 1, 1, 1]},
        {"id": 102, "image_id": 2, "category_id": 1, "iscrowd": 0, "area": 1.0}
        | {"segmentation": [[5, 5, 9, 5, 9, 9]], "bbox": [5, 5, 0, 4]},
    ]
    name = write_squares(tmp_path, "test_shift_squares_malformed", malformed)
    res = instance_consistency(name, instance_stub(False), shifts=(1, 5))
    aps = {v for k, v in res.items() if "_AP_" in k and not k.endswith(("spread", "std"))}
    assert aps == {100.0}
