"""`pasa_det::softmax_subsample`: PASA's softmax and weighted subsampling as one torch
operator, with the C++ kernel (`pasa_det._C`) as its CPU implementation and the Triton
kernel (`pasa_triton`) as its CUDA one.

Registered through `torch.library`, the kernels are one node to dynamo (no graph
break), to torch.export (dynamic sizes through the fake implementation) and to
AOTAutograd (the backward is a second operator, `softmax_subsample_backward`, over the
kernels' hand-written gradients). A kernel that is not built or installed is simply
not registered; `PASA` then takes its torch path.
"""

import os
from typing import Tuple

import torch
from torch import Tensor

from ..padding import PAD_MODES
from . import pasa_triton

try:  # the C++ kernel, built by `pip install -e .` (`make setup`)
    from pasa_det import _C
except ImportError:  # not built: the torch path serves
    _C = None
if os.environ.get("PASA_DET_NO_NATIVE") == "1":  # as if not built (set-up skips the build too)
    _C = None


def native_available() -> bool:
    """Whether the C++ kernel (`pasa_det._C`) was built and imports."""
    return _C is not None


def triton_available() -> bool:
    return pasa_triton.triton_available()


def _no_kernel(device: torch.device):
    return NotImplementedError(
        f"pasa_det::softmax_subsample has no kernel for {device.type} tensors here (the C++ "
        "kernel serves the CPU once built, the Triton one CUDA once triton is installed); "
        "PASA(impl='torch') runs anywhere"
    )


@torch.library.custom_op("pasa_det::softmax_subsample", mutates_args=())
def _forward(
    x: Tensor,
    logits: Tensor,
    kernel_size: int,
    stride: int,
    group: int,
    joint: bool,
    pad_mode: str,
    keep: bool,
) -> Tuple[Tensor, Tensor]:
    """(y, the filters if `keep` else an empty tensor); see `softmax_subsample`."""
    raise _no_kernel(x.device)


@torch.library.custom_op("pasa_det::softmax_subsample_backward", mutates_args=())
def _backward(
    grad_y: Tensor,
    x: Tensor,
    weights: Tensor,
    kernel_size: int,
    stride: int,
    group: int,
    joint: bool,
    pad_mode: str,
) -> Tuple[Tensor, Tensor]:
    """(grad_x, grad_logits), the softmax backward included."""
    raise _no_kernel(x.device)


def _filters_dtype(x: Tensor, logits: Tensor) -> torch.dtype:
    """The C++ kernel keeps the filters in the logits' dtype, the Triton one in float32."""
    return torch.float32 if x.device.type == "cuda" else logits.dtype


@_forward.register_fake
def _forward_fake(x, logits, kernel_size, stride, group, joint, pad_mode, keep):
    y = x.new_empty(x.shape[0], x.shape[1], logits.shape[2], logits.shape[3])
    shape = logits.shape if keep else (0,)
    return y, logits.new_empty(shape, dtype=_filters_dtype(x, logits))


@_backward.register_fake
def _backward_fake(grad_y, x, weights, kernel_size, stride, group, joint, pad_mode):
    return torch.empty_like(x, memory_format=torch.contiguous_format), torch.empty_like(
        weights, memory_format=torch.contiguous_format
    )


if _C is not None:

    @_forward.register_kernel("cpu")
    def _forward_cpu(x, logits, kernel_size, stride, group, joint, pad_mode, keep):
        mode = PAD_MODES.index(pad_mode)
        y, weights = _C.pasa_forward(x, logits, kernel_size, stride, group, joint, mode, keep)
        return y, weights if keep else x.new_empty(0)

    @_backward.register_kernel("cpu")
    def _backward_cpu(grad_y, x, weights, kernel_size, stride, group, joint, pad_mode):
        mode = PAD_MODES.index(pad_mode)
        grad_x, grad_logits = _C.pasa_backward(
            grad_y, x, weights, kernel_size, stride, group, joint, mode
        )
        return grad_x, grad_logits


if pasa_triton.triton_available():

    @_forward.register_kernel("cuda")
    def _forward_cuda(x, logits, kernel_size, stride, group, joint, pad_mode, keep):
        mode = PAD_MODES.index(pad_mode)
        y, weights = pasa_triton.pasa_forward(
            x, logits, kernel_size, stride, group, joint, mode, keep
        )
        return y, weights if keep else x.new_empty(0)

    @_backward.register_kernel("cuda")
    def _backward_cuda(grad_y, x, weights, kernel_size, stride, group, joint, pad_mode):
        mode = PAD_MODES.index(pad_mode)
        return pasa_triton.pasa_backward(
            grad_y, x, weights, kernel_size, stride, group, joint, mode
        )


def _setup_context(ctx, inputs, output):
    x, logits, kernel_size, stride, group, joint, pad_mode, _ = inputs
    ctx.save_for_backward(x, output[1])
    ctx.args = (kernel_size, stride, group, joint, pad_mode)
    ctx.logits_dtype = logits.dtype


def _gradients(ctx, grad_y, _grad_weights):
    x, weights = ctx.saved_tensors
    grad_x, grad_logits = _backward(grad_y, x, weights, *ctx.args)
    return grad_x, grad_logits.to(ctx.logits_dtype), None, None, None, None, None, None


_forward.register_autograd(_gradients, setup_context=_setup_context)


def softmax_subsample(x: Tensor, logits: Tensor, *filter_args) -> Tensor:
    """PASA's output from its filter logits, in one pass that reads the unpadded input
    through the padding's indices: softmax over all G*k*k logit channels (`joint`) or
    each group's k*k, then the weighted sum of each tap at the kept positions.

    Args: x (N, C, H, W); logits (N, G*k*k, ceil(H/s), ceil(W/s)), of x's dtype on the
    CPU; `filter_args` the operator's kernel_size, stride, group, joint and pad_mode
    (one of `PAD_MODES`, reflect only where every size exceeds k // 2). The filters are
    kept for backward only when a gradient will be asked for."""
    keep = torch.is_grad_enabled() and (x.requires_grad or logits.requires_grad)
    return _forward(x, logits, *filter_args, keep)[0]
