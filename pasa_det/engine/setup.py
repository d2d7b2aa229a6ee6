"""A run's set-up, before anything is built, for a yacs config or a LazyConfig: the
config read and checked, its datasets registered, the output folder claimed, detectron2's
logging and seeding."""

import logging
import os

from detectron2.engine import default_setup
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from pasa_det.config import ConfigError, load_config
from pasa_det.config.checks import check_shift_settings
from pasa_det.config.lazy import load_lazy_config
from pasa_det.data.checks import (
    check_datasets_registered,
    check_lazy_num_classes,
    check_num_classes,
    check_registered,
)
from pasa_det.data.datasets.from_config import register_datasets_from_config

from .lazy import lazy_datasets, register_lazy_datasets
from .output_lock import OutputDirBusy, lock_output_dir
from .resume_check import (
    LAZY_NOT_STRUCTURAL,
    describe,
    incompatible_keys,
    lazy_structure,
    yacs_structure,
)
from .trainer import Trainer


def setup_cfg(args):
    """The config of --config-file and trailing KEY VALUE pairs, frozen, its datasets
    registered and checked (before any model is built), with detectron2's default_setup
    (output folder, logging, seeds). Before anything is written to OUTPUT_DIR: the folder
    is locked for this run (another live run there is an error naming it), and --resume
    with a config that cannot continue the run there is an error naming the keys."""
    cfg = load_config(args.config_file, args.opts)
    cfg.freeze()
    resume = args.resume and not args.eval_only
    claim_output_dir(cfg.OUTPUT_DIR, lambda: _cannot_resume(cfg) if resume else None)
    default_setup(cfg, args)
    log_pasa_det_messages(cfg.OUTPUT_DIR)
    register_datasets_from_config(cfg)
    check_datasets_registered(cfg)
    check_num_classes(cfg, [*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST])
    return cfg


def log_pasa_det_messages(output_dir: str) -> None:
    """pasa_det's own messages (skipped images, signals, resume) to the console and to
    `output_dir`/log.txt with timestamps, as detectron2's."""
    setup_logger(output_dir, distributed_rank=comm.get_rank(), name="pasa_det", abbrev_name="pasa")


def setup_lazy_cfg(args):
    """setup_cfg for a LazyConfig: --config-file x.py and trailing key=value overrides;
    its own datasets registered and the ones it names checked."""
    cfg = load_lazy_config(args.config_file, args.opts)
    resume = args.resume and not args.eval_only
    claim_output_dir(cfg.train.output_dir, lambda: _cannot_resume_lazy(cfg) if resume else None)
    default_setup(cfg, args)
    log_pasa_det_messages(cfg.train.output_dir)
    register_lazy_datasets(cfg)
    how = "dataloader.register_coco \"[['{}', 'path/to/annotations.json', 'path/to/images']]\""
    for part in ("train", "test"):
        key, names = lazy_datasets(cfg, part)
        check_registered(key, names, how.format)
        check_lazy_num_classes(cfg, names)
    if "shift_consistency" in cfg.dataloader:
        check_shift_settings(cfg.dataloader.shift_consistency, "dataloader.shift_consistency")
    return cfg


def claim_output_dir(output_dir: str, why_not_resume=lambda: None) -> None:
    """The main process locks `output_dir` and asks `why_not_resume()` whether the run
    there cannot be continued; every process raises the same error when either fails."""
    problem = None
    if comm.is_main_process():
        try:
            lock_output_dir(output_dir)
            problem = why_not_resume()
        except OutputDirBusy as e:
            problem = str(e)
    if comm.get_world_size() > 1:
        problem = comm.all_gather(problem)[0]
    if problem:
        raise ConfigError(problem)


def _run_config(folder: str, load):
    """The config of the run checkpointed in `folder`, read by `load`, or None."""
    run_config = os.path.join(folder, "config.yaml")
    if not (os.path.isfile(os.path.join(folder, "last_checkpoint")) and os.path.isfile(run_config)):
        return None
    try:
        return load(run_config)
    except ConfigError as e:  # written by another version: the checkpoint check still applies
        logging.getLogger(__name__).warning(f"cannot compare with the run's config: {e}")
        return None


def _cannot_resume(cfg):
    """Why `cfg` cannot continue the run checkpointed in OUTPUT_DIR, or None."""
    run_cfg = _run_config(cfg.OUTPUT_DIR, load_config)
    if run_cfg is None:
        return None
    structure = yacs_structure(Trainer.build_model, Trainer.build_optimizer)
    culprits = incompatible_keys(run_cfg, cfg, structure)
    return describe(culprits, cfg.OUTPUT_DIR) if culprits else None


def _cannot_resume_lazy(cfg):
    """_cannot_resume for a LazyConfig (train.output_dir)."""
    folder = cfg.train.output_dir
    run_cfg = _run_config(folder, load_lazy_config)
    if run_cfg is None:
        return None
    culprits = incompatible_keys(run_cfg, cfg, lazy_structure, LAZY_NOT_STRUCTURAL)
    return describe(culprits, folder, "train.output_dir") if culprits else None
