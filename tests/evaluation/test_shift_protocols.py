"""The shift protocols (worst case, sub-pixel, adversarial; mASSC with circular and
zero-padded shifts) on stub models whose answers are known by construction or computed
here by hand, and the image shifts they rest on."""

import contextlib
import io

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.evaluation import COCOEvaluator
from detectron2.structures import Boxes, Instances
from PIL import Image
from pycocotools import mask as mask_util
from pycocotools.cocoeval import COCOeval

from pasa_det.config import ConfigError
from pasa_det.evaluation.copy_ap import CopyScores
from pasa_det.evaluation.image_shifts import (
    circular,
    subpixel_view,
    translate,
    translate_subpixel,
)
from pasa_det.evaluation.shift_consistency import protocol_cost
from tests.evaluation.test_shift_consistency import (
    instance_consistency,
    instance_stub,
    semantic_consistency,
    semantic_inputs,
    semantic_stub,
    write_squares,
)

# --- image shifts ----------------------------------------------------------------------


def test_subpixel_translation_interpolates_bilinearly_and_equals_translate_on_integers():
    a = np.array([[0.0, 4.0, 8.0], [12.0, 16.0, 20.0]])
    # Right by 1/4: each pixel 3/4 of itself and 1/4 of its left neighbour (0 outside).
    assert translate_subpixel(a, 0.25, 0).tolist() == [[0, 3, 7], [9, 15, 19]]
    # Down by 1/2 and left by 1/2: the mean of the pixel, its right neighbour and the two
    # above them.
    assert translate_subpixel(a, -0.5, 0.5).tolist() == [[1, 3, 2], [8, 12, 7]]
    b = np.arange(30.0).reshape(5, 6)
    assert np.array_equal(translate_subpixel(b, 2, -1), translate(b, 2, -1))
    assert circular(b, 1, 0)[:, 0].tolist() == b[:, -1].tolist()
    assert subpixel_view(5, 6, 0.25, -0.75) == (slice(0, 4), slice(1, 6))


# --- instances: the worst case, adversarial and sub-pixel shifts -------------------------


def ground_truth_masks(dataset_name):
    """file name -> (N, H, W) bool masks of its annotations."""
    out = {}
    for d in DatasetCatalog.get(dataset_name):
        masks = [mask_util.decode(a["segmentation"]).astype(bool) for a in d["annotations"]]
        out[d["file_name"]] = torch.from_numpy(np.stack(masks))
    return out


def instances_of(masks: torch.Tensor) -> Instances:
    instances = Instances(tuple(masks.shape[1:]))
    ys, xs = masks.any(dim=2), masks.any(dim=1)
    boxes = [
        [
            float(x.nonzero().min()),
            float(y.nonzero().min()),
            x.nonzero().max() + 1.0,
            y.nonzero().max() + 1.0,
        ]
        if x.any()
        else [0.0, 0.0, 1.0, 1.0]
        for x, y in zip(xs, ys)
    ]
    instances.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    instances.pred_masks = masks
    instances.scores = torch.ones(len(masks))
    instances.pred_classes = torch.zeros(len(masks), dtype=torch.int64)
    return instances


def oracle(dataset_name, candidates, fails_at=None, follows_content=True):
    """Predicts each image's ground truth, moved with the content (`follows_content`:
    it finds the input's offset among `candidates` by comparing it with the moved
    original) or left where it is; for the image `f` at its offset `fails_at[f]` it puts
    every instance 50 px lower (wrong: no overlap with any object)."""
    truth = ground_truth_masks(dataset_name)
    originals = {
        f: np.asarray(Image.open(f).convert("RGB")).transpose(2, 0, 1).copy() for f in truth
    }
    fails_at = fails_at or {}

    def offset_of(inp):
        image = inp["image"].numpy()
        for dx, dy in [(0, 0), *candidates]:
            moved = translate(originals[inp["file_name"]].transpose(1, 2, 0), dx, dy)
            if np.array_equal(moved.transpose(2, 0, 1), image):
                return dx, dy
        raise AssertionError(f"{inp['file_name']}: input at no candidate offset")

    def model(inputs):
        outputs = []
        for inp in inputs:
            masks = truth[inp["file_name"]].permute(1, 2, 0).numpy()
            dx, dy = offset_of(inp) if follows_content else (0, 0)
            if fails_at.get(inp["file_name"]) == (dx, dy):
                dy += 50
            moved = torch.from_numpy(translate(masks, dx, dy)).permute(2, 0, 1)
            outputs.append({"instances": instances_of(moved)})
        return outputs

    return model


@pytest.fixture(scope="module")
def squares(tmp_path_factory):
    return write_squares(tmp_path_factory.mktemp("protocol_squares"), "test_protocol_squares")


@pytest.fixture(scope="module")
def squares_of_20(tmp_path_factory):
    return write_squares(tmp_path_factory.mktemp("squares20"), "test_protocol_squares20", side=20)


GRID = [(d * ux, d * uy) for d in (1, 2, 5) for ux, uy in ((1, 0), (-1, 0), (0, 1), (0, -1))]
ADVERSARIAL_1 = [(dx, dy) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dx or dy]


def file_names(dataset_name):
    return [d["file_name"] for d in DatasetCatalog.get(dataset_name)]


def test_the_unshifted_copy_scores_as_detectrons_coco_evaluator(squares):
    """Position-dependent masks, so the AP is neither 0 nor 100."""
    model = instance_stub(True)
    scores = CopyScores(squares, ("bbox", "segm"))
    reference = COCOEvaluator(squares, ("bbox", "segm"), output_dir=None, use_fast_impl=False)
    reference.reset()
    for d in DatasetCatalog.get(squares):
        image = torch.from_numpy(
            np.asarray(Image.open(d["file_name"]).convert("RGB")).transpose(2, 0, 1).copy()
        )
        inp = {"image": image, "image_id": d["image_id"], "height": 96, "width": 112}
        out = model([inp])
        reference.process([inp], out)
        scores.add((0, 0), d["image_id"], out[0]["instances"])
    expected = reference.evaluate()
    assert scores.gather()
    for task in ("bbox", "segm"):
        assert 0 < expected[task]["AP"] < 100
        assert scores.copy_ap(task, (0, 0)) == pytest.approx(expected[task]["AP"], abs=1e-9)


def test_per_image_ap_equals_pycocotools_on_that_image_alone(squares):
    model = instance_stub(True)
    scores = CopyScores(squares, ("bbox", "segm"))
    for d in DatasetCatalog.get(squares):
        image = torch.from_numpy(
            np.asarray(Image.open(d["file_name"]).convert("RGB")).transpose(2, 0, 1).copy()
        )
        scores.add((0, 0), d["image_id"], model([{"image": image}])[0]["instances"])
    assert scores.gather()
    for task in ("bbox", "segm"):
        per_image = scores.per_image_ap(task, (0, 0))
        for image_id, ap in per_image.items():
            results = [dict(r) for r in scores._results[(0, 0)][image_id]]
            if task == "segm":
                for r in results:
                    r.pop("bbox")
            with contextlib.redirect_stdout(io.StringIO()):
                alone = COCOeval(scores.ground_truth, scores.ground_truth.loadRes(results), task)
                alone.params.imgIds = [image_id]
                alone.evaluate()
                alone.accumulate()
                alone.summarize()
            assert ap == pytest.approx(100 * alone.stats[0], abs=1e-9)
        assert len(set(per_image.values())) > 1  # the images differ: a real check


def test_worst_case_takes_each_image_on_its_own_worst_shift(squares):
    """Each image fails on one shift of the grid, a different one per image: every
    shift's AP stays above 0, but the worst case, which takes each image on its failing
    copy, is 0."""
    names = file_names(squares)
    fails = dict(zip(names, [(1, 0), (-2, 0), (0, 5)]))
    model = oracle(squares, GRID, fails)
    res = instance_consistency(squares, model, shifts=(1, 2, 5), protocols=["grid", "worst_case"])
    for task in ("segm", "bbox"):
        per_shift = [
            res[f"{task}_AP_{d}{s}"] for s in (1, 2, 5) for d in ("right", "left", "down", "up")
        ]
        assert res[f"{task}_AP_0"] == 100 and min(per_shift) > 0
        assert res[f"{task}_AP_worst_case"] == 0
    assert protocol_cost(res) == {"grid": 12, "worst_case": 12, "total": 13}


@pytest.mark.parametrize(
    "fail_offsets, expected", [([(1, 0), (-1, 1), (0, -1)], 0), ([(5, 0), (0, 2), (-2, 0)], 100)]
)
def test_adversarial_is_the_worst_over_the_integer_grid(squares, fail_offsets, expected):
    """Failures inside the grid of |dx|, |dy| <= 1 make it 0; failures outside it are
    never seen (100)."""
    fails = dict(zip(file_names(squares), fail_offsets))
    model = oracle(squares, ADVERSARIAL_1, fails)
    res = instance_consistency(
        squares, model, shifts=(1,), protocols=["adversarial"], adversarial_max_shift=1
    )
    assert res["segm_AP_adversarial"] == expected and res["bbox_AP_adversarial"] == expected
    assert protocol_cost(res) == {"adversarial": 8, "total": 9}
    assert "segm_AP_right1" not in res  # the grid was not asked for


def test_subpixel_ap_of_a_model_blind_to_position(squares_of_20):
    """Predictions that stay where the ground truth is: moved back by t px, a 20 px box
    has IoU (20 - t) / (20 + t) with its object: 0.975 at t = 1/4 (every COCO threshold
    up to 0.95 met, AP 100), 0.928 at t = 3/4 (all but 0.95: AP 90). The moved-back mask
    at 3/4 px is the square one column over (IoU 19/21 = 0.905, AP 90 too)."""
    model = oracle(squares_of_20, [], follows_content=False)
    res = instance_consistency(
        squares_of_20, model, shifts=(1,), protocols=["subpixel"], subpixel_shifts=[0.25, 0.75]
    )
    for task in ("bbox", "segm"):
        assert res[f"{task}_AP_0"] == 100
        assert res[f"{task}_AP_subpixel_right0.25"] == pytest.approx(100)
        assert res[f"{task}_AP_subpixel_down0.25"] == pytest.approx(100)
        assert res[f"{task}_AP_subpixel_right0.75"] == pytest.approx(90)
        assert res[f"{task}_AP_subpixel_down0.75"] == pytest.approx(90)
        assert res[f"{task}_AP_subpixel_spread"] == pytest.approx(10)
    assert protocol_cost(res) == {"subpixel": 4, "total": 5}


def test_protocols_share_the_copies_they_have_in_common(squares):
    res = instance_consistency(
        squares,
        instance_stub(False),
        shifts=(1, 2),
        protocols=["grid", "worst_case", "subpixel", "adversarial"],
        subpixel_shifts=[0.5],
        adversarial_max_shift=1,
    )
    # grid 8 offsets, sub-pixel 2, adversarial 8 of which 4 are the grid's 1 px shifts.
    assert protocol_cost(res) == {
        "grid": 8,
        "worst_case": 8,
        "subpixel": 2,
        "adversarial": 8,
        "total": 1 + 8 + 2 + 4,
    }
    assert res["segm_AP_worst_case"] == 100 and res["segm_AP_adversarial"] == 100


# --- semantic segmentation: mASSC, sub-pixel and adversarial ---------------------------

ALL_SEMANTIC = ["crop_pairs", "massc_circular", "massc_zero", "subpixel", "adversarial"]


def test_a_per_pixel_segmenter_agrees_everywhere_under_every_protocol():
    res = semantic_consistency(
        semantic_stub(False), semantic_inputs(), num_pairs=3, max_shift=16, protocols=ALL_SEMANTIC
    )
    for key in ("consistency", "massc_circular", "massc_zero", "subpixel_mean", "adversarial"):
        assert res[key] == 100, key
    assert protocol_cost(res) == {
        "crop_pairs": 6,
        "massc_circular": 3,
        "massc_zero": 3,
        "subpixel": 6,
        "adversarial": 24,
        "total": 6 + 1 + 3 + 3 + 6 + 24,
    }


def reads_seven_columns_left(inputs):
    """Labels each pixel by the pixel 7 columns to its left, wrapping around: exactly
    equivariant under circular shifts, not under shifts that fill a border with zeros."""
    outputs = []
    for inp in inputs:
        labels = (torch.roll(inp["image"][0], 7, dims=1) > 128).long()
        outputs.append({"sem_seg": torch.nn.functional.one_hot(labels, 2).permute(2, 0, 1).float()})
    return outputs


def test_a_circularly_equivariant_segmenter_scores_full_circular_massc_only():
    res = semantic_consistency(
        reads_seven_columns_left,
        semantic_inputs(),
        num_pairs=4,
        max_shift=16,
        protocols=["massc_circular", "massc_zero"],
    )
    assert res["massc_circular"] == 100
    assert res["massc_zero"] < 100


STRIPE = 8


def stripes(h, w):
    """Vertical stripes STRIPE px wide: class 1 on odd stripes."""
    return torch.from_numpy(((np.arange(w) // STRIPE) % 2)[None].repeat(h, 0)).long()


def blind_to_input(inputs):
    """The same stripes whatever the image: its predictions never move."""
    return [
        {
            "sem_seg": torch.nn.functional.one_hot(stripes(*i["image"].shape[-2:]), 2)
            .permute(2, 0, 1)
            .float()
        }
        for i in inputs
    ]


def test_a_segmenter_blind_to_the_input_scores_what_its_stripes_give():
    size = (40, 64)
    res = semantic_consistency(
        blind_to_input,
        semantic_inputs(size=size),
        protocols=["subpixel", "adversarial"],
        subpixel_shifts=[0.25, 0.75],
        adversarial_max_shift=2,
    )
    p = stripes(*size).numpy()
    h, w = size
    # Moved by 3/4 px right, the stripes' logits change hands at 3/4: each column takes
    # its left neighbour's label. Column 0 (zero-filled) is left out.
    assert res["subpixel_right0.75"] == pytest.approx(100 * np.mean(p[:, 1:] == p[:, :-1]))
    assert res["subpixel_right0.25"] == 100
    assert res["subpixel_down0.75"] == 100  # the stripes do not change downwards
    # Adversarial: the unmoved stripes against the content moved by (dx, dy), on the
    # overlap; the worst is a 2 px shift sideways.
    worst = min(
        np.mean(
            p[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)]
            == p[max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)]
        )
        for dy in range(-2, 3)
        for dx in range(-2, 3)
        if dx or dy
    )
    assert worst < 1 and res["adversarial"] == pytest.approx(100 * worst)


# --- settings ---------------------------------------------------------------------------


def test_protocols_of_the_other_task_only_are_an_error_naming_the_key():
    with pytest.raises(ConfigError) as e:
        semantic_consistency(semantic_stub(False), semantic_inputs(), protocols=["grid"])
    assert str(e.value) == (
        "TEST.SHIFT_CONSISTENCY.PROTOCOLS=['grid'] names no protocol for this dataset's task: "
        "add some of crop_pairs, massc_circular, massc_zero, subpixel, adversarial"
    )


def test_an_adversarial_grid_wider_than_the_input_is_an_error_naming_the_key():
    with pytest.raises(ConfigError) as e:
        semantic_consistency(
            semantic_stub(False),
            semantic_inputs(size=(40, 52)),
            protocols=["adversarial"],
            adversarial_max_shift=40,
        )
    assert str(e.value) == (
        "TEST.SHIFT_CONSISTENCY.ADVERSARIAL_MAX_SHIFT=40 moves the (40, 52) test input of "
        "image0.png wholly out of frame: set it below 40"
    )
