"""The LazyConfig route: the `Training` and the evaluation of a LazyConfig, from its
`model`, `optimizer`, `lr_multiplier`, `dataloader` (train, test, evaluator) and `train`
(detectron2's configs/common/train.py keys, plus pasa_det's `seed` and
`divergence_loss_factor`); `dataloader.register_coco` and `register_cityscapes` register
one's own data."""

import inspect
import logging
import os
from typing import Dict

from detectron2.config import CfgNode, instantiate
from detectron2.evaluation import DatasetEvaluators
from detectron2.modeling import SemanticSegmentor
from detectron2.solver.build import GradientClipType, maybe_add_gradient_clipping
from detectron2.utils.registry import locate

from pasa_det.checkpoint.loading import SafeCheckpointer
from pasa_det.config import ConfigError
from pasa_det.data.checks import DatasetError, check_lazy_num_classes
from pasa_det.data.datasets.from_config import register_cityscapes, register_coco
from pasa_det.evaluation import (
    InstanceShiftConsistency,
    SemSegShiftConsistency,
    check_evaluation_data,
)
from pasa_det.evaluation.shift_consistency import LAZY_KEY, is_semantic

from .testing import evaluate_datasets
from .training import Training

logger = logging.getLogger(__name__)


def divergence_advice(cfg) -> str:
    """What to change after a divergence, for a LazyConfig."""
    advice = ["a lower optimizer.lr", "a longer warm-up (lr_multiplier.warmup_length)"]
    if not cfg.train.get("clip_gradients", {}).get("enabled", False):
        advice.append(
            "gradient clipping (train.clip_gradients.enabled=True "
            "train.clip_gradients.clip_type=norm train.clip_gradients.clip_value=5.0)"
        )
    return "; ".join(advice)


def with_gradient_clipping(optimizer, clip):
    """`optimizer`, clipping gradients before each step as `clip` (train.clip_gradients:
    enabled, clip_type "value" | "norm", clip_value, norm_type) says, with detectron2's
    clipping (the yacs SOLVER.CLIP_GRADIENTS)."""
    if not clip or not clip.get("enabled", False):
        return optimizer
    settings = CfgNode({"SOLVER": {"CLIP_GRADIENTS": {"ENABLED": True}}})
    for key, default in (("clip_type", "value"), ("clip_value", 1.0), ("norm_type", 2.0)):
        settings.SOLVER.CLIP_GRADIENTS[key.upper()] = clip.get(key, default)
    types = [t.value for t in GradientClipType]
    if settings.SOLVER.CLIP_GRADIENTS.CLIP_TYPE not in types:
        raise ConfigError(
            f"train.clip_gradients.clip_type is {clip.clip_type!r}; use one of {', '.join(types)}"
        )
    for key in ("clip_value", "norm_type"):
        value = settings.SOLVER.CLIP_GRADIENTS[key.upper()]
        if not isinstance(value, (int, float)) or value <= 0:
            raise ConfigError(f"train.clip_gradients.{key} must be a number > 0, got {value!r}")
    return maybe_add_gradient_clipping(settings, optimizer)


def register_lazy_datasets(cfg) -> None:
    """Register what `dataloader.register_coco` ([name, annotations.json, image folder])
    and `dataloader.register_cityscapes` ([name, leftImg8bit split folder, gtFine split
    folder, "instance" | "semantic"]) list, as the yacs DATASETS.REGISTER_* keys do."""
    datasets = cfg.dataloader
    for key, register, fields in (
        ("register_coco", register_coco, 3),
        ("register_cityscapes", register_cityscapes, 4),
    ):
        for entry in datasets.get(key, None) or []:
            if len(entry) != fields:
                raise DatasetError(
                    f"dataloader.{key} entries hold {fields} values "
                    f"({inspect.signature(register)}), got {list(entry)}"
                )
            register(*entry)


def lazy_datasets(cfg, part: str):
    """(config key, dataset names) of what `dataloader.<part>` reads: its `names` / `name`
    (pasa_det's loaders) or `dataset.names` (detectron2's get_detection_dataset_dicts);
    (None, []) if it names none."""
    loader = cfg.dataloader.get(part, None)
    if loader is None:
        return None, []
    for field in ("names", "name", "dataset.names"):
        node, parts = loader, field.split(".")
        for name in parts:
            node = node.get(name, None) if hasattr(node, "get") else None
        if node is not None:
            names = [node] if isinstance(node, str) else list(node)
            return f"dataloader.{part}.{field}", names
    return None, []


def lazy_dataset_names(cfg, part: str) -> list:
    return lazy_datasets(cfg, part)[1]


def shift_consistency_enabled(cfg) -> bool:
    return bool(cfg.dataloader.get("shift_consistency", {}).get("enabled", False))


def lazy_train_loader(cfg, start: int):
    """`dataloader.train` from global sample position `start`. A loader that cannot start
    there (one without a `start` argument, as detectron2's) restarts its stream, which
    is said."""
    loader = cfg.dataloader.train
    target = loader._target_
    target = locate(target) if isinstance(target, str) else target
    if "start" in inspect.signature(target).parameters:
        loader.start = start
    elif start:
        logger.warning(
            f"dataloader.train ({getattr(target, '__name__', target)}) cannot start at sample "
            f"{start}: the resumed run sees its data from the beginning. For an exact resume "
            "use pasa_det.data.loaders.build_resumable_train_loader"
        )
    loader = instantiate(loader)
    # The metadata is complete once the data is read: what would stop the evaluation after
    # training stops it now.
    check_lazy_num_classes(cfg, lazy_dataset_names(cfg, "train"))
    check_lazy_evaluation_data(cfg)
    return loader


def check_lazy_evaluation_data(cfg) -> None:
    """check_evaluation_data for `dataloader.test` and `dataloader.shift_consistency`."""
    names = lazy_dataset_names(cfg, "test")
    instance_shifts = None
    # A config on detectron2's own data module has no shift settings.
    if shift_consistency_enabled(cfg) and not any(map(is_semantic, names)):
        settings = cfg.dataloader.shift_consistency
        instance_shifts = {"shifts": list(settings.shifts), **_protocol_settings(settings)}
        instance_shifts.pop("subpixel_shifts", None)
    check_evaluation_data(names, instance_shifts, LAZY_KEY)


def _protocol_settings(settings) -> Dict:
    """The protocol settings of `dataloader.shift_consistency` that a config states; those
    it leaves out keep the evaluators' defaults."""
    return {
        k: settings[k]
        for k in ("protocols", "subpixel_shifts", "adversarial_max_shift")
        if k in settings
    }


def lazy_shift_consistency(cfg, model, dataset_name: str, output_dir: str):
    """The shift-consistency evaluator of `dataloader.shift_consistency` for `model` on
    `dataset_name`, reading and resizing shifted images as `dataloader.test.mapper` does."""
    settings = cfg.dataloader.shift_consistency
    protocols = _protocol_settings(settings)
    if isinstance(model, SemanticSegmentor) or is_semantic(dataset_name):
        return SemSegShiftConsistency(
            model,
            settings.num_pairs,
            settings.max_shift,
            settings.seed,
            dataset_name,
            output_dir,
            key=LAZY_KEY,
            **protocols,
        )
    mapper = cfg.dataloader.test.mapper
    return InstanceShiftConsistency(
        model,
        dataset_name,
        instantiate(mapper.augmentations),
        mapper.get("image_format", "BGR"),
        bool(getattr(getattr(model, "roi_heads", None), "mask_on", False)),
        list(settings.shifts),
        settings.score_thresh,
        settings.match_iou,
        output_dir,
        key=LAZY_KEY,
        **protocols,
    )


def lazy_test(cfg, model):
    """The results of `model` on `dataloader.test` with `dataloader.evaluator` (a list is
    run as one) and, when `dataloader.shift_consistency.enabled`, shift consistency; {}
    with neither."""
    names = lazy_dataset_names(cfg, "test")
    name = "+".join(names) or "test"
    inference_dir = os.path.join(cfg.train.output_dir, "inference")
    evaluators = []
    if "evaluator" in cfg.dataloader:
        evaluator = instantiate(cfg.dataloader.evaluator)
        evaluators += list(evaluator) if isinstance(evaluator, (list, tuple)) else [evaluator]
    if shift_consistency_enabled(cfg):
        if len(names) != 1:
            raise ConfigError(
                f"{LAZY_KEY}.enabled scores one test dataset, and dataloader.test reads "
                f"{names or 'none'}: name one"
            )
        evaluators.append(
            lazy_shift_consistency(cfg, model, name, os.path.join(inference_dir, name))
        )
    if not evaluators:
        return {}
    check_lazy_num_classes(cfg, names)
    evaluator = evaluators[0] if len(evaluators) == 1 else DatasetEvaluators(evaluators)
    return evaluate_datasets(
        model, [(name, instantiate(cfg.dataloader.test), evaluator)], inference_dir
    )


def instantiate_part(cfg, key: str):
    """`instantiate(cfg[key])`; arguments its call refuses are a ConfigError naming `key`."""
    try:
        return instantiate(cfg[key])
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{key}: {type(e).__name__}: {e}") from None


def build_lazy_model(cfg):
    """`model`, on `train.device`."""
    return instantiate_part(cfg, "model").to(cfg.train.device)


def lazy_training(cfg) -> Training:
    """The training run of a LazyConfig."""
    train = cfg.train
    model = build_lazy_model(cfg)
    cfg.optimizer.params.model = model
    optimizer = with_gradient_clipping(
        instantiate_part(cfg, "optimizer"), train.get("clip_gradients", None)
    )
    seed = train.get("seed", -1)
    return Training(
        model,
        optimizer,
        instantiate_part(cfg, "lr_multiplier"),
        lambda start: lazy_train_loader(cfg, start),
        ims_per_batch=cfg.dataloader.train.total_batch_size,
        max_iter=train.max_iter,
        checkpointer=SafeCheckpointer(model, train.output_dir),
        evaluate=lambda model: lazy_test(cfg, model),
        weights=train.init_checkpoint,
        checkpoint_period=train.checkpointer.period,
        max_to_keep=train.checkpointer.get("max_to_keep", None),
        eval_period=train.eval_period,
        log_period=train.log_period,
        seed=seed if seed >= 0 else None,
        precision=train.amp.get("precision", "float16") if train.amp.enabled else None,
        divergence_factor=train.get("divergence_loss_factor", 0.0),
        divergence_key="train.divergence_loss_factor",
        divergence_advice=divergence_advice(cfg),
        ddp=dict(train.ddp),
        weights_option="train.init_checkpoint={}",
    )
