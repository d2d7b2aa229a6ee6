"""Building the anti-aliasing filter of `MODEL.ANTIALIAS` at one backbone site."""

from detectron2.layers import get_norm
from torch import nn

from pasa_det.layers import PASA, LowPassFilter


def _logit_norm(norm: str, channels: int) -> nn.Module:
    module = get_norm(norm, channels)  # the name was checked with the config
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
        init=aa.INIT,
    )
