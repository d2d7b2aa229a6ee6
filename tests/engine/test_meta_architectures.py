"""Meta-architectures beyond Mask R-CNN on the anti-aliased backbones: a PASA RetinaNet
trains on the embedded set and is evaluated, and its class count is checked as Mask R-CNN's."""

import os

import pytest
import torch
from detectron2.utils.env import seed_all_rng

from pasa_det.config import load_config
from pasa_det.data.checks import DatasetError, check_num_classes
from pasa_det.data.prepare import prepare_dataset
from pasa_det.engine import Trainer
from tests.helpers.paths import CONFIGS

RETINANET = os.path.join(CONFIGS, "COCO-Detection", "retinanet_R_50_FPN_1x_pasa.yaml")
# fmt: off
SYNTHETIC = [
    "MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu", "MODEL.RESNETS.DEPTH", "18",
    "MODEL.RESNETS.RES2_OUT_CHANNELS", "64", "MODEL.RESNETS.NORM", "BN",
    "MODEL.BACKBONE.FREEZE_AT", "0", "MODEL.RETINANET.NUM_CLASSES", "3",
    "DATASETS.TRAIN", "('synthetic_instances_train',)", "DATASETS.TEST", "('synthetic_instances_val',)",
    "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "64", "INPUT.MIN_SIZE_TEST", "64",
    "INPUT.MAX_SIZE_TEST", "64", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.BASE_LR", "0.005",
    "SOLVER.WARMUP_ITERS", "2", "SOLVER.MAX_ITER", "6", "DATALOADER.NUM_WORKERS", "0", "SEED", "0",
    "MODEL.RETINANET.SCORE_THRESH_TEST", "0.0",  # an untrained model still detects
]
# fmt: on


def test_pasa_retinanet_trains_on_the_synthetic_set_and_is_evaluated(tmp_path):
    cfg = load_config(RETINANET, [*SYNTHETIC, "OUTPUT_DIR", str(tmp_path)])
    cfg.freeze()
    seed_all_rng(cfg.SEED)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    before = trainer.model.backbone.bottom_up.res3[0].aa.conv.weight.detach().clone()
    trainer.train()
    assert not torch.equal(trainer.model.backbone.bottom_up.res3[0].aa.conv.weight, before)
    assert (tmp_path / "model_final.pth").is_file()
    bbox = trainer.last_eval_results["bbox"]
    assert set(bbox) >= {"AP", "AP50"} and all(0 <= bbox[k] <= 100 for k in ("AP", "AP50"))


def test_retinanet_class_count_is_checked_against_the_data():
    prepare_dataset("synthetic_instances_train")
    cfg = load_config(RETINANET, ["MODEL.WEIGHTS", ""])  # 80 classes, for COCO
    with pytest.raises(DatasetError, match="MODEL.RETINANET.NUM_CLASSES is 80 but dataset"):
        check_num_classes(cfg, ["synthetic_instances_train"])
