"""COCO evaluation against the ground truth that training uses: without malformed annotations."""

import contextlib
import io

from detectron2.evaluation import COCOEvaluator

from pasa_det.data import annotations
from pasa_det.data.checks import DatasetError, dataset_source
from pasa_det.detectron2_versions import coco_ground_truth


def check_coco_ground_truth(dataset_name: str, dataset: dict) -> bool:
    """Leave the malformed annotations out of loaded COCO ground truth, in place, as
    training does, in one warning per dataset; returns whether any changed. Raises
    DatasetError when nothing is left to evaluate against. A file without an "annotations"
    key (COCO test-dev) is left alone: detectron2 then only writes the predictions."""
    if "annotations" not in dataset:
        return False
    total = len(dataset["annotations"])
    findings = annotations.clean_coco_dataset(dataset)
    source = dataset_source(dataset_name)
    annotations.report_once(dataset_name, source, findings)
    if not annotations.count_usable(dataset["annotations"]):
        why = (
            f"all {total} of its annotations are malformed or crowd regions"
            if total
            else 'its "annotations" list is empty'
        )
        raise DatasetError(
            f"dataset {dataset_name!r} ({source}) has no annotations to evaluate against: "
            f"{why}. Add annotations, or remove {dataset_name!r} from DATASETS.TEST (from a "
            'file without an "annotations" key, as COCO test-dev, only predictions are written)'
        )
    return bool(findings)


class CheckedCOCOEvaluator(COCOEvaluator):
    """detectron2's COCOEvaluator, scored against ground truth without the malformed
    annotations training leaves out: pycocotools fails on polygons of fewer than 3 points
    and scores boxes of no size. Its pycocotools and its C++ (detectron2 main) evaluation
    both read the cleaned ground truth."""

    def __init__(self, dataset_name, *args, **kwargs):
        super().__init__(dataset_name, *args, **kwargs)
        ground_truth = coco_ground_truth(self)
        if check_coco_ground_truth(dataset_name, ground_truth.dataset):
            with contextlib.redirect_stdout(io.StringIO()):  # pycocotools: "creating index..."
                ground_truth.createIndex()
