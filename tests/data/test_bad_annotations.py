"""Malformed annotations (a polygon of fewer than 3 points or an odd coordinate count, a
box without positive width and height) are left out of training and evaluation alike, named
in one warning; a dataset with nothing to train on or evaluate against is one error."""

import json
import logging

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, BoxMode, Instances
from detectron2.structures.masks import polygons_to_bitmask

from pasa_det.data.checks import DatasetError, load_training_dicts
from pasa_det.data.datasets.from_config import register_coco
from pasa_det.detectron2_versions import fast_cocoeval_available
from pasa_det.evaluation import CheckedCOCOEvaluator
from tests.helpers.user_dataset import write_user_dataset

# The annotation ids `malform` makes malformed in write_user_dataset(num_images=4), and
# the one it gives a second polygon of 3 coordinates.
DROPPED = {1, 4, 6}
TRIMMED = 5


def malform(annotation_file, edit=None):
    data = json.loads(annotation_file.read_text())
    by_id = {a["id"]: a for a in data["annotations"]}
    by_id[1]["segmentation"] = [[10, 10, 20, 20]]
    by_id[4]["bbox"][2] = 0
    by_id[6]["bbox"][2] = -5
    by_id[TRIMMED]["segmentation"].append([1, 2, 3])
    if edit:
        edit(data)
    annotation_file.write_text(json.dumps(data))


def user_set(tmp_path, name, edit=malform):
    """A registered 4-image COCO-format set, its annotation file changed by `edit`."""
    json_file, images = write_user_dataset(str(tmp_path), num_images=4)
    edit(tmp_path / "annotations.json")
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    register_coco(name, json_file, images)
    return json_file


def warnings_of(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "pasa_det.data.annotations"]


def test_training_leaves_malformed_annotations_out_and_names_them_once(tmp_path, caplog):
    json_file = user_set(tmp_path, "bad_annotations_train")
    with caplog.at_level(logging.WARNING, logger="pasa_det"):
        dicts = load_training_dicts(["bad_annotations_train"], filter_empty=False)
        filtered = load_training_dicts(["bad_annotations_train"])  # no second warning
    assert [d["file_name"][-7:] for d in filtered] == ["000.png", "002.jpg", "003.png"]
    boxes = sorted(tuple(a["bbox"]) for d in dicts for a in d["annotations"])
    kept = {a["id"]: a for a in json.load(open(json_file))["annotations"] if a["id"] not in DROPPED}
    assert boxes == sorted(tuple(a["bbox"]) for a in kept.values())  # nothing else lost
    (trimmed,) = [a for d in dicts for a in d["annotations"] if a["bbox"] == kept[TRIMMED]["bbox"]]
    assert trimmed["segmentation"] == kept[TRIMMED]["segmentation"][:1]
    assert warnings_of(caplog) == [
        f"dataset 'bad_annotations_train' ({json_file}): 3 malformed annotations left out, 1 "
        "kept without its bad polygons, in training and evaluation alike: id 1 (000.png): a "
        "polygon of 2 points; id 4 (002.jpg): a box of width 0 and height 34.0; id 5 (002.jpg): "
        "a polygon of 3 coordinates (an odd count) (that polygon left out, the annotation kept); "
        f"id 6 (003.png): a box of width -5 and height 24.0. Fix them in {json_file} to use them."
    ]


def perfect_predictions(dicts):
    """The training annotations of each image as predictions (score 1): AP 100 against
    ground truth that holds exactly the same annotations, and less against any other."""
    for d in dicts:
        kept = [a for a in d["annotations"] if not a.get("iscrowd", 0)]
        if not kept:
            continue
        instances = Instances((d["height"], d["width"]))
        boxes = [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in kept]
        instances.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
        instances.scores = torch.ones(len(kept))
        instances.pred_classes = torch.tensor([a["category_id"] for a in kept], dtype=torch.int64)
        masks = [polygons_to_bitmask(a["segmentation"], d["height"], d["width"]) for a in kept]
        instances.pred_masks = torch.from_numpy(np.stack(masks))
        yield {"image_id": d["image_id"]}, {"instances": instances}


@pytest.mark.parametrize(
    "fast",
    [
        False,
        pytest.param(
            True,
            marks=pytest.mark.skipif(
                not fast_cocoeval_available(), reason="detectron2's C++ COCOeval is not built"
            ),
        ),
    ],
)
def test_evaluation_leaves_out_the_same_annotations_as_training(tmp_path, caplog, fast):
    """pycocotools failed on the 2-point polygon (TypeError: Argument 'bb' has incorrect type)."""
    user_set(tmp_path, "bad_annotations_eval")
    with caplog.at_level(logging.WARNING, logger="pasa_det"):
        dicts = load_training_dicts(["bad_annotations_eval"], filter_empty=False)
        evaluator = CheckedCOCOEvaluator("bad_annotations_eval", use_fast_impl=fast)
    assert len(warnings_of(caplog)) == 1  # training's; evaluation's is the same
    assert sorted(evaluator._coco_api.getAnnIds()) == [2, 3, 5, 7, 8]
    evaluator.reset()
    for inp, out in perfect_predictions(dicts):
        evaluator.process([inp], [out])
    results = evaluator.evaluate()
    assert results["bbox"]["AP"] == pytest.approx(100) and results["segm"]["AP"] == pytest.approx(
        100
    )


def no_annotations(annotation_file):
    data = json.loads(annotation_file.read_text())
    data["annotations"] = []
    annotation_file.write_text(json.dumps(data))


def test_a_set_without_annotations_is_one_error_for_training_and_evaluation(tmp_path):
    json_file = user_set(tmp_path, "no_annotations", no_annotations)
    with pytest.raises(DatasetError) as training:
        load_training_dicts(["no_annotations"])
    assert str(training.value) == (
        f"dataset 'no_annotations' ({json_file}) has no annotations to train on: none of its 4 "
        "images has a well-formed one that is not a crowd region. Add annotations, or remove "
        "'no_annotations' from DATASETS.TRAIN"
    )
    with pytest.raises(DatasetError) as evaluation:
        CheckedCOCOEvaluator("no_annotations")
    assert str(evaluation.value) == (
        f"dataset 'no_annotations' ({json_file}) has no annotations to evaluate against: its "
        "\"annotations\" list is empty. Add annotations, or remove 'no_annotations' from "
        'DATASETS.TEST (from a file without an "annotations" key, as COCO test-dev, only '
        "predictions are written)"
    )


def test_a_set_of_only_malformed_annotations_is_one_error(tmp_path):
    def only_malformed(annotation_file):
        def keep_malformed(data):
            data["annotations"] = [a for a in data["annotations"] if a["id"] in DROPPED]

        malform(annotation_file, keep_malformed)

    user_set(tmp_path, "only_malformed", only_malformed)
    with pytest.raises(DatasetError, match="has no annotations to train on"):
        load_training_dicts(["only_malformed"])
    with pytest.raises(DatasetError, match="all 3 of its annotations are malformed or crowd"):
        CheckedCOCOEvaluator("only_malformed")


def test_a_test_set_without_an_annotations_key_only_writes_predictions(tmp_path):
    def image_info_only(annotation_file):
        data = json.loads(annotation_file.read_text())
        del data["annotations"]
        annotation_file.write_text(json.dumps(data))

    user_set(tmp_path, "image_info_only", image_info_only)
    evaluator = CheckedCOCOEvaluator("image_info_only", output_dir=str(tmp_path / "out"))
    evaluator.reset()
    assert not evaluator.evaluate()  # detectron2: nothing to score, predictions written
