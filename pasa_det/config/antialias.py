"""What anti-aliases a backbone, as plain values: the filter (`AntiAlias.kind` and its
arguments) and where it goes (stem, stages, shortcut). yacs configs, LazyConfigs and plain
Python all build backbones from one `AntiAlias`; `antialias_from_cfg` reads it from
`MODEL.ANTIALIAS`."""

import contextlib
import dataclasses
import re
from typing import Tuple

import torch
from detectron2.layers import get_norm
from torch import nn

from pasa_det.layers import PASA, LowPassFilter

KINDS = ("none", "lpf", "pasa")
RESNET_STAGES = ("res2", "res3", "res4", "res5")


class AntiAliasError(ValueError):
    """An `AntiAlias` value no filter can use; `field` names it."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclasses.dataclass(frozen=True)
class AntiAlias:
    """The stride-2 filter that replaces a backbone's strided subsampling, and its sites.

    kind: "none" (detectron2's strided backbone), "lpf" (fixed binomial blur, Zhang 2019)
        or "pasa" (pixel-adaptive grouped filters, Zou et al. 2020).
    kernel_size, pad_mode: both filters'. group, softmax, norm (a detectron2 norm name for
        the filter logits, "" for none), init: PASA's (see `pasa_det.layers.PASA`).
    stem, stages, shortcut: filter the stem's pooling, the first block of these stages,
        and that block's projection shortcut.

    The values are checked by building the filter once, so they obey exactly what the
    layers accept.
    """

    kind: str = "pasa"
    kernel_size: int = 3
    group: int = 8
    pad_mode: str = "reflect"
    softmax: str = "group"
    norm: str = "BN"
    init: str = "lpf"
    stem: bool = True
    stages: Tuple[str, ...] = ("res3", "res4", "res5")
    shortcut: bool = True

    def __post_init__(self):
        object.__setattr__(self, "stages", tuple(self.stages))
        if self.kind not in KINDS:
            raise AntiAliasError("kind", f"kind must be one of {KINDS}, got {self.kind!r}")
        unknown = [s for s in self.stages if s not in RESNET_STAGES]
        if unknown:
            raise AntiAliasError("stages", f"stages may only name {RESNET_STAGES}, got {unknown}")
        if self.kind == "pasa" and (not isinstance(self.group, int) or self.group < 1):
            raise AntiAliasError("group", f"group must be a positive integer, got {self.group!r}")
        if self.kind != "none":
            # The layers' own checks of every argument; the probe's random initialisation
            # must not move the RNG that initialises the model built next.
            with torch.random.fork_rng(devices=[]):
                self.filter(self.group, "a probe")

    def filter(self, channels: int, site: str) -> nn.Module:
        """The filter for `channels` channels at `site` (named in errors)."""
        if self.kind == "lpf":
            return _checked(
                LowPassFilter, channels, self.kernel_size, stride=2, pad_mode=self.pad_mode
            )
        if self.kind != "pasa":
            raise AntiAliasError("kind", f"kind {self.kind!r} places no filter")
        if not isinstance(self.group, int) or self.group < 1 or channels % self.group:
            raise AntiAliasError(
                "group",
                f"group={self.group!r} must divide the {channels} channels filtered at {site}",
            )
        return _checked(
            PASA,
            channels,
            self.kernel_size,
            stride=2,
            group=self.group,
            pad_mode=self.pad_mode,
            norm=self._logit_norm,
            softmax=self.softmax,
            init=self.init,
        )

    def _logit_norm(self, channels: int) -> nn.Module:
        try:
            module = get_norm(self.norm, channels)
        except (KeyError, ValueError) as e:
            raise AntiAliasError(
                "norm",
                f"norm={self.norm!r} cannot normalise the {channels} PASA filter logits "
                f"(group * kernel_size**2): {e!r}. Use 'BN', 'SyncBN', 'FrozenBN', or '' for none",
            ) from None
        return nn.Identity() if module is None else module


_FIELDS = {f.name for f in dataclasses.fields(AntiAlias)}


def _checked(layer, *args, **kwargs) -> nn.Module:
    """`layer(*args, **kwargs)`, its ValueError naming the `AntiAlias` field at fault (the
    layers' messages start with the argument's name)."""
    try:
        return layer(*args, **kwargs)
    except AntiAliasError:
        raise
    except ValueError as e:
        name = re.match(r"\w+", str(e))
        field = name.group() if name and name.group() in _FIELDS else "kind"
        raise AntiAliasError(field, str(e)) from None


def antialias_from_cfg(cfg) -> AntiAlias:
    """The `AntiAlias` of a yacs config's `MODEL.ANTIALIAS`; an error names the key."""
    node = cfg.MODEL.ANTIALIAS
    values = {
        f.name: node[f.name.upper()] for f in dataclasses.fields(AntiAlias) if f.name != "kind"
    }
    with keys_named_in_errors():
        return AntiAlias(kind=node.TYPE, **values)


@contextlib.contextmanager
def keys_named_in_errors():
    """Re-raise an AntiAliasError with `MODEL.ANTIALIAS.<KEY>` for the field it names, as
    the yacs builders report it."""
    try:
        yield
    except AntiAliasError as e:
        key = "MODEL.ANTIALIAS." + ("TYPE" if e.field == "kind" else e.field.upper())
        message = str(e)
        if message.startswith(e.field):
            message = key + message[len(e.field) :]
        else:
            message = f"{key}: {message}"
        raise AntiAliasError(e.field, message) from None
