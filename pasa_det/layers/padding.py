"""Padding shared by the anti-aliasing filters."""
import torch
import torch.nn.functional as F

PAD_MODES = ("reflect", "replicate", "zeros")


def check_pad_mode(pad_mode: str) -> str:
    if pad_mode not in PAD_MODES:
        raise ValueError(f"pad_mode must be one of {PAD_MODES}, got {pad_mode!r}")
    return pad_mode


def pad_same(x: torch.Tensor, pad: int, pad_mode: str) -> torch.Tensor:
    """Pad both spatial dims by `pad` on every side.

    Reflect padding needs every spatial size > pad; tiny maps (an FPN level of
    1x1, say) fall back to replicate padding instead of failing inside torch.
    """
    if pad == 0:
        return x
    if pad_mode == "zeros":
        return F.pad(x, (pad,) * 4)
    if pad_mode == "reflect" and min(x.shape[-2:]) <= pad:
        pad_mode = "replicate"
    return F.pad(x, (pad,) * 4, mode=pad_mode)
