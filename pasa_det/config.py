"""The `MODEL.ANTIALIAS` config node."""
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
