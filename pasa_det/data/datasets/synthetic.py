"""Register the embedded synthetic sets; their files are generated on first use."""
import os

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json

from ..synthetic import CLASSES, write_instance_split

# name -> (folder under the datasets root, number of images, seed)
SYNTHETIC_INSTANCE_SPLITS = {
    "synthetic_instances_train": ("synthetic/instances_train", 600, 1),
    "synthetic_instances_val": ("synthetic/instances_val", 100, 2),
}


def prepare_synthetic(name: str) -> None:
    """Generate the files of synthetic split `name` if they are not there yet."""
    meta = MetadataCatalog.get(name)
    write_instance_split(meta.split_root, meta.num_images, meta.seed)


def _load(name: str):
    prepare_synthetic(name)
    meta = MetadataCatalog.get(name)
    return load_coco_json(meta.json_file, meta.image_root, name)


def register_synthetic(root: str) -> None:
    for name, (folder, num_images, seed) in SYNTHETIC_INSTANCE_SPLITS.items():
        split_root = os.path.join(root, folder)
        DatasetCatalog.register(name, lambda name=name: _load(name))
        MetadataCatalog.get(name).set(
            json_file=os.path.join(split_root, "annotations.json"),
            image_root=os.path.join(split_root, "images"),
            split_root=split_root,
            num_images=num_images,
            seed=seed,
            evaluator_type="coco",
            thing_classes=list(CLASSES),
            prepare=prepare_synthetic,
        )
