"""Multi-process (gloo, CPU) evaluation where one process gets no image still
completes, with the metrics of a single process."""

import json
import os

import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json
from detectron2.utils import comm

from pasa_det.config import load_config
from pasa_det.data.synthetic_generator import CLASSES, write_instance_split
from pasa_det.engine import Trainer, launch
from tests.helpers.paths import QUICK_INSTANCE

NAME = "test_one_image"


def evaluate_one_image_set(root: str, output_dir: str):
    """Runs in every process: register the 1-image set, build the same untrained model
    (fixed seed), evaluate, and let the main process write the results."""
    json_file, image_root = os.path.join(root, "annotations.json"), os.path.join(root, "images")
    if NAME not in DatasetCatalog.list():
        DatasetCatalog.register(NAME, lambda: load_coco_json(json_file, image_root, NAME))
        MetadataCatalog.get(NAME).set(
            json_file=json_file,
            image_root=image_root,
            evaluator_type="coco",
            thing_classes=list(CLASSES),
        )
    cfg = load_config(
        QUICK_INSTANCE,
        [
            "DATASETS.TEST",
            f"('{NAME}',)",
            "DATALOADER.NUM_WORKERS",
            "0",
            "MODEL.ROI_HEADS.SCORE_THRESH_TEST",
            "0.0",
            "TEST.DETECTIONS_PER_IMAGE",
            "5",
            "OUTPUT_DIR",
            output_dir,
        ],
    )
    torch.manual_seed(0)
    model = Trainer.build_model(cfg)
    results = Trainer.test(cfg, model)
    if comm.is_main_process():
        with open(os.path.join(output_dir, "results.json"), "w") as f:
            json.dump({"world_size": comm.get_world_size(), "results": results}, f)


def test_two_processes_one_without_images_give_the_single_process_metrics(tmp_path):
    write_instance_split(str(tmp_path / "data"), num_images=1, seed=7)
    evaluate_one_image_set(str(tmp_path / "data"), str(tmp_path / "one"))
    launch(
        evaluate_one_image_set,
        2,
        dist_url="auto",
        args=(str(tmp_path / "data"), str(tmp_path / "two")),
    )
    one, two = (json.loads((tmp_path / run / "results.json").read_text()) for run in ("one", "two"))
    assert (one["world_size"], two["world_size"]) == (1, 2)
    assert set(one["results"]) == {"bbox", "segm"}
    assert json.dumps(one["results"]) == json.dumps(
        two["results"]
    )  # NaN (no large objects) compares equal as text
    # An untrained model scores ~0 AP: compare what was scored, too.
    detections = [
        sorted(
            json.dumps(d, sort_keys=True)
            for d in json.loads(
                (tmp_path / run / "inference" / NAME / "coco_instances_results.json").read_text()
            )
        )
        for run in ("one", "two")
    ]
    assert len(detections[0]) == 5 and detections[0] == detections[1]
