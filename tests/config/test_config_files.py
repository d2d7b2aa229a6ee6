"""Every config in configs/ builds, trains one iteration and runs one inference on the
CPU, on synthetic data in its task's format, with inputs scaled down."""

import glob
import os

import pytest
import torch
import yaml
from detectron2.config import get_cfg
from detectron2.data import MetadataCatalog
from detectron2.projects.deeplab import add_deeplab_config
from detectron2.utils.events import EventStorage

from pasa_det.config import add_pasa_config, load_config
from pasa_det.engine import Trainer
from tests.helpers.paths import ROOT

CONFIGS = sorted(
    os.path.relpath(p, ROOT)
    for p in glob.glob(os.path.join(ROOT, "configs", "**", "*.yaml"), recursive=True)
)

# Bases that hold a dataset's recipe but no model; the configs built on them train.
RECIPES = {"configs/Cityscapes-SemanticSegmentation/Base-Cityscapes-Semantic.yaml"}
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


def _trained(config):
    """What training one iteration of `config` depends on: its config without the
    schedule, evaluation and dataset keys (1x and 3x, or a base and its `none` variant,
    train the same model)."""
    cfg = load_config(os.path.join(ROOT, config))
    for key in ("SOLVER", "TEST", "DATASETS", "OUTPUT_DIR", "SEED"):
        cfg.pop(key)
    return cfg.dump()


def distinct_trainings(configs):
    """One config (the first by name) per distinct `_trained`."""
    seen = {}
    for config in sorted(configs):
        seen.setdefault(_trained(config), config)
    return sorted(seen.values())


TRAINED = distinct_trainings(set(CONFIGS) - RECIPES)


@pytest.mark.parametrize("config", TRAINED)
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
            "DATASETS.CHECK_NUM_CLASSES",  # the config's model on a stand-in dataset
            "False",
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


def _leaves(tree, prefix=""):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        elif key not in ("_BASE_", "VERSION"):  # VERSION: stated to silence a warning
            yield f"{prefix}{key}"


def defaults():
    cfg = get_cfg()
    add_deeplab_config(cfg)
    return add_pasa_config(cfg)


def _value(cfg, key):
    for part in key.split("."):
        cfg = cfg[part]
    return cfg


@pytest.mark.parametrize("config", CONFIGS)
def test_config_states_only_what_differs_from_its_base(config):
    """A key set to the value it already has (from the base, or detectron2's and
    pasa_det's defaults) hides what the config is about."""
    path = os.path.join(ROOT, config)
    with open(path) as f:
        content = yaml.safe_load(f)
    base = content.get("_BASE_")
    inherited = load_config(os.path.join(os.path.dirname(path), base)) if base else defaults()
    full = load_config(path)
    restated = [key for key in _leaves(content) if _value(full, key) == _value(inherited, key)]
    assert restated == [], f"{config} restates {restated}"
