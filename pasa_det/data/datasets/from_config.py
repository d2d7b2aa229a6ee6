"""Datasets named in the config (`DATASETS.REGISTER_COCO`, `DATASETS.REGISTER_CITYSCAPES`),
registered in every process that reads the config, so that training on one's own data
needs no Python and works with several processes."""

import json
import os

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.data.datasets.builtin_meta import _get_builtin_metadata
from detectron2.data.datasets.cityscapes import load_cityscapes_instances, load_cityscapes_semantic

from ..checks import DatasetError

CITYSCAPES_TASKS = ("instance", "semantic")


def _coco_classes(json_file: str):
    """Category names in id order, as detectron2's loader sets them."""
    try:
        with open(json_file) as f:
            categories = json.load(f)["categories"]
    except (OSError, ValueError, KeyError) as e:
        raise DatasetError(
            f"DATASETS.REGISTER_COCO: cannot read the categories of {json_file}: {e}"
        ) from None
    return [c["name"] for c in sorted(categories, key=lambda c: c["id"])]


def _register_once(name: str, files: dict, register) -> None:
    """Register `name` unless it is already, with the same files (each process reads the
    config once, tools may read it twice); with other files, it is an error."""
    if name in DatasetCatalog.list():
        meta = MetadataCatalog.get(name)
        if all(meta.get(key, None) == value for key, value in files.items()):
            return
        raise DatasetError(
            f"DATASETS.REGISTER_*: {name!r} is already registered with other files; pick "
            "another name"
        )
    register()


def register_coco(name: str, json_file: str, image_root: str) -> None:
    json_file, image_root = os.path.abspath(json_file), os.path.abspath(image_root)

    def register():
        register_coco_instances(name, {}, json_file, image_root)
        if os.path.isfile(json_file):  # else the missing file is named when it is read
            MetadataCatalog.get(name).set(thing_classes=_coco_classes(json_file))

    _register_once(name, {"json_file": json_file, "image_root": image_root}, register)


def register_cityscapes(name: str, image_dir: str, gt_dir: str, task: str) -> None:
    if task not in CITYSCAPES_TASKS:
        raise DatasetError(
            f"DATASETS.REGISTER_CITYSCAPES: the task of {name!r} must be one of "
            f"{CITYSCAPES_TASKS}, got {task!r}"
        )
    image_dir, gt_dir = os.path.abspath(image_dir), os.path.abspath(gt_dir)

    def register():
        meta = _get_builtin_metadata("cityscapes")
        if task == "instance":
            DatasetCatalog.register(
                name,
                lambda: load_cityscapes_instances(
                    image_dir, gt_dir, from_json=False, to_polygons=False
                ),
            )
            evaluator_type = "cityscapes_instance"
        else:
            DatasetCatalog.register(name, lambda: load_cityscapes_semantic(image_dir, gt_dir))
            evaluator_type = "cityscapes_sem_seg"
        MetadataCatalog.get(name).set(
            image_dir=image_dir,
            gt_dir=gt_dir,
            evaluator_type=evaluator_type,
            ignore_label=255,
            **meta,
        )

    _register_once(name, {"image_dir": image_dir, "gt_dir": gt_dir}, register)


def register_datasets_from_config(cfg) -> None:
    """Register what `DATASETS.REGISTER_COCO` ([name, annotations.json, image folder]) and
    `DATASETS.REGISTER_CITYSCAPES` ([name, leftImg8bit split folder, gtFine split folder,
    "instance" | "semantic"]) list."""
    for entry in cfg.DATASETS.REGISTER_COCO:
        if len(entry) != 3:
            raise DatasetError(
                "DATASETS.REGISTER_COCO entries are [name, annotations.json, image folder], "
                f"got {list(entry)}"
            )
        register_coco(*entry)
    for entry in cfg.DATASETS.REGISTER_CITYSCAPES:
        if len(entry) != 4:
            raise DatasetError(
                "DATASETS.REGISTER_CITYSCAPES entries are [name, leftImg8bit/<split> folder, "
                f"gtFine/<split> folder, instance|semantic], got {list(entry)}"
            )
        register_cityscapes(*entry)
