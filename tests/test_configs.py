"""Every config in configs/ builds, trains one iteration and runs one inference on the
CPU, on synthetic data in its task's format, with inputs scaled down."""

import glob
import os

import pytest
import torch
from detectron2.data import MetadataCatalog
from detectron2.utils.events import EventStorage

from pasa_det.config import load_config
from pasa_det.engine import Trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRAGMENTS = {
    "configs/Base-Torchvision-Weights.yaml"
}  # merged into others, not a model (test_convert_pretrained)
CONFIGS = sorted(
    set(
        os.path.relpath(p, ROOT)
        for p in glob.glob(os.path.join(ROOT, "configs", "**", "*.yaml"), recursive=True)
    )
    - FRAGMENTS
)
# The embedded stand-in for each dataset format a config trains on (by evaluator type).
SYNTHETIC_DATA = {
    "coco": ("synthetic_instances_train", "synthetic_instances_val"),
    "cityscapes_instance": (
        "synthetic_cityscapes_instances_train",
        "synthetic_cityscapes_instances_val",
    ),
    "cityscapes_sem_seg": ("synthetic_sem_seg_train", "synthetic_sem_seg_val"),
    "sem_seg": ("synthetic_sem_seg_train", "synthetic_sem_seg_val"),
}


def test_configs_found():
    assert len(CONFIGS) >= 16


@pytest.mark.parametrize("config", CONFIGS)
def test_config_trains_one_iteration_and_infers(config, tmp_path):
    cfg = load_config(os.path.join(ROOT, config))
    train, test = SYNTHETIC_DATA[MetadataCatalog.get(cfg.DATASETS.TRAIN[0]).evaluator_type]
    cfg.merge_from_list(
        [
            "MODEL.WEIGHTS",
            "",
            "MODEL.DEVICE",
            "cpu",
            "OUTPUT_DIR",
            str(tmp_path),
            "DATASETS.TRAIN",
            f"('{train}',)",
            "DATASETS.TEST",
            f"('{test}',)",
            "INPUT.MIN_SIZE_TRAIN",
            "(128,)",
            "INPUT.MAX_SIZE_TRAIN",
            "128",
            "INPUT.MIN_SIZE_TEST",
            "128",
            "INPUT.MAX_SIZE_TEST",
            "128",
            "INPUT.MASK_FORMAT",
            "bitmask",
            "INPUT.CROP.SIZE",
            "(128, 128)",
            "SOLVER.IMS_PER_BATCH",
            "2",
            "DATALOADER.NUM_WORKERS",
            "0",
        ]
    )
    model = Trainer.build_model(cfg)
    optimizer = Trainer.build_optimizer(cfg, model)
    batch = next(iter(Trainer.build_train_loader(cfg)))
    with EventStorage():
        losses = model(batch)
    loss = sum(losses.values())
    assert torch.isfinite(loss)
    loss.backward()
    optimizer.step()
    model.eval()
    inputs = next(iter(Trainer.build_test_loader(cfg, test)))
    with torch.no_grad():
        (output,) = model(inputs)
    assert output.keys() & {"instances", "sem_seg"}
