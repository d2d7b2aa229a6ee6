"""Cityscapes instance AP (detectron2's evaluator over cityscapesscripts) on the
synthetic split written in Cityscapes' format."""

import os

import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Instances
from pycocotools import mask as mask_util

from pasa_det.config import load_config
from pasa_det.data.synthetic_generator import CITYSCAPES_LABEL_IDS
from pasa_det.engine import Trainer
from tests.helpers.paths import ROOT

NAME = "synthetic_cityscapes_instances_val"


def ground_truth_as_predictions(d, relabel=lambda c: c):
    instances = Instances((d["height"], d["width"]))
    instances.pred_masks = torch.stack(
        [torch.from_numpy(mask_util.decode(a["segmentation"])).bool() for a in d["annotations"]]
    )
    instances.pred_classes = torch.tensor([relabel(a["category_id"]) for a in d["annotations"]])
    instances.scores = torch.ones(len(d["annotations"]))
    return {"instances": instances}


def evaluate(dicts, relabel=lambda c: c, output_dir=None):
    cfg = load_config(
        os.path.join(ROOT, "configs/Cityscapes-InstanceSegmentation/mask_rcnn_R_50_FPN_pasa.yaml")
    )
    evaluator = Trainer.build_evaluator(cfg, NAME, output_folder=output_dir)
    evaluator.reset()
    for d in dicts:
        evaluator.process(
            [{"file_name": d["file_name"]}], [ground_truth_as_predictions(d, relabel)]
        )
    return evaluator.evaluate()["segm"]


def test_loader_reads_the_shapes_as_cityscapes_classes():
    dicts = DatasetCatalog.get(NAME)
    thing_classes = MetadataCatalog.get(NAME).thing_classes
    used = {thing_classes[a["category_id"]] for d in dicts for a in d["annotations"]}
    assert used == {"person", "car", "bicycle"}
    from cityscapesscripts.helpers.labels import name2label

    assert {name2label[c].id for c in used} == set(CITYSCAPES_LABEL_IDS.values())


def test_ground_truth_scores_full_ap_and_wrong_classes_score_none(tmp_path):
    dicts = DatasetCatalog.get(NAME)  # cityscapesscripts wants a prediction for every image
    perfect = evaluate(dicts, output_dir=str(tmp_path))
    # cityscapesscripts' matches.json lands in the output folder, not the working directory.
    assert (tmp_path / "cityscapes_matches.json").exists() and not os.path.exists("matches.json")
    assert perfect["AP"] > 99.9 and perfect["AP50"] > 99.9
    thing_classes = MetadataCatalog.get(NAME).thing_classes
    rider = thing_classes.index("rider")  # a class the synthetic set never uses
    assert evaluate(dicts, relabel=lambda c: rider)["AP"] == 0


def test_a_numpy_without_in1d_is_named_before_scoring(monkeypatch):
    import numpy as np

    monkeypatch.delattr(np, "in1d", raising=False)  # NumPy >= 2.4
    with pytest.raises(RuntimeError, match=r"np\.in1d.*pip install 'numpy<2\.4'"):
        evaluate(DatasetCatalog.get(NAME)[:2])
