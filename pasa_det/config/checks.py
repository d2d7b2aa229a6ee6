"""The one check of pasa_det's config values. Loading a config runs it, and so does
building a backbone (for configs made in code); layers check only their own arguments."""

from detectron2.layers import get_norm

from pasa_det.layers.padding import PAD_MODES
from pasa_det.layers.pasa import INITS, SOFTMAX_MODES

ANTIALIAS_TYPES = ("none", "lpf", "pasa")
RESNET_STAGES = ("res2", "res3", "res4", "res5")
AMP_PRECISIONS = ("float16", "bfloat16")


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message says what to change."""


def check_antialias_config(cfg) -> None:
    """`MODEL.ANTIALIAS` holds values every backbone can use."""
    aa = cfg.MODEL.ANTIALIAS
    if aa.TYPE not in ANTIALIAS_TYPES:
        raise ConfigError(f"MODEL.ANTIALIAS.TYPE must be one of {ANTIALIAS_TYPES}, got {aa.TYPE!r}")
    if aa.TYPE == "none":
        return
    k = aa.KERNEL_SIZE
    if not isinstance(k, int) or k < 1 or k % 2 == 0:
        raise ConfigError(
            f"MODEL.ANTIALIAS.KERNEL_SIZE must be an odd integer >= 1 (3 or 5 in the paper), got {k!r}"
        )
    if aa.PAD_MODE not in PAD_MODES:
        raise ConfigError(
            f"MODEL.ANTIALIAS.PAD_MODE must be one of {PAD_MODES}, got {aa.PAD_MODE!r}"
        )
    unknown = [s for s in aa.STAGES if s not in RESNET_STAGES]
    if unknown:
        raise ConfigError(
            f"MODEL.ANTIALIAS.STAGES may only name {RESNET_STAGES}, got {list(unknown)}"
        )
    if aa.TYPE == "pasa":
        if not isinstance(aa.GROUP, int) or aa.GROUP < 1:
            raise ConfigError(f"MODEL.ANTIALIAS.GROUP must be a positive integer, got {aa.GROUP!r}")
        if aa.SOFTMAX not in SOFTMAX_MODES:
            raise ConfigError(
                f"MODEL.ANTIALIAS.SOFTMAX must be one of {SOFTMAX_MODES}, got {aa.SOFTMAX!r}"
            )
        if aa.INIT not in INITS:
            raise ConfigError(f"MODEL.ANTIALIAS.INIT must be one of {INITS}, got {aa.INIT!r}")
        if aa.INIT == "lpf" and not aa.NORM:
            raise ConfigError(
                "MODEL.ANTIALIAS.INIT 'lpf' sets the logit norm's shift, so MODEL.ANTIALIAS.NORM "
                "cannot be '': name a norm (e.g. BN) or set MODEL.ANTIALIAS.INIT random"
            )
        channels = aa.GROUP * k * k
        try:
            get_norm(aa.NORM, channels)
        except (KeyError, ValueError) as e:
            raise ConfigError(
                f"MODEL.ANTIALIAS.NORM={aa.NORM!r} cannot normalise the {channels} PASA filter "
                f"logits (GROUP * KERNEL_SIZE**2): {e!r}. Use 'BN', 'SyncBN', 'FrozenBN', or '' "
                "for none."
            ) from None


def check_pasa_config(cfg) -> None:
    """Every value pasa_det adds or reads holds something it can use; raises
    ConfigError naming the key otherwise."""
    check_antialias_config(cfg)
    if cfg.SOLVER.AMP.PRECISION not in AMP_PRECISIONS:
        raise ConfigError(
            f"SOLVER.AMP.PRECISION is {cfg.SOLVER.AMP.PRECISION!r}; "
            f"use one of {', '.join(AMP_PRECISIONS)}"
        )
    shift = cfg.TEST.SHIFT_CONSISTENCY
    if not shift.SHIFTS or any(not isinstance(s, int) or s < 1 for s in shift.SHIFTS):
        raise ConfigError(
            f"TEST.SHIFT_CONSISTENCY.SHIFTS must list positive integers (pixels), got {shift.SHIFTS!r}"
        )
    for key in ("SCORE_THRESH", "MATCH_IOU"):
        if not 0 <= shift[key] <= 1:
            raise ConfigError(
                f"TEST.SHIFT_CONSISTENCY.{key} must lie in [0, 1], got {shift[key]!r}"
            )
    if shift.NUM_PAIRS < 1 or shift.MAX_SHIFT < 0:
        raise ConfigError(
            "TEST.SHIFT_CONSISTENCY.NUM_PAIRS must be >= 1 and MAX_SHIFT >= 0, got "
            f"{shift.NUM_PAIRS!r} and {shift.MAX_SHIFT!r}"
        )
