"""detectron2's DefaultTrainer, with evaluators chosen by dataset, dataset checks,
DeepLab's semantic-segmentation data and schedule, and CPU multi-process support."""
import os

import detectron2.engine.defaults as detectron2_defaults
from detectron2.data import (
    DatasetFromList,
    DatasetMapper,
    MetadataCatalog,
    build_batch_data_loader,
    get_detection_dataset_dicts,
)
from detectron2.data import transforms as T
from detectron2.engine import DefaultTrainer, HookBase, default_setup
from detectron2.utils.env import seed_all_rng
from detectron2.evaluation import CityscapesInstanceEvaluator, COCOEvaluator, DatasetEvaluators
from detectron2.projects.deeplab import build_lr_scheduler
from detectron2.utils import comm

from pasa_det.config import load_config
from pasa_det.data.prepare import prepare_dataset
from pasa_det.data.resumable import PositionSeededDataset, ResumableTrainingSampler, derive_seed
from pasa_det.evaluation import SemSegEvaluator

_create_ddp_model = detectron2_defaults.create_ddp_model


def create_ddp_model(model, **kwargs):
    """detectron2 0.6 passes device_ids=[local rank] even for a CPU model, which
    DistributedDataParallel rejects; a CPU model gets device_ids=None."""
    if comm.get_world_size() > 1 and next(model.parameters()).device.type == "cpu":
        kwargs.setdefault("device_ids", None)
    return _create_ddp_model(model, **kwargs)


detectron2_defaults.create_ddp_model = create_ddp_model


def semantic_train_augmentations(cfg):
    """DeepLab's training augmentation: multi-scale resize, a crop that no single
    class fills, and a horizontal flip."""
    augs = [T.ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN, cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING)]
    if cfg.INPUT.CROP.ENABLED:
        augs.append(
            T.RandomCrop_CategoryAreaConstraint(
                cfg.INPUT.CROP.TYPE, cfg.INPUT.CROP.SIZE, cfg.INPUT.CROP.SINGLE_CATEGORY_MAX_AREA,
                cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE,
            )
        )
    augs.append(T.RandomFlip())
    return augs


class SeedEachIteration(HookBase):
    """Seeds every RNG from (SEED, iteration, rank) before each step, so what the
    model draws (proposal sampling, …) does not depend on where a run started."""

    def __init__(self, seed: int):
        self.seed = seed

    def before_step(self):
        seed_all_rng(derive_seed(self.seed, self.trainer.iter, comm.get_rank()))


class Trainer(DefaultTrainer):
    """With a fixed `SEED`, an interrupted run resumed with --resume ends with the
    same weights as an uninterrupted one (exactly when no aspect-ratio bucket is left
    half-filled at the interruption, e.g. one orientation or ASPECT_RATIO_GROUPING off)."""

    def state_dict(self):
        # detectron2 0.6's DefaultTrainer checkpoints its hooks (LR scheduler) but not the
        # inner trainer's optimizer (or AMP grad scaler): add them so --resume restores them.
        state = super().state_dict()
        state["_trainer"] = self._trainer.state_dict()
        return state

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        if "_trainer" in state_dict:
            self._trainer.load_state_dict(state_dict["_trainer"])

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        prepare_dataset(dataset_name)
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        evaluator_type = MetadataCatalog.get(dataset_name).evaluator_type
        evaluators = []
        if evaluator_type in ("coco", "coco_panoptic_seg"):
            # pycocotools' own COCOeval: the native fast path is not needed.
            evaluators.append(COCOEvaluator(dataset_name, output_dir=output_folder, use_fast_impl=False))
        if evaluator_type in ("sem_seg", "cityscapes_sem_seg", "coco_panoptic_seg"):
            evaluators.append(SemSegEvaluator(dataset_name, output_dir=output_folder))
        if evaluator_type == "cityscapes_instance":  # needs `pip install cityscapesscripts`
            evaluators.append(CityscapesInstanceEvaluator(dataset_name))
        if not evaluators:
            raise NotImplementedError(f"No evaluator for dataset '{dataset_name}' of type '{evaluator_type}'")
        return evaluators[0] if len(evaluators) == 1 else DatasetEvaluators(evaluators)

    def build_hooks(self):
        hooks = super().build_hooks()
        if self.cfg.SEED >= 0:
            hooks.insert(0, SeedEachIteration(self.cfg.SEED))
        return hooks

    def resume_or_load(self, resume=True):
        super().resume_or_load(resume=resume)
        if self.start_iter > 0:  # continue the data stream where the checkpoint left it
            self.data_loader.resumable_sampler.start = self.start_iter * self.cfg.SOLVER.IMS_PER_BATCH
            self._trainer._data_loader_iter = iter(self._trainer.data_loader)

    @classmethod
    def build_train_loader(cls, cfg):
        """detectron2's training loader, made resumable (pasa_det.data.resumable)."""
        for name in cfg.DATASETS.TRAIN:
            prepare_dataset(name)
        dicts = get_detection_dataset_dicts(
            cfg.DATASETS.TRAIN,
            filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS,
            min_keypoints=cfg.MODEL.ROI_KEYPOINT_HEAD.MIN_KEYPOINTS_PER_IMAGE if cfg.MODEL.KEYPOINT_ON else 0,
            proposal_files=cfg.DATASETS.PROPOSAL_FILES_TRAIN if cfg.MODEL.LOAD_PROPOSALS else None,
        )
        if cfg.MODEL.META_ARCHITECTURE == "SemanticSegmentor":
            mapper = DatasetMapper(cfg, is_train=True, augmentations=semantic_train_augmentations(cfg))
        else:
            mapper = DatasetMapper(cfg, is_train=True)
        seed = cfg.SEED if cfg.SEED >= 0 else comm.shared_random_seed()
        sampler = ResumableTrainingSampler(len(dicts), seed)
        loader = build_batch_data_loader(
            PositionSeededDataset(DatasetFromList(dicts, copy=False), mapper, seed),
            sampler,
            cfg.SOLVER.IMS_PER_BATCH,
            aspect_ratio_grouping=cfg.DATALOADER.ASPECT_RATIO_GROUPING,
            num_workers=cfg.DATALOADER.NUM_WORKERS,
        )
        loader.resumable_sampler = sampler
        return loader

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        prepare_dataset(dataset_name)
        return super().build_test_loader(cfg, dataset_name)

    @classmethod
    def build_lr_scheduler(cls, cfg, optimizer):
        # DeepLab's builder adds WarmupPolyLR and defers to detectron2's for the rest.
        return build_lr_scheduler(cfg, optimizer)


def setup_cfg(args):
    """The config of --config-file and trailing KEY VALUE pairs, frozen, with
    detectron2's default_setup (output folder, logging, seeds)."""
    cfg = load_config(args.config_file, args.opts)
    cfg.freeze()
    default_setup(cfg, args)
    return cfg
