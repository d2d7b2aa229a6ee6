"""PASA's fused kernels for CUDA, written in Triton.

On the GPU the torch path is bound by kernel launches: the softmax, the padding
and a multiply-add per tap are each one or more launches. Here one kernel
normalises the filter logits and takes the weighted, subsampled sum of every
channel, reading the unpadded input through the padding's index arithmetic
(reflect, replicate or zeros, as `PAD_MODES`). A second kernel gives the input
gradient (accumulated with atomic adds in float32, so its last bits can vary
from run to run) and the filter gradient; the softmax backward is plain torch.

With TRITON_INTERPRET=1 set before triton is imported, the kernels run on CPU
tensors through Triton's interpreter: how the tests check them without a GPU.
`kernels.ops` registers them as the CUDA implementation of PASA's operator.
"""

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # no triton: the torch path serves on CUDA
    triton = None

BLOCK_P = 128  # output pixels per program
MAX_BLOCK_C = 32  # channels per step of a program's loop over its group


def triton_available() -> bool:
    return triton is not None


if triton is not None:

    @triton.jit
    def _source(pos, size, PAD_MODE: tl.constexpr):
        """The input row (or column) that padded position `pos` reads, and whether
        it reads one at all (zeros padding reads none outside the map)."""
        if PAD_MODE == 0:  # reflect
            pos = tl.abs(pos)
            pos = tl.where(pos >= size, 2 * (size - 1) - pos, pos)
            valid = pos >= 0
        elif PAD_MODE == 1:  # replicate
            pos = tl.minimum(tl.maximum(pos, 0), size - 1)
            valid = pos >= 0
        else:  # zeros
            valid = (pos >= 0) & (pos < size)
            pos = tl.where(valid, pos, 0)
        return pos, valid

    @triton.jit
    def _program_pixels(Ho, Wo, GROUP: tl.constexpr, BLOCK_P: tl.constexpr):
        """This program's image n and group g, and its block of output pixels p
        (flat, with their rows oy and columns ox, and which of them exist)."""
        n = (tl.program_id(1) // GROUP).to(tl.int64)
        g = tl.program_id(1) % GROUP
        p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
        return n, g, p, p < Ho * Wo, p // Wo, p % Wo

    # Sizes are not specialised on (divisibility by 16, equality to 1): with
    # multi-scale inputs that would compile a kernel per size class.
    SIZES = ["C", "H", "W", "Ho", "Wo", "CPG"]

    @triton.jit(do_not_specialize=SIZES)
    def _forward_kernel(
        x_ptr,
        logits_ptr,
        y_ptr,
        w_ptr,
        C,
        H,
        W,
        Ho,
        Wo,
        CPG,
        GROUP: tl.constexpr,
        K: tl.constexpr,
        STRIDE: tl.constexpr,
        JOINT: tl.constexpr,
        PAD_MODE: tl.constexpr,
        KEEP: tl.constexpr,
        BLOCK_P: tl.constexpr,
        BLOCK_C: tl.constexpr,
        BLOCK_L: tl.constexpr,
    ):
        KK: tl.constexpr = K * K
        P = Ho * Wo
        n, g, p, p_ok, oy, ox = _program_pixels(Ho, Wo, GROUP, BLOCK_P)
        logits = logits_ptr + n * GROUP * KK * P
        # The softmax's max and sum over all groups' taps (joint) or this group's.
        rows = tl.arange(0, BLOCK_L)
        if JOINT:
            row_ok = rows < GROUP * KK
            first = 0
        else:
            row_ok = rows < KK
            first = g * KK
        block = tl.load(
            logits + (first + rows)[:, None] * P + p[None, :],
            mask=row_ok[:, None] & p_ok[None, :],
            other=float("-inf"),
        ).to(tl.float32)
        top = tl.where(p_ok, tl.max(block, axis=0), 0.0)
        total = tl.sum(tl.exp(block - top[None, :]), axis=0)
        scale = 1.0 / tl.where(p_ok, total, 1.0)
        if KEEP:
            for t in tl.static_range(KK):
                logit = tl.load(logits + (g * KK + t) * P + p, mask=p_ok, other=0.0).to(tl.float32)
                tl.store(
                    w_ptr + (n * GROUP + g) * KK * P + t * P + p,
                    tl.exp(logit - top) * scale,
                    mask=p_ok,
                )
        x = x_ptr + n * C * H * W
        y = y_ptr + n * C * P
        for c0 in range(g * CPG, (g + 1) * CPG, BLOCK_C):
            c = c0 + tl.arange(0, BLOCK_C)
            c_ok = c < (g + 1) * CPG
            acc = tl.zeros((BLOCK_C, BLOCK_P), dtype=tl.float32)
            for t in tl.static_range(KK):
                iy, y_ok = _source(oy * STRIDE + t // K - K // 2, H, PAD_MODE)
                ix, x_ok = _source(ox * STRIDE + t % K - K // 2, W, PAD_MODE)
                logit = tl.load(logits + (g * KK + t) * P + p, mask=p_ok, other=0.0).to(tl.float32)
                weight = tl.exp(logit - top) * scale
                ok = c_ok[:, None] & (p_ok & y_ok & x_ok)[None, :]
                value = tl.load(x + c[:, None] * H * W + (iy * W + ix)[None, :], mask=ok, other=0.0)
                acc += weight[None, :] * value.to(tl.float32)
            tl.store(
                y + c[:, None] * P + p[None, :],
                acc.to(y_ptr.dtype.element_ty),
                mask=c_ok[:, None] & p_ok[None, :],
            )

    @triton.jit(do_not_specialize=SIZES)
    def _backward_kernel(
        grad_y_ptr,
        x_ptr,
        w_ptr,
        grad_x_ptr,
        grad_w_ptr,
        C,
        H,
        W,
        Ho,
        Wo,
        CPG,
        GROUP: tl.constexpr,
        K: tl.constexpr,
        STRIDE: tl.constexpr,
        PAD_MODE: tl.constexpr,
        BLOCK_P: tl.constexpr,
        BLOCK_C: tl.constexpr,
    ):
        KK: tl.constexpr = K * K
        P = Ho * Wo
        n, g, p, p_ok, oy, ox = _program_pixels(Ho, Wo, GROUP, BLOCK_P)
        x = x_ptr + n * C * H * W
        grad_x = grad_x_ptr + n * C * H * W
        grad_y = grad_y_ptr + n * C * P
        weights = w_ptr + (n * GROUP + g) * KK * P
        for t in tl.static_range(KK):
            iy, y_ok = _source(oy * STRIDE + t // K - K // 2, H, PAD_MODE)
            ix, x_ok = _source(ox * STRIDE + t % K - K // 2, W, PAD_MODE)
            source = iy * W + ix
            weight = tl.load(weights + t * P + p, mask=p_ok, other=0.0)
            grad_weight = tl.zeros((BLOCK_P,), dtype=tl.float32)
            for c0 in range(g * CPG, (g + 1) * CPG, BLOCK_C):
                c = c0 + tl.arange(0, BLOCK_C)
                ok = (c < (g + 1) * CPG)[:, None] & (p_ok & y_ok & x_ok)[None, :]
                gy = tl.load(grad_y + c[:, None] * P + p[None, :], mask=ok, other=0.0).to(
                    tl.float32
                )
                tl.atomic_add(
                    grad_x + c[:, None] * H * W + source[None, :], weight[None, :] * gy, mask=ok
                )
                value = tl.load(x + c[:, None] * H * W + source[None, :], mask=ok, other=0.0)
                grad_weight += tl.sum(gy * value.to(tl.float32), axis=0)
            tl.store(grad_w_ptr + (n * GROUP + g) * KK * P + t * P + p, grad_weight, mask=p_ok)


def _launch(x: torch.Tensor, out_shape, kernel_size: int, stride: int, group: int, pad_mode):
    """What both kernels are launched with: the grid (pixel blocks, images x groups), the
    sizes, and the compile-time constants of the filter and the blocks."""
    c, h, w = x.shape[1:]
    cpg = c // group
    grid = (triton.cdiv(out_shape[0] * out_shape[1], BLOCK_P), x.shape[0] * group)
    sizes = (c, h, w, *out_shape, cpg)
    constants = {
        "GROUP": group,
        "K": kernel_size,
        "STRIDE": stride,
        "PAD_MODE": pad_mode,
        "BLOCK_P": BLOCK_P,
        "BLOCK_C": min(MAX_BLOCK_C, triton.next_power_of_2(cpg)),
    }
    return grid, sizes, constants


def pasa_forward(
    x, logits, kernel_size: int, stride: int, group: int, joint: bool, pad_mode: int, keep: bool
):
    """Triton counterpart of `_C.pasa_forward`: (y, float32 filters shaped like the
    logits, or None)."""
    x, logits = x.contiguous(), logits.contiguous()
    y = x.new_empty(*x.shape[:2], *logits.shape[-2:])
    weights = torch.empty(logits.shape, device=x.device) if keep else None
    grid, sizes, constants = _launch(x, logits.shape[-2:], kernel_size, stride, group, pad_mode)
    rows = group * kernel_size**2 if joint else kernel_size**2
    _forward_kernel[grid](
        x,
        logits,
        y,
        weights if keep else y,
        *sizes,
        **constants,
        JOINT=joint,
        KEEP=keep,
        BLOCK_L=triton.next_power_of_2(rows),
    )
    return y, weights


def pasa_backward(
    grad_y, x, weights, kernel_size: int, stride: int, group: int, joint: bool, pad_mode: int
):
    """Triton counterpart of `_C.pasa_backward`: (grad_x, grad_logits)."""
    grad_y, x = grad_y.contiguous(), x.contiguous()
    grad_x = torch.zeros(x.shape, device=x.device, dtype=torch.float32)
    grad_w = torch.empty_like(weights)
    grid, sizes, constants = _launch(x, grad_y.shape[-2:], kernel_size, stride, group, pad_mode)
    _backward_kernel[grid](grad_y, x, weights, grad_x, grad_w, *sizes, **constants)
    # Softmax backward, over the taps it normalised.
    weights, grad_w = (t.unflatten(1, (group, kernel_size**2)) for t in (weights, grad_w))
    dims = (1, 2) if joint else (2,)
    grad_logits = weights * (grad_w - (weights * grad_w).sum(dim=dims, keepdim=True))
    return grad_x.to(x.dtype), grad_logits.flatten(1, 2)
