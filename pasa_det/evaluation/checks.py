"""What would stop an evaluation, checked before training rather than after it."""

from detectron2.data import MetadataCatalog

from pasa_det.data.checks import read_annotation_file
from pasa_det.data.prepare import prepare_dataset

from .coco import check_coco_ground_truth
from .shift_consistency import YACS_KEY, check_adversarial_shift_fits, check_shifts_fit

# Evaluator types that pasa_det scores with COCOEvaluator (Trainer.build_evaluator).
COCO_EVALUATED = ("coco", "coco_panoptic_seg")


def check_evaluation_data(
    names, shifts=None, shift_key: str = YACS_KEY, adversarial_max_shift=None
) -> None:
    """The COCO-format sets of `names` have ground truth to evaluate against (their
    malformed annotations named once), and every image is larger than the largest of
    `shifts` and than `adversarial_max_shift` (instance shift consistency, set by
    `shift_key`; None: not run). The evaluators check the same when they are built, which
    is after training; this costs one read of each annotation file."""
    for name in names:
        meta = MetadataCatalog.get(name)
        if meta.get("evaluator_type", None) not in COCO_EVALUATED or not meta.get("json_file"):
            continue
        prepare_dataset(name)
        dataset = read_annotation_file(name)
        check_coco_ground_truth(name, dataset)
        images = dataset.get("images", [])
        if shifts is not None:
            check_shifts_fit(shifts, images, name, shift_key)
        if adversarial_max_shift is not None:
            check_adversarial_shift_fits(adversarial_max_shift, images, name, shift_key)
