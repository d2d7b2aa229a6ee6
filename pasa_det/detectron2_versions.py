"""Where detectron2 0.6 (PyPI, Nov 2021) and detectron2 main (built from source) differ,
and what of detectron2's beyond its public API pasa_det reads.

Both report `__version__` "0.6", so every difference is detected by what the installed
detectron2 can do, never by its version string. Everything else in pasa_det uses the API
the two share; a new difference belongs here, with the version that needs it.

Differences that pasa_det avoids rather than bridges, by not using the API that differs:
- AMPTrainer (main adds `precision`; both CUDA only): engine.step's TrainingStep
  autocasts itself.
- DefaultTrainer (its constructor builds the data loader before a resumed run's position
  is known; main checkpoints the inner trainer's state, 0.6 does not): pasa_det's
  engine.training composes the step, hooks and checkpointer itself.
- FrozenBatchNorm2d (main keeps a converted BN's `num_batches_tracked`): SafeCheckpointer
  does not report that counter as missing.
- DetectionCheckpointer._load_file (main asserts it runs inside `load`): only `load` is used.
- detectron2's launcher (0.6: CUDA only): engine.launch starts every multi-process job.
- CityscapesInstanceEvaluator.evaluate (its cityscapesscripts call writes JSON that fails
  on NumPy 2): evaluation.cityscapes runs the same steps itself.
"""

import contextlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import inspect
import logging
import sys

import torch.distributed as dist
from detectron2.engine import SimpleTrainer
from detectron2.utils import comm

# main: write_metrics(loss_dict, data_time, cur_iter, prefix=""); 0.6: (loss_dict,
# data_time, prefix="") with the iteration read from the event storage.
_WRITE_METRICS_TAKES_ITERATION = (
    "cur_iter" in inspect.signature(SimpleTrainer.write_metrics).parameters
)


def detectron2_release() -> str:
    """What results record as the detectron2 they ran on: main for a build of its main
    branch (newer than 0.6, though it says "0.6"), else its version."""
    import detectron2

    return "main" if _WRITE_METRICS_TAKES_ITERATION else detectron2.__version__


def write_metrics(loss_dict, data_time: float, iteration: int) -> None:
    """detectron2's per-iteration loss and data-time metrics (a collective: every rank calls it)."""
    if _WRITE_METRICS_TAKES_ITERATION:
        SimpleTrainer.write_metrics(loss_dict, data_time, iteration)
    else:
        SimpleTrainer.write_metrics(loss_dict, data_time)


# ---- detectron2's and fvcore's private parts pasa_det reads (it assigns none) ----
# Besides these readers, pasa_det's checkpointer overrides fvcore's Checkpointer hooks
# `_load_file`, `_load_model` and `_log_incompatible_keys` (as detectron2's own
# DetectionCheckpointer does), and replaces its `path_manager` (a public attribute).


def coco_ground_truth(evaluator):
    """The pycocotools COCO object a COCOEvaluator read its dataset's ground truth into,
    which both its pycocotools and its C++ scoring read (`_coco_api` in 0.6 and main)."""
    return evaluator._coco_api


def cityscapes_prediction_dir(evaluator) -> str:
    """The temporary folder detectron2's CityscapesInstanceEvaluator writes each
    prediction to in `process` (`_temp_dir` in 0.6 and main)."""
    return evaluator._temp_dir


def remove_cityscapes_prediction_dir(evaluator) -> None:
    """Delete that folder, as the evaluator's own `evaluate` does at its end."""
    evaluator._working_dir.cleanup()


def next_training_batch(trainer: SimpleTrainer):
    """The next batch of a SimpleTrainer's data loader, from the iterator its own
    `run_step` reads (0.6: made at construction; main: made at first use)."""
    return next(trainer._data_loader_iter)


class _OneLine(logging.Filter):
    def __init__(self, explained):
        super().__init__()
        self.explained = explained

    def filter(self, record):
        if record.exc_info and isinstance(record.exc_info[1], self.explained):
            record.msg, record.args = f"Training stopped: {record.exc_info[1]}", ()
            record.exc_info = record.exc_text = None
        return True


@contextlib.contextmanager
def training_errors_in_one_line(explained: tuple):
    """detectron2's training loop logs the exception that ends it with its traceback; the
    `explained` errors say what happened and what to change, so while this lasts they are
    logged as one line."""
    train_loop = logging.getLogger("detectron2.engine.train_loop")
    one_line = _OneLine(explained)
    train_loop.addFilter(one_line)
    try:
        yield
    finally:
        train_loop.removeFilter(one_line)


def create_local_process_group(processes_per_machine: int) -> None:
    """The group of this machine's processes that comm.get_local_rank() reads; every rank
    must call it. main has comm.create_local_process_group; 0.6 has no public way, and its
    own launcher assigns comm._LOCAL_PROCESS_GROUP, as this does for 0.6 only."""
    if hasattr(comm, "create_local_process_group"):
        comm.create_local_process_group(processes_per_machine)
        return
    machine = dist.get_rank() // processes_per_machine
    for m in range(dist.get_world_size() // processes_per_machine):
        group = dist.new_group(
            list(range(m * processes_per_machine, (m + 1) * processes_per_machine))
        )
        if m == machine:
            comm._LOCAL_PROCESS_GROUP = group


def fast_cocoeval_available() -> bool:
    """detectron2's C++ COCOeval (use_fast_impl): built into main's `_C`, absent from the
    0.6 PyPI build, whose `_C` is a stub."""
    try:
        from detectron2 import _C
    except ImportError:
        return False
    return hasattr(_C, "COCOevalEvaluateImages")


class _CityscapesScriptsAlias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves `deeplearning.projects.cityscapesApi.cityscapesscripts[.…]` as the
    `cityscapesscripts` package (PyPI). detectron2 main (since Dec 2024) imports that
    internal name in its Cityscapes loaders and evaluators; 0.6 imports `cityscapesscripts`.
    First on sys.meta_path, since the aliased submodules would otherwise be found as files
    under the real package's path and run a second time under the alias."""

    ALIASED = "deeplearning.projects.cityscapesApi.cityscapesscripts"

    def find_spec(self, name, path=None, target=None):
        if name == self.ALIASED or name.startswith(self.ALIASED + "."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        if self.ALIASED.startswith(name + "."):  # the empty parent packages
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        if spec.name.startswith(self.ALIASED):
            return importlib.import_module("cityscapesscripts" + spec.name[len(self.ALIASED) :])
        return None  # a plain empty module

    def exec_module(self, module):
        pass


def serve_cityscapes_scripts_for_detectron2_main() -> None:
    """Lets detectron2 main's Cityscapes loaders and evaluators find cityscapesscripts
    (idempotent; nothing changes for 0.6, which never imports the aliased name, nor where
    a real `deeplearning` package is installed)."""
    if any(isinstance(f, _CityscapesScriptsAlias) for f in sys.meta_path):
        return
    if importlib.util.find_spec("deeplearning") is None:
        sys.meta_path.insert(0, _CityscapesScriptsAlias())
