"""Bad dataset files are named; a bad training image is skipped (logged), a bad
evaluation image stops evaluation."""

import io
import json
import logging

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.data.detection_utils import read_image
from PIL import Image

from pasa_det.config import load_config
from pasa_det.data.checks import BadImageError, DatasetError, load_dataset_dicts
from pasa_det.data.prepare import prepare_dataset
from pasa_det.data.resumable import PositionSeededDataset
from pasa_det.engine import Trainer
from tests.helpers.paths import QUICK_INSTANCE


def png_bytes(seed=0):
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(
        buffer, "PNG"
    )
    return buffer.getvalue()


def coco_dataset(tmp_path, name, files, write=None):
    """A registered COCO-format dataset referencing `files` (written by `write(name)`)."""
    images = tmp_path / "images"
    images.mkdir(exist_ok=True)
    for i, f in enumerate(files):
        if write is None or write(f):
            (images / f).write_bytes(png_bytes(i))
    annotations = {
        "images": [
            {"id": i + 1, "file_name": f, "width": 32, "height": 32} for i, f in enumerate(files)
        ],
        "annotations": [],
        "categories": [{"id": 1, "name": "shape"}],
    }
    json_file = tmp_path / "annotations.json"
    json_file.write_text(json.dumps(annotations))
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    register_coco_instances(name, {}, str(json_file), str(images))
    return json_file, images


def test_annotation_file_that_is_not_json_is_named(tmp_path):
    json_file, _ = coco_dataset(tmp_path, "reliability_not_json", ["a.png"])
    json_file.write_text("<html>404</html>")
    with pytest.raises(
        DatasetError,
        match=r"'reliability_not_json': annotation file .*annotations\.json is not valid JSON",
    ):
        load_dataset_dicts(["reliability_not_json"])


def test_annotations_referencing_missing_images_are_named(tmp_path):
    coco_dataset(
        tmp_path,
        "reliability_missing_images",
        ["a.png", "b.png", "c.png"],
        write=lambda f: f == "a.png",
    )
    with pytest.raises(
        DatasetError,
        match=r"2 of the 3 images referenced by .*annotations\.json do not exist, "
        r"e\.g\. .*images/b\.png, .*images/c\.png",
    ):
        load_dataset_dicts(["reliability_missing_images"], filter_empty=False)


def test_cityscapes_without_train_id_labels_names_the_folder_and_the_script(tmp_path):
    gt = tmp_path / "gtFine" / "train" / "aachen"
    gt.mkdir(parents=True)
    (gt / "aachen_000000_000019_gtFine_labelIds.png").write_bytes(png_bytes())
    (tmp_path / "leftImg8bit" / "train").mkdir(parents=True)
    MetadataCatalog.get("reliability_cityscapes").set(
        image_dir=str(tmp_path / "leftImg8bit" / "train"),
        gt_dir=str(tmp_path / "gtFine" / "train"),
        evaluator_type="cityscapes_sem_seg",
    )
    with pytest.raises(
        FileNotFoundError,
        match=r"gtFine/train has no \*_labelTrainIds\.png labels; "
        r"make them with `python datasets/prepare_cityscapes\.py`",
    ):
        prepare_dataset("reliability_cityscapes")
    (gt / "aachen_000000_000019_gtFine_labelTrainIds.png").write_bytes(png_bytes())
    prepare_dataset("reliability_cityscapes")


def read(d):
    return read_image(d["file_name"])


def test_bad_training_image_is_logged_and_replaced_deterministically(tmp_path, caplog):
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(png_bytes()[:100])
    dicts = [{"file_name": str(truncated)}]
    for i in range(4):
        (tmp_path / f"good{i}.png").write_bytes(png_bytes(i))
        dicts.append({"file_name": str(tmp_path / f"good{i}.png")})
    dataset = PositionSeededDataset(dicts, read, seed=0, skip_bad_images=True)
    with caplog.at_level(logging.WARNING):
        first = dataset[(0, 0)]
    assert np.array_equal(first, dataset[(0, 0)])
    assert any(np.array_equal(first, read(d)) for d in dicts[1:])
    assert (
        f"skipped a training image: cannot read {truncated}: OSError: image file is truncated"
        in caplog.text
    )
    with pytest.raises(BadImageError, match=f"cannot read {truncated}"):
        PositionSeededDataset(dicts, read, seed=0, skip_bad_images=False)[(0, 0)]


def test_a_training_set_of_unreadable_images_is_one_error(tmp_path):
    (tmp_path / "truncated.png").write_bytes(png_bytes()[:100])
    dicts = [{"file_name": str(tmp_path / "truncated.png")}] * 2
    with pytest.raises(DatasetError) as e:
        PositionSeededDataset(dicts, read, seed=0, skip_bad_images=True)[(0, 0)]
    assert str(e.value) == (
        "2 samples in a row of the 2-image training set could not be read or were dropped by "
        "the mapper (the warnings above name the unreadable files): fix or replace those files"
    )


@pytest.mark.parametrize("workers", [0, 1])
def test_bad_evaluation_image_stops_evaluation_naming_it_and_the_fix(tmp_path, workers):
    """In one line also from a data-loader worker, whose error torch re-raises with the
    worker's traceback in its message."""
    json_file, images = coco_dataset(tmp_path, "reliability_eval_bad_image", ["a.png", "b.png"])
    (images / "b.png").write_bytes(png_bytes()[:200])  # truncated
    cfg = load_config(
        QUICK_INSTANCE,
        ["DATASETS.TEST", "('reliability_eval_bad_image',)", "DATALOADER.NUM_WORKERS", str(workers)]
        + ["MODEL.ROI_HEADS.NUM_CLASSES", "1"],
    )
    loader = Trainer.build_test_loader(cfg, "reliability_eval_bad_image")
    with pytest.raises(DatasetError) as e:  # a user error (tools print "error: …"), and
        list(loader)
    assert isinstance(e.value, BadImageError) and isinstance(e.value, OSError)  # still these
    assert str(e.value) == (
        f"cannot read {images / 'b.png'}: OSError: image file is truncated. Evaluation does "
        "not skip images (the metrics would describe a smaller set): replace the file, or "
        f"remove it and its annotations from {json_file}"
    )
