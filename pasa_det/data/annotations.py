"""Malformed instance annotations: left out of training and evaluation alike, and named
in one warning per dataset.

A box must be [x, y, width, height] with a positive width and height; a polygon needs 3
points and an even number of coordinates. detectron2's COCO loader drops such polygons from
training data (and an annotation without any valid polygon) with a count and no names,
keeps such boxes, and pycocotools fails on such polygons in the ground truth. Refusing them
would refuse COCO train2017, which has a few, so the same annotations are left out
everywhere: dataset dicts (`clean_dataset_dicts`) and evaluation ground truth
(`clean_coco_dataset`) follow one rule (`clean_annotation`).
"""

import logging
import numbers
from typing import List, NamedTuple, Tuple

from detectron2.structures import BoxMode
from detectron2.utils import comm

logger = logging.getLogger(__name__)
# How many malformed annotations a warning names.
SHOWN = 5
_reported = set()  # (dataset, file) checked in this process: one warning each


class Finding(NamedTuple):
    """One annotation left out (`dropped`), or a kept one that lost some polygons."""

    annotation_id: object
    file_name: str
    problem: str
    dropped: bool


def polygon_problem(polygon) -> str:
    """What makes one polygon of a COCO segmentation unusable; '' if nothing."""
    if not isinstance(polygon, (list, tuple)):
        return f"a polygon that is not a list of coordinates ({type(polygon).__name__})"
    if len(polygon) % 2:
        return f"a polygon of {len(polygon)} coordinates (an odd count)"
    if len(polygon) < 6:
        return f"a polygon of {len(polygon) // 2} point{'' if len(polygon) == 2 else 's'}"
    return ""


def _box_size(annotation):
    """(width, height) of the annotation's box, in its bbox_mode (COCO: XYWH); None without one."""
    box = annotation.get("bbox")
    if box is None or len(box) < 4:
        return None
    if annotation.get("bbox_mode", BoxMode.XYWH_ABS) in (BoxMode.XYXY_ABS, BoxMode.XYXY_REL):
        return box[2] - box[0], box[3] - box[1]
    return box[2], box[3]


def _positive(value) -> bool:
    return isinstance(value, numbers.Real) and value > 0  # NaN is not


def clean_annotation(annotation) -> Tuple[bool, str]:
    """(keep it, what is wrong or '') for a COCO or detectron2 annotation. A kept one loses
    its unusable polygons in place, as detectron2's loader drops them."""
    size = _box_size(annotation)
    if size is None:
        return False, "no box [x, y, width, height]"
    if not (_positive(size[0]) and _positive(size[1])):
        return False, f"a box of width {size[0]} and height {size[1]}"
    polygons = annotation.get("segmentation")
    if not isinstance(polygons, list):  # RLE, or no mask
        return True, ""
    problems = [polygon_problem(p) for p in polygons]
    first = next((p for p in problems if p), "")
    if not first:
        return True, ""
    valid = [p for p, problem in zip(polygons, problems) if not problem]
    if not valid:
        return False, first
    annotation["segmentation"] = valid
    return True, f"{first} (that polygon left out, the annotation kept)"


def clean_coco_dataset(dataset: dict) -> List[Finding]:
    """Leave the malformed annotations out of a COCO-format dict (a loaded annotation file),
    in place; returns what was left out."""
    files = {image.get("id"): image.get("file_name", "?") for image in dataset.get("images", [])}
    kept, findings = [], []
    for annotation in dataset.get("annotations", []):
        keep, problem = clean_annotation(annotation)
        if problem:
            file_name = files.get(annotation.get("image_id"), "?")
            findings.append(Finding(annotation.get("id"), file_name, problem, not keep))
        if keep:
            kept.append(annotation)
    if "annotations" in dataset:
        dataset["annotations"] = kept
    return findings


def clean_dataset_dicts(dicts) -> List[Finding]:
    """Leave the malformed annotations out of detectron2 dataset dicts, in place."""
    findings = []
    for record in dicts:
        kept = []
        for annotation in record["annotations"]:
            keep, problem = clean_annotation(annotation)
            if problem:
                findings.append(
                    Finding(annotation.get("id"), record["file_name"], problem, not keep)
                )
            if keep:
                kept.append(annotation)
        record["annotations"] = kept
    return findings


def count_usable(annotations) -> int:
    """Annotations a detector can learn from or be scored against: not crowd regions."""
    return sum(1 for a in annotations if not a.get("iscrowd", 0))


def needs_report(dataset_name: str, source: str) -> bool:
    """Whether this process still owes the warning about a dataset (the main one only)."""
    return (dataset_name, source) not in _reported and comm.is_main_process()


def report_once(dataset_name: str, source: str, findings: List[Finding]) -> None:
    """One warning per dataset and process (the main one) naming the first malformed
    annotations: training and every evaluation of the set leave out the same ones."""
    if not needs_report(dataset_name, source):
        return
    _reported.add((dataset_name, source))
    if not findings:
        return
    dropped = sum(f.dropped for f in findings)
    trimmed = len(findings) - dropped
    counts = [f"{dropped} malformed annotation{'s' * (dropped != 1)} left out"] if dropped else []
    if trimmed:
        counts.append(f"{trimmed} kept without {'their' if trimmed > 1 else 'its'} bad polygons")
    shown = "; ".join(
        f"id {f.annotation_id} ({f.file_name}): {f.problem}" for f in findings[:SHOWN]
    )
    more = f"; and {len(findings) - SHOWN} more" if len(findings) > SHOWN else ""
    logger.warning(
        f"dataset {dataset_name!r} ({source}): {', '.join(counts)}, in training and "
        f"evaluation alike: {shown}{more}. Fix {'them' if len(findings) > 1 else 'it'} in "
        f"{source} to use {'them' if len(findings) > 1 else 'it'}."
    )
