"""Padding shared by the anti-aliasing filters."""

from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from .capture import capturing

PAD_MODES = ("reflect", "replicate", "zeros")


def check_pad_mode(pad_mode: str) -> str:
    if pad_mode not in PAD_MODES:
        raise ValueError(f"pad_mode must be one of {PAD_MODES}, got {pad_mode!r}")
    return pad_mode


def effective_pad_mode(x: torch.Tensor, pad: int, pad_mode: str) -> str:
    """Reflect padding needs every spatial size > pad; tiny maps (an FPN level
    of 1x1, say) get replicate padding instead of failing inside torch."""
    if pad_mode == "reflect" and min(x.shape[-2:]) <= pad:
        return "replicate"
    return pad_mode


def pad_same(x: torch.Tensor, pad: int, pad_mode: str) -> torch.Tensor:
    """Pad both spatial dims by `pad` on every side, keeping x's dtype (CPU autocast
    pads reflect and replicate in float32)."""
    if pad == 0:
        return x
    if pad_mode == "zeros":
        return F.pad(x, (pad,) * 4)
    return F.pad(x, (pad,) * 4, mode=effective_pad_mode(x, pad, pad_mode)).to(x.dtype)


def _padded_index(size: int, pad: int, pad_mode: str) -> torch.Tensor:
    """For each position of an axis padded by `pad`, the unpadded position it copies."""
    index = torch.arange(-pad, size + pad)
    if pad_mode == "replicate":
        return index.clamp(0, size - 1)
    index = index.abs()
    return torch.where(index >= size, 2 * (size - 1) - index, index)


def _interior(size: int, out: int, kernel_size: int, stride: int) -> Tuple[int, int]:
    """[lo, hi): the outputs along an axis whose window lies inside the map."""
    pad = kernel_size // 2
    lo = min(-(-pad // stride), out)
    return lo, max(lo, min(out, (size - 1 - pad) // stride + 1))


def _border_count(height: int, width: int, kernel_size: int, stride: int) -> int:
    """How many outputs have a window that reaches into the padding."""
    out_h, out_w = (height - 1) // stride + 1, (width - 1) // stride + 1
    top, bottom = _interior(height, out_h, kernel_size, stride)
    left, right = _interior(width, out_w, kernel_size, stride)
    return out_h * out_w - (bottom - top) * (right - left)


def _border_patches(height: int, width: int, kernel_size: int, stride: int, pad_mode: str):
    """The outputs whose window reaches into the padding, as flat indices into
    the output map (P,), and the input pixels of their windows, as flat indices
    into the input map (k * k * P,), tap-major: all outputs' first tap, then
    their second, ... The border is a frame: whole rows at the top and bottom,
    then the left and right columns of the rows between."""
    pad = kernel_size // 2
    out_h, out_w = (height - 1) // stride + 1, (width - 1) // stride + 1
    top, bottom = _interior(height, out_h, kernel_size, stride)
    left, right = _interior(width, out_w, kernel_size, stride)
    a, b = torch.arange(out_h), torch.arange(out_w)
    edge_rows, edge_cols = torch.cat([a[:top], a[bottom:]]), torch.cat([b[:left], b[right:]])
    middle = a[top:bottom]
    a = torch.cat([edge_rows.repeat_interleave(out_w), middle.repeat_interleave(len(edge_cols))])
    b = torch.cat([b.repeat(len(edge_rows)), edge_cols.repeat(len(middle))])
    rows = _padded_index(height, pad, pad_mode)
    cols = _padded_index(width, pad, pad_mode)
    taps = torch.arange(kernel_size)
    window_rows = rows[a[:, None] * stride + taps]  # (P, k)
    window_cols = cols[b[:, None] * stride + taps]
    pixels = window_rows.t()[:, None, :] * width + window_cols.t()[None, :, :]  # (k, k, P)
    return a * out_w + b, pixels.flatten()


class _ConvSame(torch.autograd.Function):
    """Forward: zero-padded convolution, then the border outputs overwritten by
    a matrix product over their gathered (padded) windows. Backward routes each
    output's gradient to whichever of the two produced it; the windows'
    gradients go back with one `scatter_add_`."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride: int, pad_mode: str):
        k = weight.shape[-1]
        x = x.contiguous()  # flat (N, C, H*W) views below
        out = F.conv2d(x, weight, bias, stride, padding=k // 2).contiguous()
        outputs, pixels = _border_patches(*x.shape[-2:], k, stride, pad_mode)
        patches = _windows(x, pixels, k)
        border = weight.flatten(1) @ patches  # (N, C_out, P)
        if bias is not None:
            border = border + bias[:, None]
        out.flatten(2).index_copy_(2, outputs, border)
        ctx.save_for_backward(x, weight, patches, outputs, pixels)
        ctx.stride, ctx.has_bias = stride, bias is not None
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        x, weight, patches, outputs, pixels = ctx.saved_tensors
        k = weight.shape[-1]
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        grad_main = grad_out.contiguous().clone()
        grad_border = grad_main.flatten(2).index_select(2, outputs)  # (N, C_out, P)
        grad_main.flatten(2).index_fill_(2, outputs, 0)
        grad_x, grad_w, grad_b = torch.ops.aten.convolution_backward(
            grad_main,
            x,
            weight,
            [weight.shape[0]] if ctx.has_bias else None,
            [ctx.stride] * 2,
            [k // 2] * 2,
            [1, 1],
            False,
            [0, 0],
            1,
            [need_x, need_w, ctx.has_bias and need_b],
        )
        if need_x:
            grad_patches = weight.flatten(1).t() @ grad_border  # (N, C * k * k, P)
            grad_x = grad_x.contiguous()
            grad_x.flatten(2).scatter_add_(
                2, pixels.expand(*x.shape[:2], -1), grad_patches.view(*x.shape[:2], -1)
            )
        if need_w:
            grad_w += (grad_border @ patches.transpose(1, 2)).sum(0).view_as(weight)
        if ctx.has_bias and need_b:
            grad_b += grad_border.sum((0, 2))
        return grad_x, grad_w, grad_b, None, None


def _windows(x: torch.Tensor, pixels: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """(N, C * k * k, P): the border outputs' windows, rows ordered like a
    convolution weight's flattened (C, k, k)."""
    n, c = x.shape[:2]
    gathered = torch.gather(
        x.flatten(2), 2, pixels.expand(n, c, -1)
    )  # 2x indexing's speed on the CPU
    return gathered.view(n, c * kernel_size * kernel_size, -1)


def conv2d_same(
    x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], stride: int, pad_mode: str
):
    """`conv2d(pad_same(x, k // 2, pad_mode), weight, bias, stride)` without the
    padded copy of `x`: the convolution zero-pads, then the outputs whose
    window reaches the border are recomputed from their gathered windows. On
    large maps the copy and its backward cost up to half the convolution's
    time on the CPU; small maps, whose windows are mostly border, are copied.
    On the GPU, where the copy costs less than the extra kernel launches, and in
    captured graphs (compiled, exported, traced: plain ops, whose backward and
    fusion the compiler derives), the input is always padded."""
    k = weight.shape[-1]
    pad = k // 2
    pad_mode = effective_pad_mode(x, pad, pad_mode)
    if pad == 0 or pad_mode == "zeros":
        return F.conv2d(x, weight, bias, stride, padding=pad)
    # A small map, mostly border, is cheaper to copy: on the CPU, padding a pixel
    # costs about half as much as gathering and multiplying one window pixel.
    if (
        x.device.type != "cpu"
        or capturing()
        or 2 * k * k * _border_count(*x.shape[-2:], k, stride) > x.shape[-2] * x.shape[-1]
    ):
        return F.conv2d(pad_same(x, pad, pad_mode), weight, bias, stride)
    device = x.device.type
    if not (torch.amp.is_autocast_available(device) and torch.is_autocast_enabled(device)):
        return _ConvSame.apply(x, weight, bias, stride, pad_mode)
    dtype = torch.get_autocast_dtype(device)  # compute in autocast's dtype, as F.conv2d would
    x, weight = x.to(dtype), weight.to(dtype)
    bias = None if bias is None else bias.to(dtype)
    with torch.autocast(device, enabled=False):
        return _ConvSame.apply(x, weight, bias, stride, pad_mode)
