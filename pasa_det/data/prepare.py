"""Make sure a registered dataset's files are there before anything reads them."""

import os

from detectron2.data import MetadataCatalog

from .checks import MissingDatasetError

_HOW_TO_GET = {
    "coco": "see datasets/README.md (COCO 2017: train2017/, val2017/, annotations/)",
    "cityscapes": "see datasets/README.md; then run `python datasets/prepare_cityscapes.py` for the labels",
}


def prepare_dataset(name: str) -> None:
    """Generate an embedded synthetic split, or fail with the missing path and what
    to run when a real dataset is not where its registration says."""
    meta = MetadataCatalog.get(name)
    prepare = meta.get("prepare", None)
    if prepare is not None:
        prepare(name)
        return
    family = "cityscapes" if "cityscapes" in name else "coco" if "coco" in name else None
    for key in ("json_file", "image_root", "image_dir", "gt_dir", "sem_seg_root"):
        path = meta.get(key, None)
        if path and not os.path.exists(path):
            root = os.getenv("DETECTRON2_DATASETS", "datasets")
            raise MissingDatasetError(
                f"Dataset '{name}' needs {path} ({key}), which does not exist. Datasets are read from "
                f"$DETECTRON2_DATASETS (now {os.path.abspath(root)}); "
                + _HOW_TO_GET.get(family, "register the dataset with its real paths")
            )
    if meta.get("evaluator_type", None) == "cityscapes_sem_seg":
        _check_train_id_labels(name, meta.gt_dir)


def _check_train_id_labels(name: str, gt_dir: str) -> None:
    """Cityscapes ships labelIds; the trainIds that semantic segmentation reads are made
    by a script. Stops at the first label found, so a prepared set costs one lookup."""
    for _, _, files in os.walk(gt_dir):
        if any(f.endswith("_labelTrainIds.png") for f in files):
            return
    raise MissingDatasetError(
        f"Dataset '{name}': {gt_dir} has no *_labelTrainIds.png labels; make them with "
        "`python datasets/prepare_cityscapes.py` (needs `pip install cityscapesscripts`)"
    )
