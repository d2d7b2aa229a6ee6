"""The `MODEL.ANTIALIAS` config node, and loading configs with it."""

import difflib
import logging
import os
import re

import torch
import yaml
from detectron2.config import CfgNode as CN


def add_pasa_config(cfg: CN) -> CN:
    """Add `MODEL.ANTIALIAS` (where and how backbones filter before downsampling)."""
    cfg.MODEL.ANTIALIAS = CN()
    # "none": detectron2's strided backbone; "lpf": fixed binomial blur (Zhang, 2019);
    # "pasa": pixel-adaptive grouped filters (Zou et al., 2020).
    cfg.MODEL.ANTIALIAS.TYPE = "none"
    cfg.MODEL.ANTIALIAS.KERNEL_SIZE = 3
    # PASA: channel groups sharing one predicted filter; must divide every filtered channel count.
    cfg.MODEL.ANTIALIAS.GROUP = 8
    cfg.MODEL.ANTIALIAS.PAD_MODE = "reflect"
    # PASA: "joint" (softmax over all groups' taps, as the published weights) or "group".
    cfg.MODEL.ANTIALIAS.SOFTMAX = "joint"
    # PASA: detectron2 norm name for the filter logits ("" for none).
    cfg.MODEL.ANTIALIAS.NORM = "BN"
    # Where filters go: the stem's pooling, the first block of these stages, that block's
    # shortcut, and the FPN's extra P6 level.
    cfg.MODEL.ANTIALIAS.STEM = True
    cfg.MODEL.ANTIALIAS.STAGES = ["res3", "res4", "res5"]
    cfg.MODEL.ANTIALIAS.SHORTCUT = True
    cfg.MODEL.ANTIALIAS.FPN_TOP = True

    # Shift consistency, evaluated beside the usual metrics when ENABLED.
    cfg.TEST.SHIFT_CONSISTENCY = CN()
    cfg.TEST.SHIFT_CONSISTENCY.ENABLED = False
    # Instance segmentation / detection: AP at these shifts (px in the original image) in
    # each of four directions, and agreement of instances scored >= SCORE_THRESH, matched
    # between original and shifted input at mask IoU >= MATCH_IOU.
    cfg.TEST.SHIFT_CONSISTENCY.SHIFTS = [1, 2, 5, 10, 20]
    cfg.TEST.SHIFT_CONSISTENCY.SCORE_THRESH = 0.5
    cfg.TEST.SHIFT_CONSISTENCY.MATCH_IOU = 0.5
    # Semantic segmentation: NUM_PAIRS crop pairs per image, offset by up to MAX_SHIFT px
    # (in the network's input) in each axis, drawn from SEED and the image's file name.
    cfg.TEST.SHIFT_CONSISTENCY.NUM_PAIRS = 5
    cfg.TEST.SHIFT_CONSISTENCY.MAX_SHIFT = 32
    cfg.TEST.SHIFT_CONSISTENCY.SEED = 0

    # Reliability (docs/RELIABILITY.md). Load MODEL.WEIGHTS even when some of its weights
    # have other shapes than the model's (fine-tuning with other classes) or none match.
    cfg.MODEL.WEIGHTS_ALLOW_PARTIAL = False
    # Unpickle MODEL.WEIGHTS without weights_only restrictions: only for files you trust.
    cfg.MODEL.WEIGHTS_TRUST_PICKLE = False
    # Training: log and replace an image that cannot be read (evaluation always raises).
    cfg.DATALOADER.SKIP_BAD_IMAGES = True

    # With SOLVER.AMP.ENABLED: the autocast dtype, "float16" (loss scaling, as detectron2)
    # or "bfloat16" (float32's range, no scaling); on the GPU or the CPU.
    cfg.SOLVER.AMP.PRECISION = "float16"
    return cfg


AMP_PRECISIONS = ("float16", "bfloat16")


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message says what to change."""


def _leaf_keys(cfg: CN, prefix: str = ""):
    for key, value in cfg.items():
        if isinstance(value, CN):
            yield from _leaf_keys(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def _explain(cfg: CN, error: Exception, where: str) -> ConfigError:
    """yacs' error for a merge from `where`, with the closest valid key for an unknown one."""
    message = str(error.args[0]) if error.args else str(error)
    unknown = re.match(r"Non-existent (?:config )?key: (\S+)", message)
    if unknown:
        key = unknown.group(1)
        close = difflib.get_close_matches(key, list(_leaf_keys(cfg)), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        return ConfigError(f"{where}: unknown config key {key}{hint}")
    return ConfigError(f"{where}: {message}")


def _check_bases(config_file: str) -> None:
    """Every `_BASE_` of the chain exists: detectron2 would fail on a missing one
    without naming the config that referenced it."""
    seen, path = set(), config_file
    while path not in seen:
        seen.add(path)
        if not os.path.isfile(path):
            raise ConfigError(f"{path}: no such config file")
        try:
            with open(path) as f:
                content = yaml.safe_load(f) or {}
        except yaml.constructor.ConstructorError:  # python tags: detectron2 reads these itself
            return
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from None
        base = content.get("_BASE_") if isinstance(content, dict) else None
        if not base:
            return
        resolved = os.path.expanduser(base)
        if resolved.startswith(("http://", "https://")):
            return
        resolved = os.path.join(os.path.dirname(path), resolved)
        if not os.path.isfile(resolved):
            raise ConfigError(
                f"{path}: its _BASE_ {base!r} does not exist (looked for {os.path.normpath(resolved)})"
            )
        path = resolved


def load_config(config_file: str, opts=()) -> CN:
    """detectron2's default config with pasa_det's and DeepLab's keys, merged with
    `config_file` and `KEY VALUE` overrides. Without CUDA the model runs on the CPU.
    Raises ConfigError naming the file or override and the key on any bad input."""
    from detectron2.config import get_cfg
    from detectron2.projects.deeplab import add_deeplab_config

    from pasa_det.modeling.backbone.antialias import check_antialias_config

    cfg = get_cfg()
    add_deeplab_config(cfg)
    add_pasa_config(cfg)
    _check_bases(config_file)
    try:
        cfg.merge_from_file(config_file)
    except (KeyError, AssertionError, ValueError) as e:
        raise _explain(cfg, e, config_file) from None
    try:
        cfg.merge_from_list(list(opts))
    except (KeyError, AssertionError, ValueError) as e:
        raise _explain(cfg, e, "command-line overrides") from None
    try:
        check_antialias_config(cfg)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if cfg.SOLVER.AMP.PRECISION not in AMP_PRECISIONS:
        raise ConfigError(
            f"SOLVER.AMP.PRECISION is {cfg.SOLVER.AMP.PRECISION!r}; use one of {', '.join(AMP_PRECISIONS)}"
        )
    if cfg.MODEL.DEVICE != "cpu" and not torch.cuda.is_available():
        logging.getLogger(__name__).warning(
            f"MODEL.DEVICE {cfg.MODEL.DEVICE!r} but no GPU is available: using the CPU"
        )
        cfg.MODEL.DEVICE = "cpu"
    return cfg
