"""detectron2's DefaultTrainer, with evaluators chosen by dataset, dataset checks,
DeepLab's semantic-segmentation data and schedule, and CPU multi-process support."""
import os

import detectron2.engine.defaults as detectron2_defaults
from detectron2.data import DatasetMapper, MetadataCatalog, build_detection_train_loader
from detectron2.data import transforms as T
from detectron2.engine import DefaultTrainer, default_setup
from detectron2.evaluation import CityscapesInstanceEvaluator, COCOEvaluator, DatasetEvaluators
from detectron2.projects.deeplab import build_lr_scheduler
from detectron2.utils import comm

from pasa_det.config import load_config
from pasa_det.data.prepare import prepare_dataset
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


class Trainer(DefaultTrainer):
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

    @classmethod
    def build_train_loader(cls, cfg):
        for name in cfg.DATASETS.TRAIN:
            prepare_dataset(name)
        if cfg.MODEL.META_ARCHITECTURE == "SemanticSegmentor":
            mapper = DatasetMapper(cfg, is_train=True, augmentations=semantic_train_augmentations(cfg))
            return build_detection_train_loader(cfg, mapper=mapper)
        return super().build_train_loader(cfg)

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
