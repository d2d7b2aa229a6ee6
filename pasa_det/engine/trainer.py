"""The yacs route: a `Training` built from a CfgNode by detectron2's DefaultTrainer
builders, with pasa_det's data, evaluators and DeepLab's schedule. Override a `build_*`
classmethod, or `test`, to change one part, as with DefaultTrainer."""

import logging
import os

from detectron2.data import DatasetMapper, MetadataCatalog
from detectron2.engine import DefaultTrainer, hooks
from detectron2.evaluation import DatasetEvaluator, DatasetEvaluators
from detectron2.modeling import build_model
from detectron2.projects.deeplab import build_lr_scheduler
from detectron2.solver import build_optimizer
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from pasa_det.checkpoint.loading import SafeCheckpointer
from pasa_det.data.augmentations import semantic_train_augmentations
from pasa_det.data.checks import check_num_classes
from pasa_det.data.datasets.from_config import register_datasets_from_config
from pasa_det.data.loaders import build_checked_test_loader, build_resumable_train_loader
from pasa_det.data.prepare import prepare_dataset
from pasa_det.detectron2_versions import fast_cocoeval_available
from pasa_det.evaluation import (
    CheckedCOCOEvaluator,
    CityscapesInstanceEvaluator,
    SemSegEvaluator,
    build_shift_consistency_evaluator,
    check_evaluation_data,
)

from .testing import evaluate_datasets
from .training import Training


def divergence_advice(cfg) -> str:
    """What to change after a divergence, most likely first for this config."""
    advice = []
    if not cfg.MODEL.WEIGHTS and cfg.MODEL.RESNETS.NORM == "FrozenBN":
        advice.append(
            "a trainable norm (MODEL.RESNETS.NORM BN or GN): FrozenBN keeps the statistics "
            "of pretrained weights, and MODEL.WEIGHTS is empty"
        )
    advice.append(f"a lower SOLVER.BASE_LR (now {cfg.SOLVER.BASE_LR:g})")
    if not cfg.SOLVER.CLIP_GRADIENTS.ENABLED:
        advice.append(
            "gradient clipping (SOLVER.CLIP_GRADIENTS.ENABLED True CLIP_TYPE norm CLIP_VALUE 5.0)"
        )
    if cfg.SOLVER.WARMUP_ITERS < 100:
        advice.append(f"a longer SOLVER.WARMUP_ITERS (now {cfg.SOLVER.WARMUP_ITERS})")
    return "; ".join(advice)


class Trainer(Training):
    """The training run of a yacs config, from the builders below.

    With a fixed `SEED`, an interrupted run resumed with --resume ends with the same
    weights as an uninterrupted one (exactly when no aspect-ratio bucket is left
    half-filled at the interruption, e.g. one orientation or ASPECT_RATIO_GROUPING off)."""

    def __init__(self, cfg):
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()  # as DefaultTrainer: training logs its progress
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        self.cfg = cfg
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        super().__init__(
            model,
            optimizer,
            self.build_lr_scheduler(cfg, optimizer),
            lambda start: self.build_train_loader(cfg, start=start),
            ims_per_batch=cfg.SOLVER.IMS_PER_BATCH,
            max_iter=cfg.SOLVER.MAX_ITER,
            checkpointer=SafeCheckpointer.from_config(cfg, model, cfg.OUTPUT_DIR),
            evaluate=lambda model: self.test(cfg, model),
            weights=cfg.MODEL.WEIGHTS,
            checkpoint_period=cfg.SOLVER.CHECKPOINT_PERIOD,
            eval_period=cfg.TEST.EVAL_PERIOD,
            seed=cfg.SEED if cfg.SEED >= 0 else None,
            precision=cfg.SOLVER.AMP.PRECISION if cfg.SOLVER.AMP.ENABLED else None,
            divergence_factor=cfg.SOLVER.DIVERGENCE_LOSS_FACTOR,
            divergence_key="SOLVER.DIVERGENCE_LOSS_FACTOR",
            divergence_advice=divergence_advice(cfg),
            extra_hooks=self._precise_bn(cfg, model),
        )

    @classmethod
    def _precise_bn(cls, cfg, model):
        """detectron2's PreciseBN hook when TEST.PRECISE_BN.ENABLED, on a loader of its own."""
        if not (cfg.TEST.PRECISE_BN.ENABLED and hooks.get_bn_modules(model)):
            return []
        cfg = cfg.clone()
        cfg.defrost()
        cfg.DATALOADER.NUM_WORKERS = 0  # as detectron2: less memory and time
        loader = cls.build_train_loader(cfg)
        return [hooks.PreciseBN(cfg.TEST.EVAL_PERIOD, model, loader, cfg.TEST.PRECISE_BN.NUM_ITER)]

    @classmethod
    def build_model(cls, cfg):
        return build_model(cfg)

    @classmethod
    def build_optimizer(cls, cfg, model):
        return build_optimizer(cfg, model)

    @classmethod
    def build_lr_scheduler(cls, cfg, optimizer):
        # DeepLab's builder adds WarmupPolyLR and defers to detectron2's for the rest.
        return build_lr_scheduler(cfg, optimizer)

    @classmethod
    def build_train_loader(cls, cfg, start: int = 0):
        """detectron2's training loader from sample position `start`, resumable
        (pasa_det.data.loaders), without malformed annotations; what would stop the
        evaluation after training stops it now."""
        register_datasets_from_config(cfg)
        if cfg.MODEL.META_ARCHITECTURE == "SemanticSegmentor":
            mapper = DatasetMapper(
                cfg, is_train=True, augmentations=semantic_train_augmentations(cfg)
            )
        else:
            mapper = DatasetMapper(cfg, is_train=True)
        loader = build_resumable_train_loader(
            cfg.DATASETS.TRAIN,
            mapper,
            cfg.SOLVER.IMS_PER_BATCH,
            seed=cfg.SEED,
            start=start,
            num_workers=cfg.DATALOADER.NUM_WORKERS,
            filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS,
            aspect_ratio_grouping=cfg.DATALOADER.ASPECT_RATIO_GROUPING,
            skip_bad_images=cfg.DATALOADER.SKIP_BAD_IMAGES,
            min_keypoints=cfg.MODEL.ROI_KEYPOINT_HEAD.MIN_KEYPOINTS_PER_IMAGE
            if cfg.MODEL.KEYPOINT_ON
            else 0,
            proposal_files=cfg.DATASETS.PROPOSAL_FILES_TRAIN if cfg.MODEL.LOAD_PROPOSALS else None,
        )
        check_num_classes(cfg, cfg.DATASETS.TRAIN)  # the metadata is complete once read
        shift = cfg.TEST.SHIFT_CONSISTENCY
        semantic = cfg.MODEL.META_ARCHITECTURE == "SemanticSegmentor"
        instance_shifts = {
            "protocols": shift.PROTOCOLS,
            "shifts": shift.SHIFTS,
            "adversarial_max_shift": shift.ADVERSARIAL_MAX_SHIFT,
        }
        check_evaluation_data(
            cfg.DATASETS.TEST, instance_shifts if shift.ENABLED and not semantic else None
        )
        return loader

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        """detectron2's test loader, checked like the training one (pasa_det.data.loaders)."""
        register_datasets_from_config(cfg)
        proposal_file = None
        if cfg.MODEL.LOAD_PROPOSALS:
            proposal_file = cfg.DATASETS.PROPOSAL_FILES_TEST[
                list(cfg.DATASETS.TEST).index(dataset_name)
            ]
        loader = build_checked_test_loader(
            dataset_name,
            DatasetMapper(cfg, is_train=False),
            num_workers=cfg.DATALOADER.NUM_WORKERS,
            proposal_file=proposal_file,
        )
        check_num_classes(cfg, [dataset_name])
        return loader

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        prepare_dataset(dataset_name)
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        evaluator_type = MetadataCatalog.get(dataset_name).evaluator_type
        evaluators = []
        if evaluator_type in ("coco", "coco_panoptic_seg"):
            # detectron2's C++ COCOeval where it is built (same AP as pycocotools', faster),
            # without the malformed annotations that training leaves out.
            evaluators.append(
                CheckedCOCOEvaluator(
                    dataset_name, output_dir=output_folder, use_fast_impl=fast_cocoeval_available()
                )
            )
        if evaluator_type in ("sem_seg", "cityscapes_sem_seg", "coco_panoptic_seg"):
            evaluators.append(SemSegEvaluator(dataset_name, output_dir=output_folder))
        if evaluator_type == "cityscapes_instance":
            evaluators.append(CityscapesInstanceEvaluator(dataset_name, output_dir=output_folder))
        if not evaluators:
            raise NotImplementedError(
                f"No evaluator for dataset '{dataset_name}' of type '{evaluator_type}'"
            )
        return evaluators[0] if len(evaluators) == 1 else DatasetEvaluators(evaluators)

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        """Each of DATASETS.TEST evaluated with `evaluators` (one per dataset) or
        `build_evaluator`'s, plus shift consistency when TEST.SHIFT_CONSISTENCY.ENABLED;
        results as detectron2's DefaultTrainer.test returns them (see evaluate_datasets:
        a signal stops it at once, keeping nothing of it)."""
        if isinstance(evaluators, DatasetEvaluator):
            evaluators = [evaluators]
        if evaluators is not None and len(evaluators) != len(cfg.DATASETS.TEST):
            raise ValueError(
                f"{len(evaluators)} evaluators for the {len(cfg.DATASETS.TEST)} DATASETS.TEST"
            )

        def datasets():
            for i, name in enumerate(cfg.DATASETS.TEST):
                loader = cls.build_test_loader(cfg, name)
                if evaluators is not None:
                    evaluator = evaluators[i]
                else:
                    evaluator = cls.build_evaluator(cfg, name)
                    if cfg.TEST.SHIFT_CONSISTENCY.ENABLED:
                        shift = build_shift_consistency_evaluator(cfg, name, model)
                        evaluator = DatasetEvaluators([evaluator, shift])
                yield name, loader, evaluator

        return evaluate_datasets(model, datasets(), os.path.join(cfg.OUTPUT_DIR, "inference"))
