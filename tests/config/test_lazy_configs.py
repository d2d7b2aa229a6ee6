"""Every LazyConfig in configs/ loads, reloads from the config.yaml it saves and builds its
model; the quick one trains a step on the embedded set; the new baselines are detectron2's
recipes with the backbone anti-aliased as named."""

import glob
import os

import detectron2
import pytest
import torch
from detectron2.config import LazyConfig, instantiate
from detectron2.layers import FrozenBatchNorm2d
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage
from omegaconf import OmegaConf

from pasa_det.config import load_config
from pasa_det.layers import PASA, LowPassFilter
from tests.helpers.paths import QUICK_INSTANCE, ROOT

LAZY_CONFIGS = sorted(
    os.path.relpath(p, ROOT)
    for p in glob.glob(os.path.join(ROOT, "configs", "**", "*.py"), recursive=True)
    if os.sep + "common" + os.sep not in p
)
QUICK_LAZY = QUICK_INSTANCE.replace(".yaml", ".py")
NEW_BASELINES = [c for c in LAZY_CONFIGS if "new_baselines" in c]
FILTERS = {"none": (), "lpf": (LowPassFilter,), "pasa": (PASA,)}


def load(config):
    return LazyConfig.load(os.path.join(ROOT, config))


def test_lazy_configs_found():
    assert os.path.relpath(QUICK_LAZY, ROOT) in LAZY_CONFIGS
    assert len(NEW_BASELINES) == 2 * 3 * 3  # 100 / 200 / 400 epochs, 3 filters


@pytest.mark.parametrize("config", LAZY_CONFIGS)
def test_lazy_config_reloads_from_the_yaml_it_saves(config, tmp_path):
    cfg = load(config)
    assert {"model", "dataloader", "optimizer", "train", "lr_multiplier"} <= set(cfg)
    saved, resaved = tmp_path / "config.yaml", tmp_path / "again.yaml"
    LazyConfig.save(cfg, str(saved))
    assert not (tmp_path / "config.yaml.pkl").exists()  # detectron2's fallback: not YAML
    again = LazyConfig.load(str(saved))
    assert set(again) == set(cfg)
    LazyConfig.save(again, str(resaved))
    assert resaved.read_text() == saved.read_text()


def _models(configs):
    """One config per distinct model (the schedules share theirs)."""
    seen = {}
    for config in configs:
        seen.setdefault(OmegaConf.to_yaml(load(config).model), config)
    return sorted(seen.values())


def _filters(model, kinds):
    return [m for m in model.modules() if isinstance(m, kinds)] if kinds else []


def _count(model, trainable=False):
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable)


@pytest.mark.parametrize("config", _models(NEW_BASELINES))
def test_new_baseline_model_builds_with_its_filters_and_all_of_it_trains(config):
    kind = config.rsplit("_", 1)[1].removesuffix(".py")
    model = instantiate(load(config).model).eval()
    filters = _filters(model.backbone.bottom_up, FILTERS[kind])
    assert len(filters) == (0 if kind == "none" else 7)  # stem, 3 stages and their shortcuts
    assert not _filters(model, tuple(k for f in FILTERS.values() for k in f if f != FILTERS[kind]))
    assert _count(model, trainable=True) == _count(model)  # freeze_at 0, as the recipe says
    with torch.no_grad():
        (output,) = model([{"image": torch.zeros(3, 64, 96)}])
    assert output["instances"].image_size == (64, 96)


def test_new_baselines_schedules_scale_with_epochs():
    by_epochs = {
        e: load(f"configs/new_baselines/mask_rcnn_R_50_FPN_{e}ep_LSJ_pasa.py")
        for e in (100, 200, 400)
    }
    base = by_epochs[100]
    for epochs, cfg in by_epochs.items():
        scale = epochs // 100
        assert cfg.train.max_iter == base.train.max_iter * scale
        milestones = cfg.lr_multiplier.scheduler.milestones
        assert milestones == [m * scale for m in base.lr_multiplier.scheduler.milestones]
        assert cfg.model == base.model


DETECTRON2_NEW_BASELINE = os.path.join(
    os.path.dirname(detectron2.__file__),
    "model_zoo/configs/new_baselines/mask_rcnn_R_{depth}_FPN_100ep_LSJ.py",
)


@pytest.mark.skipif(
    not os.path.isfile(DETECTRON2_NEW_BASELINE.format(depth=50)),
    reason="this detectron2 install ships no model-zoo configs (detectron2 0.6 from PyPI)",
)
@pytest.mark.parametrize("depth", [50, 101])
def test_none_new_baseline_is_detectron2s_model(depth):
    theirs_file = DETECTRON2_NEW_BASELINE.format(depth=depth)
    theirs = instantiate(LazyConfig.load(theirs_file).model)
    ours = instantiate(
        load(f"configs/new_baselines/mask_rcnn_R_{depth}_FPN_100ep_LSJ_none.py").model
    )
    assert _count(ours) == _count(theirs) and _count(ours, True) == _count(theirs, True)
    shapes = {k: v.shape for k, v in theirs.state_dict().items()}
    assert {k: v.shape for k, v in ours.state_dict().items()} == shapes
    assert [type(m) for m in ours.roi_heads.modules()] == [
        type(m) for m in theirs.roi_heads.modules()
    ]


def test_freeze_at_is_honoured_with_the_filters_of_frozen_modules():
    cfg = load("configs/new_baselines/mask_rcnn_R_50_FPN_100ep_LSJ_pasa.py")
    cfg.model.backbone.bottom_up.freeze_at = 2
    cfg.model.backbone.bottom_up.stem.norm = cfg.model.backbone.bottom_up.stages.norm = "FrozenBN"
    resnet = instantiate(cfg.model.backbone.bottom_up)
    stem_filter, res3 = resnet.stem.aa, resnet.res3[0]
    assert not any(p.requires_grad for p in resnet.stem.parameters())
    assert isinstance(stem_filter.norm, FrozenBatchNorm2d)  # frozen as the stem it sits in
    assert all(p.requires_grad for p in res3.aa.parameters())
    assert all(p.requires_grad for p in res3.shortcut_aa.parameters())


def test_quick_lazy_config_is_the_quick_yaml_model_and_trains_a_step(tmp_path):
    LazyConfig.save(load(QUICK_LAZY), str(tmp_path / "config.yaml"))
    cfg = LazyConfig.load(str(tmp_path / "config.yaml"))  # as a run saved it
    yacs = load_config(QUICK_INSTANCE, ["MODEL.DEVICE", "cpu"])
    theirs, ours = build_model(yacs), instantiate(cfg.model)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in theirs.state_dict().items()
    }
    assert _count(ours, True) == _count(theirs, True) == _count(theirs)  # FREEZE_AT 0
    cfg.dataloader.train.total_batch_size = 2
    cfg.dataloader.train.num_workers = 0
    cfg.dataloader.train.mapper.augmentations[0].short_edge_length = (64,)
    cfg.dataloader.train.mapper.augmentations[0].max_size = 64
    cfg.optimizer.params.model = ours
    optimizer = instantiate(cfg.optimizer)
    batch = next(iter(instantiate(cfg.dataloader.train)))
    assert len(batch) == 2 and batch[0]["image"].shape[-2:] == (64, 64)
    ours.train()
    with EventStorage():
        loss = sum(ours(batch).values())
    assert torch.isfinite(loss)
    loss.backward()
    optimizer.step()
