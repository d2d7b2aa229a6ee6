"""Building anti-aliasing filters from `MODEL.ANTIALIAS`, with errors that name the key."""

from detectron2.layers import get_norm
from torch import nn

from pasa_det.layers import PASA, LowPassFilter
from pasa_det.layers.padding import PAD_MODES
from pasa_det.layers.pasa import SOFTMAX_MODES

ANTIALIAS_TYPES = ("none", "lpf", "pasa")
RESNET_STAGES = ("res2", "res3", "res4", "res5")


def check_antialias_config(cfg) -> None:
    """Fail at build time, naming the key, on values no backbone can use."""
    aa = cfg.MODEL.ANTIALIAS
    if aa.TYPE not in ANTIALIAS_TYPES:
        raise ValueError(f"MODEL.ANTIALIAS.TYPE must be one of {ANTIALIAS_TYPES}, got {aa.TYPE!r}")
    if aa.TYPE == "none":
        return
    k = aa.KERNEL_SIZE
    if not isinstance(k, int) or k < 1 or k % 2 == 0:
        raise ValueError(
            f"MODEL.ANTIALIAS.KERNEL_SIZE must be an odd integer >= 1 (3 or 5 in the paper), got {k!r}"
        )
    if aa.PAD_MODE not in PAD_MODES:
        raise ValueError(
            f"MODEL.ANTIALIAS.PAD_MODE must be one of {PAD_MODES}, got {aa.PAD_MODE!r}"
        )
    unknown = [s for s in aa.STAGES if s not in RESNET_STAGES]
    if unknown:
        raise ValueError(
            f"MODEL.ANTIALIAS.STAGES may only name {RESNET_STAGES}, got {list(unknown)}"
        )
    if aa.TYPE == "pasa":
        if not isinstance(aa.GROUP, int) or aa.GROUP < 1:
            raise ValueError(f"MODEL.ANTIALIAS.GROUP must be a positive integer, got {aa.GROUP!r}")
        if aa.SOFTMAX not in SOFTMAX_MODES:
            raise ValueError(
                f"MODEL.ANTIALIAS.SOFTMAX must be one of {SOFTMAX_MODES}, got {aa.SOFTMAX!r}"
            )
        _logit_norm(aa.NORM, aa.GROUP * k * k)


def _logit_norm(norm: str, channels: int) -> nn.Module:
    try:
        module = get_norm(norm, channels)
    except (KeyError, ValueError) as e:
        raise ValueError(
            f"MODEL.ANTIALIAS.NORM={norm!r} cannot normalise the {channels} PASA filter logits "
            f"(GROUP * KERNEL_SIZE**2): {e!r}. Use 'BN', 'SyncBN', 'FrozenBN', or '' for none."
        ) from None
    return nn.Identity() if module is None else module


def build_antialias_filter(cfg, channels: int, site: str) -> nn.Module:
    """The stride-2 filter of `MODEL.ANTIALIAS.TYPE` ("lpf" or "pasa") for `channels`
    channels; `site` names where it goes, for error messages."""
    aa = cfg.MODEL.ANTIALIAS
    if aa.TYPE == "lpf":
        return LowPassFilter(channels, aa.KERNEL_SIZE, stride=2, pad_mode=aa.PAD_MODE)
    if channels % aa.GROUP:
        raise ValueError(
            f"MODEL.ANTIALIAS.GROUP={aa.GROUP} must divide the {channels} channels filtered at {site}"
        )
    return PASA(
        channels,
        aa.KERNEL_SIZE,
        stride=2,
        group=aa.GROUP,
        pad_mode=aa.PAD_MODE,
        norm=lambda c: _logit_norm(aa.NORM, c),
        softmax=aa.SOFTMAX,
    )
