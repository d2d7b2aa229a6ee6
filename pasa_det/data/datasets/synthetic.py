"""Register the embedded synthetic sets; their files are generated on first use."""

import os

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json
from detectron2.data.datasets.builtin_meta import _get_builtin_metadata
from detectron2.data.datasets.cityscapes import load_cityscapes_instances, load_cityscapes_semantic

from ..synthetic_generator import (
    CLASSES,
    SEMANTIC_CLASSES,
    write_instance_split,
    write_semantic_split,
)

# name -> (folder under the datasets root, number of images, seed)
SYNTHETIC_INSTANCE_SPLITS = {
    "synthetic_instances_train": ("synthetic/instances_train", 600, 1),
    "synthetic_instances_val": ("synthetic/instances_val", 100, 2),
}
SYNTHETIC_SEMANTIC_SPLITS = {
    "synthetic_sem_seg_train": ("synthetic/sem_seg_train", 400, 3),
    "synthetic_sem_seg_val": ("synthetic/sem_seg_val", 50, 4),
}
# Instance views of the Cityscapes-layout splits: read by detectron2's Cityscapes loader
# (Cityscapes' 8 thing classes, of which the shapes use 3) and scored by cityscapesscripts.
SYNTHETIC_CITYSCAPES_INSTANCE_SPLITS = {
    "synthetic_cityscapes_instances_train": "synthetic_sem_seg_train",
    "synthetic_cityscapes_instances_val": "synthetic_sem_seg_val",
}


def _prepare_instances(name: str) -> None:
    meta = MetadataCatalog.get(name)
    write_instance_split(meta.split_root, meta.num_images, meta.seed)


def _prepare_semantic(name: str) -> None:
    meta = MetadataCatalog.get(name)
    write_semantic_split(meta.split_root, meta.split, meta.num_images, meta.seed)


def _load_instances(name: str):
    _prepare_instances(name)
    meta = MetadataCatalog.get(name)
    return load_coco_json(meta.json_file, meta.image_root, name)


def _load_semantic(name: str):
    _prepare_semantic(name)
    meta = MetadataCatalog.get(name)
    return load_cityscapes_semantic(meta.image_dir, meta.gt_dir)


def _prepare_cityscapes_instances(name: str) -> None:
    _prepare_semantic(MetadataCatalog.get(name).semantic_split)


def _load_cityscapes_instances(name: str):
    _prepare_cityscapes_instances(name)
    meta = MetadataCatalog.get(name)
    return load_cityscapes_instances(
        meta.image_dir, meta.gt_dir, from_json=False, to_polygons=False
    )


def register_synthetic(root: str) -> None:
    for name, (folder, num_images, seed) in SYNTHETIC_INSTANCE_SPLITS.items():
        split_root = os.path.join(root, folder)
        DatasetCatalog.register(name, lambda name=name: _load_instances(name))
        MetadataCatalog.get(name).set(
            json_file=os.path.join(split_root, "annotations.json"),
            image_root=os.path.join(split_root, "images"),
            split_root=split_root,
            num_images=num_images,
            seed=seed,
            evaluator_type="coco",
            thing_classes=list(CLASSES),
            prepare=_prepare_instances,
        )
    for name, (folder, num_images, seed) in SYNTHETIC_SEMANTIC_SPLITS.items():
        split_root, split = os.path.join(root, folder), name.rsplit("_", 1)[1]
        DatasetCatalog.register(name, lambda name=name: _load_semantic(name))
        MetadataCatalog.get(name).set(
            image_dir=os.path.join(split_root, "leftImg8bit", split),
            gt_dir=os.path.join(split_root, "gtFine", split),
            split_root=split_root,
            split=split,
            num_images=num_images,
            seed=seed,
            evaluator_type="sem_seg",
            stuff_classes=list(SEMANTIC_CLASSES),
            ignore_label=255,
            prepare=_prepare_semantic,
        )
    for name, semantic_split in SYNTHETIC_CITYSCAPES_INSTANCE_SPLITS.items():
        semantic = MetadataCatalog.get(semantic_split)
        DatasetCatalog.register(name, lambda name=name: _load_cityscapes_instances(name))
        MetadataCatalog.get(name).set(
            image_dir=semantic.image_dir,
            gt_dir=semantic.gt_dir,
            semantic_split=semantic_split,
            evaluator_type="cityscapes_instance",
            prepare=_prepare_cityscapes_instances,
            **_get_builtin_metadata("cityscapes"),
        )
