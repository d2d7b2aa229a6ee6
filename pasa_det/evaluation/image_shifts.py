"""How the shift protocols move an image (or a prediction) and what stays comparable:
integer shifts with a zero-filled border, circular shifts, and sub-pixel shifts by
bilinear resampling."""

import math
from typing import Tuple

import numpy as np


def translate(array: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """Move the content of an (H, W, ...) array by dx columns and dy rows, filling
    what is uncovered with zeros and dropping what leaves the frame."""
    out = np.zeros_like(array)
    h, w = array.shape[:2]
    if abs(dx) >= w or abs(dy) >= h:
        return out
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = array[
        max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def translate_subpixel(array: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """Move the content of an (H, W, ...) array by a fractional (dx, dy): each output
    pixel (x, y) is the bilinear interpolation of the input at (x - dx, y - dy), zero
    outside the frame. Float32 out; an integer shift equals `translate`."""
    ix, iy = math.floor(dx), math.floor(dy)
    fx, fy = dx - ix, dy - iy
    a = array.astype(np.float32)
    out = np.zeros_like(a)
    for ox, wx in ((0, 1 - fx), (1, fx)):
        for oy, wy in ((0, 1 - fy), (1, fy)):
            if wx * wy:
                out += (wx * wy) * translate(a, ix + ox, iy + oy)
    return out


def circular(array: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """Move the content of an (H, W, ...) array by (dx, dy) with wrap-around: what
    leaves one side enters at the other, so nothing is lost or zero-filled."""
    return np.roll(array, (dy, dx), axis=(0, 1))


def shared_view(h: int, w: int, dx: int, dy: int) -> Tuple[slice, slice]:
    """The rows and columns of an (h, w) image that stay in frame when it moves by (dx, dy)."""
    return slice(max(-dy, 0), h + min(-dy, 0)), slice(max(-dx, 0), w + min(-dx, 0))


def subpixel_view(h: int, w: int, dx: float, dy: float) -> Tuple[slice, slice]:
    """The rows and columns of an (h, w) map moved by a fractional (dx, dy) that
    `translate_subpixel` filled from the frame only (no zero-filled neighbour)."""
    x0, x1 = max(math.ceil(dx), 0), w + min(math.floor(dx), 0)
    y0, y1 = max(math.ceil(dy), 0), h + min(math.floor(dy), 0)
    return slice(y0, y1), slice(x0, x1)
