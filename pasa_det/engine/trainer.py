"""detectron2's DefaultTrainer, with evaluators chosen by dataset, dataset checks,
DeepLab's semantic-segmentation data and schedule, and CPU multi-process support."""
import logging
import os
import signal
import threading
import time

import detectron2.engine.defaults as detectron2_defaults
import torch
from detectron2.data import (
    DatasetFromList,
    DatasetMapper,
    MetadataCatalog,
    build_batch_data_loader,
    build_detection_test_loader,
)
from detectron2.data import transforms as T
from detectron2.engine import AMPTrainer, DefaultTrainer, HookBase, SimpleTrainer, default_setup
from detectron2.utils.env import seed_all_rng
from detectron2.evaluation import COCOEvaluator, DatasetEvaluators
from detectron2.projects.deeplab import build_lr_scheduler
from detectron2.utils import comm

from pasa_det.checkpoint.loading import SafeCheckpointer
from pasa_det.config import load_config
from pasa_det.data.checks import FileNamingMapper, load_dataset_dicts
from pasa_det.data.prepare import prepare_dataset
from pasa_det.data.resumable import PositionSeededDataset, ResumableTrainingSampler, derive_seed
from pasa_det.evaluation import CityscapesInstanceEvaluator, SemSegEvaluator, build_shift_consistency_evaluator

_create_ddp_model = detectron2_defaults.create_ddp_model


def create_ddp_model(model, **kwargs):
    """detectron2 0.6 passes device_ids=[local rank] even for a CPU model, which
    DistributedDataParallel rejects; a CPU model gets device_ids=None."""
    if comm.get_world_size() > 1 and next(model.parameters()).device.type == "cpu":
        kwargs.setdefault("device_ids", None)
    return _create_ddp_model(model, **kwargs)


detectron2_defaults.create_ddp_model = create_ddp_model


class MixedPrecisionTrainer(AMPTrainer):
    """The AMPTrainer that DefaultTrainer builds for SOLVER.AMP.ENABLED, autocasting to
    SOLVER.AMP.PRECISION on the model's device (detectron2 0.6's is float16 on CUDA only).
    float16 scales the loss against underflow; bfloat16 has float32's range and needs none."""

    def __init__(self, model, data_loader, optimizer, precision: str = "float16"):
        self.device_type = next(model.parameters()).device.type
        super().__init__(model, data_loader, optimizer, grad_scaler=torch.amp.GradScaler(self.device_type))
        self.set_precision(precision)

    def set_precision(self, precision: str) -> None:
        self.dtype = getattr(torch, precision)
        self.grad_scaler = torch.amp.GradScaler(self.device_type, enabled=self.dtype == torch.float16)

    def run_step(self):
        assert self.model.training, "[MixedPrecisionTrainer] model was changed to eval mode!"
        start = time.perf_counter()
        data = next(self._data_loader_iter)
        data_time = time.perf_counter() - start
        with torch.autocast(self.device_type, dtype=self.dtype):
            loss_dict = self.model(data)
            if isinstance(loss_dict, torch.Tensor):
                loss_dict = {"total_loss": loss_dict}
            losses = sum(loss_dict.values())
        self.optimizer.zero_grad()
        self.grad_scaler.scale(losses).backward()
        self._write_metrics(loss_dict, data_time)
        self.grad_scaler.step(self.optimizer)
        self.grad_scaler.update()


detectron2_defaults.AMPTrainer = MixedPrecisionTrainer


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


class TrainingInterrupted(BaseException):
    """Training stopped on SIGINT/SIGTERM after saving a checkpoint. A BaseException,
    like KeyboardInterrupt, so detectron2 does not log it as a crash."""

    def __init__(self, signum: int, iteration: int, checkpoint: str):
        self.signum, self.iteration, self.checkpoint = signum, iteration, checkpoint
        super().__init__(
            f"{signal.Signals(signum).name} received: stopped after iteration {iteration} and saved "
            f"{checkpoint}; continue with the same command and --resume"
        )


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or infinite; the weights were not updated with it."""


class CheckpointOnSignal(HookBase):
    """On SIGINT or SIGTERM, finish the current iteration, save `model_<iter>.pth`
    and raise TrainingInterrupted; a second signal acts at once, as without this hook.
    With several processes, all stop after the same iteration."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, checkpointer):
        self.checkpointer = checkpointer
        self.received = None
        self._previous = {}

    def _handle(self, signum, frame):
        if self.received is not None:
            self._restore()
            signal.raise_signal(signum)
            return
        self.received = signum
        logging.getLogger(__name__).warning(
            f"{signal.Signals(signum).name} received: saving a checkpoint after this iteration, then stopping "
            "(send it again to stop at once)"
        )

    def _restore(self):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def before_train(self):
        if threading.current_thread() is threading.main_thread():  # signal handlers live there only
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}

    def after_step(self):
        received = self.received
        if comm.get_world_size() > 1:
            received = max((r or 0) for r in comm.all_gather(received)) or None
        if received is None or self.trainer.iter + 1 >= self.trainer.max_iter:
            return  # the last iteration ends with model_final anyway
        name = f"model_{self.trainer.iter:07d}"
        self.checkpointer.save(name, iteration=self.trainer.iter)
        comm.synchronize()
        raise TrainingInterrupted(received, self.trainer.iter, os.path.join(self.checkpointer.save_dir, name + ".pth"))

    def after_train(self):
        self._restore()


class Trainer(DefaultTrainer):
    """With a fixed `SEED`, an interrupted run resumed with --resume ends with the
    same weights as an uninterrupted one (exactly when no aspect-ratio bucket is left
    half-filled at the interruption, e.g. one orientation or ASPECT_RATIO_GROUPING off)."""

    def __init__(self, cfg):
        super().__init__(cfg)
        if cfg.SOLVER.AMP.ENABLED:
            self._trainer.set_precision(cfg.SOLVER.AMP.PRECISION)
        # Checked before optimizer.step, so a non-finite loss never reaches the weights.
        self._trainer._write_metrics = self._write_finite_metrics

    def _write_finite_metrics(self, loss_dict, data_time, prefix=""):
        """detectron2's metrics, after stopping on a non-finite loss term in any process
        (detectron2 checks the main process only, leaving the others waiting)."""
        bad = {k: v.item() for k, v in loss_dict.items() if not torch.isfinite(v).all()}
        failed = any(comm.all_gather(bool(bad))) if comm.get_world_size() > 1 else bool(bad)
        if failed:
            last = self.checkpointer.get_checkpoint_file() if self.checkpointer.has_checkpoint() else "none"
            self.checkpointer.refuse_saves(f"the model state is suspect after a non-finite loss at iteration {self.iter}")
            terms = ", ".join(f"{k}={v}" for k, v in bad.items()) or "in another process"
            raise NonFiniteLossError(
                f"non-finite loss at iteration {self.iter}: {terms}. Training stopped without updating the weights "
                f"or writing a checkpoint; the last checkpoint is {last}. Lower SOLVER.BASE_LR, enable "
                "SOLVER.CLIP_GRADIENTS or check the data, then --resume."
            )
        SimpleTrainer.write_metrics(loss_dict, data_time, prefix)

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
        if evaluator_type == "cityscapes_instance":
            evaluators.append(CityscapesInstanceEvaluator(dataset_name, output_dir=output_folder))
        if not evaluators:
            raise NotImplementedError(f"No evaluator for dataset '{dataset_name}' of type '{evaluator_type}'")
        return evaluators[0] if len(evaluators) == 1 else DatasetEvaluators(evaluators)

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        """detectron2's test, plus shift consistency when TEST.SHIFT_CONSISTENCY.ENABLED
        (its evaluators run the model again, so they are built with it)."""
        if evaluators is None and cfg.TEST.SHIFT_CONSISTENCY.ENABLED:
            evaluators = [
                DatasetEvaluators([cls.build_evaluator(cfg, name), build_shift_consistency_evaluator(cfg, name, model)])
                for name in cfg.DATASETS.TEST
            ]
        return super().test(cfg, model, evaluators)

    def build_hooks(self):
        # DefaultTrainer.__init__ makes a plain DetectionCheckpointer just before calling
        # this; swap in ours before the PeriodicCheckpointer takes it.
        self.checkpointer = SafeCheckpointer.from_config(
            self.cfg, self.checkpointer.model, self.cfg.OUTPUT_DIR, **self.checkpointer.checkpointables
        )
        hooks = super().build_hooks()
        if self.cfg.SEED >= 0:
            hooks.insert(0, SeedEachIteration(self.cfg.SEED))
        hooks.append(CheckpointOnSignal(self.checkpointer))  # last: after the step's checkpoint and schedule
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
        dicts = load_dataset_dicts(
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
            PositionSeededDataset(DatasetFromList(dicts, copy=False), mapper, seed, cfg.DATALOADER.SKIP_BAD_IMAGES),
            sampler,
            cfg.SOLVER.IMS_PER_BATCH,
            aspect_ratio_grouping=cfg.DATALOADER.ASPECT_RATIO_GROUPING,
            num_workers=cfg.DATALOADER.NUM_WORKERS,
        )
        loader.resumable_sampler = sampler
        return loader

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        """detectron2's test loader, checked like the training one; an unreadable image
        stops evaluation naming the file (skipping it would flatter the metrics)."""
        prepare_dataset(dataset_name)
        proposal_files = None
        if cfg.MODEL.LOAD_PROPOSALS:
            proposal_files = [cfg.DATASETS.PROPOSAL_FILES_TEST[list(cfg.DATASETS.TEST).index(dataset_name)]]
        dicts = load_dataset_dicts([dataset_name], filter_empty=False, proposal_files=proposal_files)
        return build_detection_test_loader(
            dicts, mapper=FileNamingMapper(DatasetMapper(cfg, is_train=False)), num_workers=cfg.DATALOADER.NUM_WORKERS
        )

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
