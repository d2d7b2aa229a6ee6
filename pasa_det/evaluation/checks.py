"""What would stop an evaluation, checked before training rather than after it."""

from typing import Dict, Optional

from detectron2.data import MetadataCatalog

from pasa_det.data.checks import read_annotation_file
from pasa_det.data.prepare import prepare_dataset

from .coco import check_coco_ground_truth
from .shift_consistency import YACS_KEY, check_instance_shifts_fit

# Evaluator types that pasa_det scores with COCOEvaluator (Trainer.build_evaluator).
COCO_EVALUATED = ("coco", "coco_panoptic_seg")


def check_evaluation_data(
    names, instance_shifts: Optional[Dict] = None, shift_key: str = YACS_KEY
) -> None:
    """The COCO-format sets of `names` have ground truth to evaluate against (their
    malformed annotations named once), and every shift that instance shift consistency
    will run leaves part of every image in frame. `instance_shifts`: the keyword arguments
    of check_instance_shifts_fit (protocols, shifts, adversarial_max_shift) set under
    `shift_key`; None: not run. The evaluators check the same when they are built, which
    is after training; this costs one read of each annotation file."""
    for name in names:
        meta = MetadataCatalog.get(name)
        if meta.get("evaluator_type", None) not in COCO_EVALUATED or not meta.get("json_file"):
            continue
        prepare_dataset(name)
        dataset = read_annotation_file(name)
        check_coco_ground_truth(name, dataset)
        if instance_shifts is not None:
            images = dataset.get("images", [])
            check_instance_shifts_fit(images, name, key=shift_key, **instance_shifts)
