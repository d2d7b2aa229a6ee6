"""One training run from plain parts, behind both tools: the checkpoint is read first, the
data stream is built at the position it gives, then the step, its hooks and the
checkpointer are wired here, where a reader sees them all. (detectron2's DefaultTrainer
builds its data loader before it knows where a resumed run continues.)"""

import logging
import os
from typing import Callable, Iterable, Optional, Sequence

from detectron2.engine import HookBase, create_ddp_model, hooks
from detectron2.engine.defaults import default_writers
from detectron2.utils import comm

from pasa_det.checkpoint.loading import CheckpointError, SafeCheckpointer
from pasa_det.config import ConfigError
from pasa_det.data.checks import DatasetError
from pasa_det.detectron2_versions import training_errors_in_one_line

from .interrupt import CheckpointOnSignal, EvaluationInterrupted
from .norm_statistics import EqualNormStatistics
from .step import NonFiniteLossError, TrainingStep

logger = logging.getLogger(__name__)

# Errors whose message says what happened and what to change: logged without a traceback.
EXPLAINED_ERRORS = (NonFiniteLossError, CheckpointError, DatasetError, ConfigError)


class FinalEvalHook(hooks.EvalHook):
    """detectron2's EvalHook, except that the evaluation after the last iteration runs only
    when training finished: after an error in the last iteration (a divergence, a checkpoint
    that could not be written) its numbers would describe a model nobody keeps."""

    def after_train(self):
        if self.trainer.iter >= self.trainer.max_iter:
            super().after_train()


class Training:
    """A training run of `model`, from `weights` or resumed from `checkpointer`'s folder.

    train_batches(start): the training batches from global sample position `start`
        (a resumed run's iteration times `ims_per_batch`), as pasa_det.data.loaders builds
        them.
    scheduler: a torch LR scheduler, or an fvcore ParamScheduler of the LR's multiplier.
    evaluate(model): the evaluation results ({} for none); run every `eval_period`
        iterations (0: at the end only) and after the last.
    checkpointer: a SafeCheckpointer of `model` saving to the run's folder, every
        `checkpoint_period` iterations (the last `max_to_keep`, None: all) and at the end.
    seed, precision, divergence_factor, divergence_key: TrainingStep's.
    divergence_advice: what to change after a divergence, for the error.
    ddp: create_ddp_model's keyword arguments when there are several processes.
    extra_hooks: run after the schedule's and before the checkpointer's (PreciseBN).
    weights_option: the command-line override that sets the weights, for the hints.

    As detectron2's trainers: `resume_or_load(resume)`, then `train()`, which returns the
    last evaluation's results; `step` is the TrainingStep (a detectron2 TrainerBase).
    """

    def __init__(
        self,
        model,
        optimizer,
        scheduler,
        train_batches: Callable[[int], Iterable],
        *,
        ims_per_batch: int,
        max_iter: int,
        checkpointer: SafeCheckpointer,
        evaluate: Callable,
        weights: str = "",
        checkpoint_period: int = 5000,
        max_to_keep: Optional[int] = None,
        eval_period: int = 0,
        log_period: int = 20,
        seed: Optional[int] = None,
        precision: Optional[str] = None,
        divergence_factor: float = 0.0,
        divergence_key: str = "the divergence factor",
        divergence_advice: str = "a lower learning rate",
        ddp: Optional[dict] = None,
        extra_hooks: Sequence[HookBase] = (),
        weights_option: str = "MODEL.WEIGHTS {}",
    ):
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.train_batches, self.ims_per_batch = train_batches, ims_per_batch
        self.max_iter, self.checkpointer, self.weights = max_iter, checkpointer, weights
        self.evaluate, self.eval_period = evaluate, eval_period
        self.checkpoint_period, self.max_to_keep = checkpoint_period, max_to_keep
        self.log_period = log_period
        self.seed, self.precision = seed, precision
        self.divergence_factor, self.divergence_key = divergence_factor, divergence_key
        self.divergence_advice = divergence_advice
        self.ddp = dict(ddp or {"broadcast_buffers": False})
        self.extra_hooks, self.weights_option = list(extra_hooks), weights_option
        self.user_hooks = []
        self.start_iter, self._state = None, None
        self.step = None
        self.last_eval_results = None

    def register_hooks(self, extra) -> None:
        """Hooks to run after detectron2's defaults (and before the signal handling)."""
        self.user_hooks.extend(extra)

    def resume_or_load(self, resume: bool = True) -> None:
        """Read the run's last checkpoint when resuming and there is one (the model, and the
        iteration the data stream continues at), else `weights` (the model only)."""
        resuming = resume and self.checkpointer.has_checkpoint()
        if resume and not resuming:
            self._warn_nothing_to_resume()
        unread = self.checkpointer.resume_or_load(self.weights, resume=resume)
        self._state = unread.get("trainer") if resuming else None
        self.start_iter = self._state["iteration"] + 1 if self._state else 0

    def train(self) -> Optional[dict]:
        """Train from `start_iter` to `max_iter`; the last evaluation's results."""
        if self.start_iter is None:
            self.resume_or_load(resume=False)
        on_cpu = next(self.model.parameters()).device.type == "cpu"
        # detectron2 passes device_ids=[local rank] by default, which DDP rejects on the CPU.
        model = create_ddp_model(self.model, **self.ddp, **({"device_ids": None} if on_cpu else {}))
        self.step = TrainingStep(
            model,
            self.train_batches(self.start_iter * self.ims_per_batch),
            self.optimizer,
            precision=self.precision,
            seed=self.seed,
            divergence_factor=self.divergence_factor,
            divergence_key=self.divergence_key,
        )
        signal_hook = CheckpointOnSignal(self.checkpointer)
        self.step.register_hooks([*self._hooks(), *self.user_hooks, signal_hook])
        if self._state is not None:
            self.step.load_state_dict(self._state)
        self.checkpointer.add_checkpointable("trainer", self.step)
        try:
            with training_errors_in_one_line(EXPLAINED_ERRORS):
                self.step.train(self.start_iter, self.max_iter)
        except NonFiniteLossError as e:
            raise self._diverged(e) from None
        except EvaluationInterrupted as e:
            # A signal during a periodic evaluation saves the model as one during training
            # does; during the final one, model_final.pth is complete.
            if self.step.iter < self.max_iter:
                signal_hook.save_and_stop(e.signum)
            final = os.path.join(self.checkpointer.save_dir, "model_final.pth")
            raise EvaluationInterrupted(
                e.signum,
                f"{final} is complete: evaluate it with --eval-only "
                + self.weights_option.format(final),
            ) from None
        finally:
            signal_hook.close()
        return self.last_eval_results

    @property
    def storage(self):
        """The step's EventStorage (detectron2's metrics of the run)."""
        return self.step.storage

    def _hooks(self):
        """detectron2's default hooks, in its order, with the norm statistics made equal
        across processes before the checkpointer and evaluation read them."""
        listed = [
            hooks.IterationTimer(),
            hooks.LRScheduler(self.optimizer, self.scheduler),
            *self.extra_hooks,
        ]
        if comm.get_world_size() > 1:
            listed.append(EqualNormStatistics(self.model))
        if comm.is_main_process():
            listed.append(
                hooks.PeriodicCheckpointer(
                    self.checkpointer, self.checkpoint_period, max_to_keep=self.max_to_keep
                )
            )
        listed.append(FinalEvalHook(self.eval_period, self._evaluate))
        if comm.is_main_process():
            writers = default_writers(self.checkpointer.save_dir, self.max_iter)
            listed.append(hooks.PeriodicWriter(writers, period=self.log_period))
        return listed

    def _evaluate(self):
        self.last_eval_results = self.evaluate(self.model)
        return self.last_eval_results

    def _diverged(self, error: NonFiniteLossError) -> NonFiniteLossError:
        """The divergence, told with what survived and what to try; nothing is saved from
        the suspect state after it."""
        self.checkpointer.refuse_saves(
            f"the model state is suspect after training diverged at iteration {self.step.iter}"
        )
        last = (
            self.checkpointer.get_checkpoint_file()
            if self.checkpointer.has_checkpoint()
            else "none"
        )
        return NonFiniteLossError(
            f"{error}. It stopped without updating the weights, writing a checkpoint or "
            f"evaluating; the last checkpoint is {last}. To try: {self.divergence_advice}, "
            "then --resume."
        )

    def _warn_nothing_to_resume(self):
        """--resume into a folder that holds an earlier run's files but no checkpoint
        would silently start over: say so, and where it looked."""
        folder = self.checkpointer.save_dir
        names = os.listdir(folder) if os.path.isdir(folder) else []
        # This run's writers create their files when training starts; metrics.json with
        # lines in it, or a saved model, is an earlier run's.
        earlier = sorted(
            name
            for name in names
            if (name.startswith("model_") and name.endswith(".pth"))
            or (name == "metrics.json" and os.path.getsize(os.path.join(folder, name)) > 0)
        )
        if earlier:
            logger.warning(
                f"--resume found no checkpoint to continue: {folder} has no last_checkpoint "
                f"file, though an earlier run left {', '.join(earlier[:3])}"
                f"{' …' if len(earlier) > 3 else ''} there. Training starts at iteration 0 "
                f"from {self.weights or 'scratch'}."
            )
