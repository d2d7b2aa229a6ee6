"""Make sure a registered dataset's files are there before anything reads them."""
import os

from detectron2.data import MetadataCatalog

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
            raise FileNotFoundError(
                f"Dataset '{name}' needs {path} ({key}), which does not exist. Datasets are read from "
                f"$DETECTRON2_DATASETS (now {os.path.abspath(root)}); "
                + _HOW_TO_GET.get(family, "register the dataset with its real paths")
            )
