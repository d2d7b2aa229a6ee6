"""The `MODEL.ANTIALIAS` config node, and loading configs with it."""
import logging

import torch
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
    return cfg


def load_config(config_file: str, opts=()) -> CN:
    """detectron2's default config with pasa_det's and DeepLab's keys, merged with
    `config_file` and `KEY VALUE` overrides. Without CUDA the model runs on the CPU."""
    from detectron2.config import get_cfg
    from detectron2.projects.deeplab import add_deeplab_config

    cfg = get_cfg()
    add_deeplab_config(cfg)
    add_pasa_config(cfg)
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    if cfg.MODEL.DEVICE != "cpu" and not torch.cuda.is_available():
        logging.getLogger(__name__).warning(f"MODEL.DEVICE {cfg.MODEL.DEVICE!r} but no GPU is available: using the CPU")
        cfg.MODEL.DEVICE = "cpu"
    return cfg
