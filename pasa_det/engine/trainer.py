"""detectron2's DefaultTrainer with pasa_det's optimisation step, checkpointer, seeding
and resumable data, evaluators chosen by dataset, dataset checks, and DeepLab's
semantic-segmentation data and schedule. Written against the API that detectron2 0.6
and main share (pasa_det.detectron2_versions holds where they differ)."""

import logging
import os
import time
import weakref

import torch
from detectron2.data import DatasetMapper, MetadataCatalog
from detectron2.data import transforms as T
from detectron2.engine import (
    DefaultTrainer,
    HookBase,
    SimpleTrainer,
    TrainerBase,
    create_ddp_model,
    default_setup,
)
from detectron2.engine.hooks import EvalHook, PeriodicCheckpointer
from detectron2.evaluation import DatasetEvaluators
from detectron2.projects.deeplab import build_lr_scheduler
from detectron2.utils import comm
from detectron2.utils.env import seed_all_rng
from detectron2.utils.logger import setup_logger

from pasa_det.checkpoint.loading import CheckpointError, SafeCheckpointer
from pasa_det.config import ConfigError, load_config
from pasa_det.data.checks import DatasetError, check_datasets_registered, check_num_classes
from pasa_det.data.datasets.from_config import register_datasets_from_config
from pasa_det.data.loaders import build_checked_test_loader, build_resumable_train_loader
from pasa_det.data.prepare import prepare_dataset
from pasa_det.data.resumable import derive_seed
from pasa_det.detectron2_versions import fast_cocoeval_available, write_metrics
from pasa_det.evaluation import (
    CheckedCOCOEvaluator,
    CityscapesInstanceEvaluator,
    SemSegEvaluator,
    build_shift_consistency_evaluator,
    check_evaluation_data,
)

from .interrupt import (
    CheckpointOnSignal,
    EvaluationInterrupted,
    signals_stop_evaluation,
)
from .norm_statistics import EqualNormStatistics
from .output_lock import OutputDirBusy, lock_output_dir
from .partial_results import results_kept_only_if_complete
from .resume_check import describe, incompatible_keys


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or infinite; the weights were not updated with it."""


class TrainingStep(SimpleTrainer):
    """One optimisation step, as detectron2's SimpleTrainer and AMPTrainer take it, plus:

    - `precision` (None, "float16" or "bfloat16") autocasts on the model's device, the
      CPU included (detectron2's AMPTrainer is CUDA only); float16 scales the loss
      against underflow, bfloat16 has float32's range and needs no scaling;
    - a non-finite loss term in any process, or a total loss over `divergence_factor`
      times the first iteration's (gradient clipping keeps an exploding loss finite),
      stops every process before the weights change (detectron2 checks the main process
      only, after backward, leaving the others waiting); `on_non_finite(terms)` is
      called first;
    - batches come from its own iterator, made at the first step, so a resumable
      loader positioned after construction starts where it should;
    - with a `seed`, the global RNGs are seeded from (seed, iteration, rank) before each
      forward pass: the model's own draws (RPN and ROI sampling) then do not depend on
      what ran before, which a checkpoint does not record, so a resumed run draws as an
      uninterrupted one would, with or without data-loader workers.
    """

    def __init__(
        self,
        model,
        data_loader,
        optimizer,
        precision=None,
        on_non_finite=None,
        seed=None,
        divergence_factor=0.0,
    ):
        super().__init__(model, data_loader, optimizer)
        self.seed = seed
        self.divergence_factor = divergence_factor
        self.first_loss = None  # the run's first total loss (checkpointed: resume keeps it)
        self.device_type = next(model.parameters()).device.type
        self.dtype = getattr(torch, precision) if precision else None
        self.grad_scaler = torch.amp.GradScaler(
            self.device_type, enabled=self.dtype == torch.float16
        )
        self.on_non_finite = on_non_finite
        self._batches = None

    def run_step(self):
        assert self.model.training, "[TrainingStep] model was changed to eval mode!"
        if self._batches is None:
            self._batches = iter(self.data_loader)
        start = time.perf_counter()
        data = next(self._batches)
        data_time = time.perf_counter() - start
        if self.seed is not None:
            seed_all_rng(derive_seed(self.seed, self.iter, comm.get_rank()))
        with torch.autocast(self.device_type, dtype=self.dtype, enabled=self.dtype is not None):
            try:
                loss_dict = self.model(data)
            except FloatingPointError as e:  # detectron2's own check: boxes or scores Inf/NaN
                self._stop_on_non_finite({}, detectron2_error=str(e))
            if isinstance(loss_dict, torch.Tensor):
                loss_dict = {"total_loss": loss_dict}
            losses = sum(loss_dict.values())
        self._stop_on_non_finite(loss_dict)
        self.optimizer.zero_grad()
        self.grad_scaler.scale(losses).backward()
        write_metrics(loss_dict, data_time, self.iter)
        self.grad_scaler.step(self.optimizer)
        self.grad_scaler.update()

    def _stop_on_non_finite(self, loss_dict, detectron2_error: str = ""):
        """Every process stops, together, when any has a non-finite loss term, detectron2
        found non-finite predictions (`detectron2_error`) in its forward pass, or the
        total loss (the mean over processes) exploded past `divergence_factor` times the
        first iteration's."""
        bad = {k: v.item() for k, v in loss_dict.items() if not torch.isfinite(v).all()}
        failed = bool(bad or detectron2_error)
        total = float(sum(v.detach() for v in loss_dict.values())) if not failed else float("nan")
        if comm.get_world_size() > 1:
            gathered = comm.all_gather((failed, total))
            failed = any(f for f, _ in gathered)
            total = sum(t for _, t in gathered) / len(gathered)
        exploded = False
        if not failed and self.divergence_factor:
            if self.first_loss is None:
                self.first_loss = total
            exploded = total > self.divergence_factor * abs(self.first_loss)
        if not (failed or exploded):
            return
        terms = ", ".join(f"{k}={v}" for k, v in bad.items())
        if detectron2_error:
            terms = f"detectron2: {detectron2_error.rstrip('.')}"
        if exploded:
            terms = (
                f"total loss {total:.3g}, over SOLVER.DIVERGENCE_LOSS_FACTOR "
                f"{self.divergence_factor:g} times the first iteration's {self.first_loss:.3g}"
            )
        terms = terms or "in another process"
        if self.on_non_finite is not None:
            self.on_non_finite(terms)
        raise NonFiniteLossError(f"training diverged at iteration {self.iter}: {terms}")

    def state_dict(self):
        state = super().state_dict()
        if self.grad_scaler.is_enabled():
            state["grad_scaler"] = self.grad_scaler.state_dict()
        if self.first_loss is not None:
            state["first_loss"] = self.first_loss
        return state

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        if self.grad_scaler.is_enabled() and "grad_scaler" in state_dict:
            self.grad_scaler.load_state_dict(state_dict["grad_scaler"])
        self.first_loss = state_dict.get("first_loss", self.first_loss)


def semantic_train_augmentations(cfg):
    """DeepLab's training augmentation: multi-scale resize, a crop that no single
    class fills, and a horizontal flip."""
    augs = [
        T.ResizeShortestEdge(
            cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN, cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING
        )
    ]
    if cfg.INPUT.CROP.ENABLED:
        augs.append(
            T.RandomCrop_CategoryAreaConstraint(
                cfg.INPUT.CROP.TYPE,
                cfg.INPUT.CROP.SIZE,
                cfg.INPUT.CROP.SINGLE_CATEGORY_MAX_AREA,
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


# Errors whose message says what happened and what to change: logged without a traceback.
_EXPLAINED = (NonFiniteLossError, CheckpointError, DatasetError, ConfigError)


class _OwnStopInOneLine(logging.Filter):
    """detectron2 logs any exception that ends training with its traceback; pasa_det's own
    errors (a divergence, a checkpoint that cannot be written, bad data or config) explain
    themselves (what happened, what to change), so they are logged as one line."""

    def filter(self, record):
        if record.exc_info and isinstance(record.exc_info[1], _EXPLAINED):
            record.msg, record.args = f"Training stopped: {record.exc_info[1]}", ()
            record.exc_info = record.exc_text = None
        return True


def _explain_own_stops_in_one_line():
    train_loop = logging.getLogger("detectron2.engine.train_loop")
    if not any(isinstance(f, _OwnStopInOneLine) for f in train_loop.filters):
        train_loop.addFilter(_OwnStopInOneLine())


class Trainer(DefaultTrainer):
    """detectron2's DefaultTrainer with pasa_det's step (TrainingStep), checkpointer
    (SafeCheckpointer), seeding, signal handling and resumable data.

    With a fixed `SEED`, an interrupted run resumed with --resume ends with the same
    weights as an uninterrupted one (exactly when no aspect-ratio bucket is left
    half-filled at the interruption, e.g. one orientation or ASPECT_RATIO_GROUPING off)."""

    def __init__(self, cfg):
        # DefaultTrainer.__init__, with the step, the DDP wrapper and the checkpointer chosen
        # here; detectron2 fixes them inside its __init__.
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        cfg = self.auto_scale_workers(cfg, comm.get_world_size())
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        on_cpu = next(model.parameters()).device.type == "cpu"
        # detectron2 passes device_ids=[local rank] by default, which DDP rejects for a CPU model.
        model = create_ddp_model(
            model, broadcast_buffers=False, **({"device_ids": None} if on_cpu else {})
        )
        self._trainer = TrainingStep(
            model,
            data_loader,
            optimizer,
            precision=cfg.SOLVER.AMP.PRECISION if cfg.SOLVER.AMP.ENABLED else None,
            on_non_finite=self._stop_on_non_finite,
            seed=cfg.SEED if cfg.SEED >= 0 else None,
            divergence_factor=cfg.SOLVER.DIVERGENCE_LOSS_FACTOR,
        )
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = SafeCheckpointer.from_config(
            cfg, model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self)
        )
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.diverged = False
        self.register_hooks(self.build_hooks())
        _explain_own_stops_in_one_line()

    def _stop_on_non_finite(self, terms: str):
        last = (
            self.checkpointer.get_checkpoint_file()
            if self.checkpointer.has_checkpoint()
            else "none"
        )
        self.diverged = True
        self.checkpointer.refuse_saves(
            f"the model state is suspect after training diverged at iteration {self.iter}"
        )
        raise NonFiniteLossError(
            f"training diverged at iteration {self.iter} ({terms}). It stopped without "
            f"updating the weights, writing a checkpoint or evaluating; the last checkpoint is "
            f"{last}. To try: {divergence_advice(self.cfg)}, then --resume."
        )

    def after_train(self):
        """As detectron2's, but after a divergence the model is not evaluated: its numbers
        would describe a model that is about to be thrown away."""
        if not self.diverged:
            return super().after_train()
        self.storage.iter = self.iter
        for hook in self._hooks:
            if not isinstance(hook, EvalHook):
                hook.after_train()

    # The optimizer and AMP scaler live in the step: checkpointed with it (detectron2 0.6's
    # DefaultTrainer leaves them out; main's adds them as here).
    def state_dict(self):
        state = TrainerBase.state_dict(self)
        state["_trainer"] = self._trainer.state_dict()
        return state

    def load_state_dict(self, state_dict):
        TrainerBase.load_state_dict(self, state_dict)
        if "_trainer" in state_dict:
            self._trainer.load_state_dict(state_dict["_trainer"])

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
        """detectron2's test, plus shift consistency when TEST.SHIFT_CONSISTENCY.ENABLED
        (its evaluators run the model again, so they are built with it). SIGINT/SIGTERM
        stop it at once (EvaluationInterrupted), and what it had written under
        OUTPUT_DIR/inference is removed: no partial result passes for a complete one."""
        with signals_stop_evaluation(), results_kept_only_if_complete(
            os.path.join(cfg.OUTPUT_DIR, "inference")
        ):
            return cls._test(cfg, model, evaluators)

    @classmethod
    def _test(cls, cfg, model, evaluators):
        if evaluators is None and cfg.TEST.SHIFT_CONSISTENCY.ENABLED:
            evaluators = [
                DatasetEvaluators(
                    [
                        cls.build_evaluator(cfg, name),
                        build_shift_consistency_evaluator(cfg, name, model),
                    ]
                )
                for name in cfg.DATASETS.TEST
            ]
        return super().test(cfg, model, evaluators)

    def build_hooks(self):
        hooks = super().build_hooks()
        if self.cfg.SEED >= 0:
            hooks.insert(0, SeedEachIteration(self.cfg.SEED))
        if comm.get_world_size() > 1:
            # Before the checkpointer (main process only) and evaluation, in every process.
            first_reader = next(
                i for i, h in enumerate(hooks) if isinstance(h, (PeriodicCheckpointer, EvalHook))
            )
            hooks.insert(first_reader, EqualNormStatistics(self.model))
        self.signal_hook = CheckpointOnSignal(self.checkpointer)
        hooks.append(self.signal_hook)  # last: after the step's checkpoint and schedule
        return hooks

    @property
    def last_eval_results(self):
        """The latest evaluation's results (detectron2 keeps them as `_last_eval_results`)."""
        return getattr(self, "_last_eval_results", None)

    def train(self):
        """detectron2's train. A signal during a periodic evaluation saves the model as a
        signal during training does; during the final one, model_final.pth is complete."""
        try:
            return super().train()
        except EvaluationInterrupted as e:
            if self.iter < self.max_iter:
                self.signal_hook.save_and_stop(e.signum)
            final = os.path.join(self.cfg.OUTPUT_DIR, "model_final.pth")
            raise EvaluationInterrupted(
                e.signum, f"{final} is complete: evaluate it with --eval-only MODEL.WEIGHTS {final}"
            ) from None
        finally:
            self.signal_hook.close()

    def resume_or_load(self, resume=True):
        if resume and not self.checkpointer.has_checkpoint():
            self._warn_nothing_to_resume()
        super().resume_or_load(resume=resume)
        # Continue the data stream where the checkpoint left it (read at the first step).
        self.data_loader.sampler.start = self.start_iter * self.cfg.SOLVER.IMS_PER_BATCH

    def _warn_nothing_to_resume(self):
        """--resume into a folder that holds an earlier run's files but no checkpoint
        would silently start over: say so, and where it looked."""
        folder = self.cfg.OUTPUT_DIR
        names = os.listdir(folder) if os.path.isdir(folder) else []
        # This run's writers have created their files already, empty; metrics.json with
        # lines in it, or a saved model, is an earlier run's.
        earlier = sorted(
            name
            for name in names
            if (name.startswith("model_") and name.endswith(".pth"))
            or (name == "metrics.json" and os.path.getsize(os.path.join(folder, name)) > 0)
        )
        if earlier:
            start = self.cfg.MODEL.WEIGHTS or "scratch"
            logging.getLogger(__name__).warning(
                f"--resume found no checkpoint to continue: {folder} has no last_checkpoint "
                f"file, though an earlier run left {', '.join(earlier[:3])}"
                f"{' …' if len(earlier) > 3 else ''} there. Training starts at iteration 0 "
                f"from {start}."
            )

    @classmethod
    def build_train_loader(cls, cfg):
        """detectron2's training loader, made resumable (pasa_det.data.loaders), without
        malformed annotations; what would stop the evaluation after training stops it now."""
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
        check_evaluation_data(cfg)
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
    def build_lr_scheduler(cls, cfg, optimizer):
        # DeepLab's builder adds WarmupPolyLR and defers to detectron2's for the rest.
        return build_lr_scheduler(cfg, optimizer)


def setup_cfg(args):
    """The config of --config-file and trailing KEY VALUE pairs, frozen, its datasets
    registered and checked (before any model is built), with detectron2's default_setup
    (output folder, logging, seeds). Before anything is written to OUTPUT_DIR: the folder
    is locked for this run (another live run there is an error naming it), and --resume
    with a config that cannot continue the run there is an error naming the keys."""
    cfg = load_config(args.config_file, args.opts)
    cfg.freeze()
    _claim_output_dir(cfg, resume=args.resume and not args.eval_only)
    default_setup(cfg, args)
    # pasa_det's own messages (skipped images, signals, resume) go to the console and to
    # OUTPUT_DIR/log.txt with timestamps, as detectron2's do.
    setup_logger(
        cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="pasa_det", abbrev_name="pasa"
    )
    register_datasets_from_config(cfg)
    check_datasets_registered(cfg)
    check_num_classes(cfg, [*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST])
    return cfg


def _claim_output_dir(cfg, resume: bool) -> None:
    """The main process locks OUTPUT_DIR and, for --resume, checks the config against the
    run's; every process raises the same error when either fails."""
    problem = None
    if comm.is_main_process():
        try:
            lock_output_dir(cfg.OUTPUT_DIR)
            if resume:
                problem = _cannot_resume(cfg)
        except OutputDirBusy as e:
            problem = str(e)
    if comm.get_world_size() > 1:
        problem = comm.all_gather(problem)[0]
    if problem:
        raise ConfigError(problem)


def _cannot_resume(cfg):
    """Why `cfg` cannot continue the run checkpointed in OUTPUT_DIR, or None."""
    folder = cfg.OUTPUT_DIR
    run_config = os.path.join(folder, "config.yaml")
    if not (os.path.isfile(os.path.join(folder, "last_checkpoint")) and os.path.isfile(run_config)):
        return None
    try:
        run_cfg = load_config(run_config)
    except ConfigError as e:  # written by another version: the checkpoint check still applies
        logging.getLogger(__name__).warning(f"cannot compare with the run's config: {e}")
        return None
    culprits = incompatible_keys(run_cfg, cfg, Trainer.build_model, Trainer.build_optimizer)
    return describe(culprits, folder) if culprits else None
