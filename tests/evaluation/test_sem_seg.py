import math
import os

import numpy as np
import torch
from detectron2.data import DatasetCatalog
from PIL import Image

from pasa_det.config import load_config
from pasa_det.engine import Trainer
from pasa_det.evaluation import scores_from_confusion
from tests.helpers.paths import ROOT


def test_scores_from_hand_made_confusion_matrix():
    # rows: ground truth, columns: prediction
    conf = np.array([[8, 2, 0], [1, 3, 0], [0, 0, 0]])
    res = scores_from_confusion(conf, ["a", "b", "c"])
    assert math.isclose(res["IoU-a"], 100 * 8 / (10 + 9 - 8))
    assert math.isclose(res["IoU-b"], 100 * 3 / (4 + 5 - 3))
    assert math.isnan(res["IoU-c"])  # absent everywhere: left out of the means
    assert math.isclose(res["mIoU"], (res["IoU-a"] + res["IoU-b"]) / 2)
    assert math.isclose(res["pACC"], 100 * 11 / 14)
    assert math.isclose(res["mACC"], 100 * (8 / 10 + 3 / 4) / 2)
    assert math.isclose(res["fwIoU"], res["IoU-a"] * 10 / 14 + res["IoU-b"] * 4 / 14)


def test_evaluator_on_the_synthetic_cityscapes_split_scores_perfect_and_constant_predictions():
    name = "synthetic_sem_seg_val"
    dicts = DatasetCatalog.get(name)  # generates the split, then loads it as Cityscapes
    cfg = load_config(
        os.path.join(
            ROOT,
            "configs/Cityscapes-SemanticSegmentation/semantic_R_50_FPN_poly_90k_bs16_pasa.yaml",
        )
    )
    evaluator = Trainer.build_evaluator(cfg, name, output_folder=None)

    def one_hot(labels):
        return torch.nn.functional.one_hot(torch.as_tensor(labels), 4).permute(2, 0, 1).float()

    evaluator.reset()
    for d in dicts:
        gt = np.asarray(Image.open(d["sem_seg_file_name"]), dtype=np.int64)
        evaluator.process([{"file_name": d["file_name"]}], [{"sem_seg": one_hot(gt)}])
    perfect = evaluator.evaluate()["sem_seg"]
    assert perfect["mIoU"] == 100 and perfect["pACC"] == 100

    evaluator.reset()
    for d in dicts:
        evaluator.process(
            [{"file_name": d["file_name"]}],
            [{"sem_seg": one_hot(np.zeros((d["height"], d["width"]), np.int64))}],
        )
    background_only = evaluator.evaluate()["sem_seg"]
    assert background_only["IoU-circle"] == 0 and 0 < background_only["IoU-background"] < 100
    assert math.isclose(background_only["mIoU"], background_only["IoU-background"] / 4)
