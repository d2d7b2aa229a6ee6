"""Pixel-adaptive, channel-grouped low-pass filtering (PASA, Zou et al., BMVC 2020)."""

from typing import Callable, Union

import torch
from torch import nn

from .binomial import binomial_kernel
from .capture import capturing, portable_trace
from .kernels import native_available, softmax_subsample, triton_available
from .padding import check_pad_mode, conv2d_same, effective_pad_mode, pad_same

SOFTMAX_MODES = ("joint", "group")
INITS = ("lpf", "random")
NormSpec = Union[str, Callable[[int], nn.Module]]


def check_kernel_and_stride(kernel_size: int, stride: int) -> None:
    if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be an odd integer >= 1, got {kernel_size!r}")
    if not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride must be an integer >= 1, got {stride!r}")


def make_norm(norm: NormSpec, channels: int) -> nn.Module:
    """`""` -> no norm, `"BN"` -> BatchNorm2d, a callable -> `norm(channels)`."""
    if callable(norm):
        return norm(channels)
    if norm == "":
        return nn.Identity()
    if norm == "BN":
        return nn.BatchNorm2d(channels)
    raise ValueError(f"norm must be '', 'BN' or a callable(channels) -> nn.Module, got {norm!r}")


IMPLS = ("auto", "native", "triton", "torch")
NATIVE_DTYPES = (torch.float32, torch.float64)
TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def tap_views(x_padded: torch.Tensor, kernel_size: int, stride: int, out_hw):
    """Yield, for every tap (i, j) in row-major order, the strided view of the
    padded input that the tap multiplies at each kept output position, out_hw
    of them."""
    if not torch.jit.is_tracing():
        # Windows by `unfold` are the outputs' size by construction: nothing for
        # export to prove about the floor division in out_hw with symbolic sizes.
        windows = x_padded.unfold(-2, kernel_size, stride).unfold(-2, kernel_size, stride)
        for i in range(kernel_size):
            for j in range(kernel_size):
                yield windows[..., i, j]
        return
    # The jit tracer (TorchScript, the legacy ONNX exporter) records sizes as tensors
    # and slices with them, where its `unfold` would keep the traced size. No
    # arithmetic on them either: that would be traced too (and counted by fvcore).
    out_h, out_w = out_hw
    for i in range(kernel_size):
        for j in range(kernel_size):
            yield x_padded[..., i::stride, j::stride][..., :out_h, :out_w]


def _grouped(t: torch.Tensor, group: int) -> torch.Tensor:
    return t.unflatten(1, (group, t.shape[1] // group))


def weighted_subsample(x_padded, weights, kernel_size: int, stride: int) -> torch.Tensor:
    """`y[n, c] = sum_t weights[n, g(c), t] * tap_view_t(x_padded)[n, c]` in plain
    tensor ops: what traced, compiled and exported graphs hold (their compilers
    fuse it and derive its backward), and the forward of `WeightedSubsample`.

    Args: x_padded (N, C, Hp, Wp); weights (N, G, k*k, H_out, W_out), same dtype.
    """
    grouped = _grouped(x_padded, weights.shape[1])
    views = tap_views(grouped, kernel_size, stride, weights.shape[-2:])
    out = next(views) * weights[:, :, 0].unsqueeze(2)
    for tap, view in enumerate(views, start=1):
        out = torch.addcmul(out, view, weights[:, :, tap].unsqueeze(2))
    return out.flatten(1, 2)


class WeightedSubsample(torch.autograd.Function):
    """`weighted_subsample` with a hand-written backward, for eager training: it
    saves only its two inputs (views, no copies), where autograd on the tap
    loop keeps a product per tap and, in backward, builds a zero tensor the
    size of `x_padded` per tap."""

    @staticmethod
    def forward(ctx, x_padded, weights, kernel_size: int, stride: int):
        ctx.save_for_backward(x_padded, weights)
        ctx.kernel_size, ctx.stride = kernel_size, stride
        return weighted_subsample(x_padded, weights, kernel_size, stride)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        x_padded, weights = ctx.saved_tensors
        group, out_hw = weights.shape[1], weights.shape[-2:]
        grad_out = _grouped(grad_out, group)
        need_x, need_w = ctx.needs_input_grad[:2]
        grad_x = (
            torch.zeros_like(x_padded, memory_format=torch.contiguous_format) if need_x else None
        )
        grad_w = torch.empty_like(weights) if need_w else None
        product = torch.empty_like(grad_out) if need_w else None
        taps = ctx.kernel_size**2
        x_views = tap_views(_grouped(x_padded, group), ctx.kernel_size, ctx.stride, out_hw)
        if need_x:
            grad_x_views = tap_views(_grouped(grad_x, group), ctx.kernel_size, ctx.stride, out_hw)
        else:
            grad_x_views = [None] * taps
        for tap, (view, grad_view) in enumerate(zip(x_views, grad_x_views)):
            if need_x:
                grad_view.addcmul_(grad_out, weights[:, :, tap].unsqueeze(2))
            if need_w:
                torch.mul(grad_out, view, out=product)
                grad_w[:, :, tap] = product.sum(dim=2)
        return grad_x, grad_w, None, None


class PASA(nn.Module):
    """Predicts a k x k low-pass filter per position and channel group, then
    downsamples with it.

    Only the kept output positions are computed: the filter logits come from a
    strided convolution and the weighted sum reads strided views of the padded
    input. In eval mode this equals the published full-resolution formulation
    (unfold everywhere, then subsample). In training mode the norm's batch
    statistics are taken over the kept positions only.

    Args:
        in_channels: C; `group` must divide it.
        kernel_size: odd filter size k (3 or 5 in the paper).
        stride: subsampling factor s.
        group: G, the number of channel groups sharing one predicted filter.
        pad_mode: "reflect" (falls back to "replicate" on maps too small to
            reflect), "replicate" or "zeros".
        norm: norm over the G*k*k logits: "BN", "" (none) or a callable.
        softmax: "joint" normalises all G*k*k logits at a position together,
            as the published code and weights do; "group" normalises each
            group's k*k taps, so every filter sums to one.
        init: how a fresh PASA filters before training. "lpf": the binomial filter
            of size k at every position ("joint": each group's filter is the binomial
            divided by G), learning to adapt from there; "random": the published start,
            near-random filters from the Kaiming-initialised logit convolution.
        impl: "native" (the operator `pasa_det::softmax_subsample` with the C++
            kernel: CPU, float32/64), "triton" (the same operator with the Triton
            kernel: CUDA, float32/16, bfloat16), "torch" (`weighted_subsample`:
            torch ops, with a hand-written backward in eager training; any device
            and dtype), or "auto": native on the CPU, triton on CUDA for k=3, where
            each applies and is installed, else torch. All agree to rounding.
            Under torch.jit.trace and ONNX export, "auto" takes the torch path,
            so the graph holds standard ops only.
    """

    def __init__(
        self,
        in_channels: int,
        kernel_size: int = 3,
        stride: int = 2,
        group: int = 8,
        pad_mode: str = "reflect",
        norm: NormSpec = "BN",
        softmax: str = "joint",
        init: str = "lpf",
        impl: str = "auto",
    ):
        super().__init__()
        check_kernel_and_stride(kernel_size, stride)
        if not isinstance(group, int) or group < 1 or in_channels % group != 0:
            raise ValueError(
                f"group must be a positive divisor of in_channels={in_channels}, got {group!r}"
            )
        if softmax not in SOFTMAX_MODES:
            raise ValueError(f"softmax must be one of {SOFTMAX_MODES}, got {softmax!r}")
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
        if impl == "native" and not native_available():
            raise ValueError(
                "impl='native' needs the C++ kernel pasa_det._C: build it with `make setup`"
            )
        if impl == "triton" and not triton_available():
            raise ValueError("impl='triton' needs the triton package (pip install triton)")
        self.in_channels = in_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.group = group
        self.pad_mode = check_pad_mode(pad_mode)
        self.softmax = softmax
        self.impl = impl
        taps = kernel_size * kernel_size
        self.conv = nn.Conv2d(in_channels, group * taps, kernel_size, stride=stride, bias=False)
        self.norm = make_norm(norm, group * taps)
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")
        self.reset_filters(init)

    def reset_filters(self, init: str = "lpf") -> None:
        """Restart the norm after the logit convolution as `init` says. "lpf" zeroes its
        scale and sets its shift to the log of the binomial taps, so the logits are those
        taps whatever the input (in train and eval mode) until training moves the scale;
        "random" sets scale 1, shift 0."""
        weight, bias = getattr(self.norm, "weight", None), getattr(self.norm, "bias", None)
        if weight is None or bias is None:
            if init == "lpf":
                raise ValueError(
                    "init='lpf' sets the logit norm's shift, so it needs a norm with a weight "
                    "and a bias (e.g. 'BN'); with norm='' use init='random'"
                )
            return
        with torch.no_grad():
            if init == "random":
                weight.fill_(1.0)
                bias.zero_()
            else:
                weight.zero_()
                log_taps = binomial_kernel(self.kernel_size).flatten().log()
                bias.copy_(log_taps.repeat(self.group).to(bias))

    def filter_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The normalised filter logits at the kept positions, (N, G*k*k, H_out, W_out).

        The norm is not folded into the convolution in eval: a new weight tensor
        per call costs oneDNN a weight reorder that takes longer than the norm."""
        return self.norm(conv2d_same(x, self.conv.weight, None, self.stride, self.pad_mode))

    def filter_weights(self, x: torch.Tensor) -> torch.Tensor:
        """The predicted filters at the kept positions, (N, G, k*k, H_out, W_out),
        normalised in at least float32 and returned in the input's dtype."""
        logits = self.filter_logits(x)
        if logits.dtype in (torch.float16, torch.bfloat16):
            logits = logits.float()
        shape = (logits.shape[0], self.group, self.kernel_size**2, *logits.shape[-2:])
        if self.softmax == "joint":
            weights = logits.softmax(dim=1).view(shape)
        else:
            weights = logits.view(shape).softmax(dim=2)
        return weights.to(x.dtype)

    def resolved_impl(self, x: torch.Tensor) -> str:
        """The implementation that runs on `x`."""
        native_fits = x.device.type == "cpu" and x.dtype in NATIVE_DTYPES
        triton_fits = x.is_cuda and x.dtype in TRITON_DTYPES
        if self.impl == "native" and not native_fits:
            raise ValueError(
                f"impl='native' runs on float32/float64 CPU tensors, got {x.dtype} on {x.device}"
            )
        if self.impl == "triton" and not triton_fits:
            raise ValueError(
                f"impl='triton' runs on float32/16 and bfloat16 CUDA tensors, got {x.dtype} on {x.device}"
            )
        if self.impl != "auto":
            return self.impl
        if portable_trace():  # TorchScript, ONNX, fvcore's FLOP count: standard ops
            return "torch"
        if native_fits and native_available():
            return "native"
        # On an H200 the Triton kernel beat the torch path at k=3 but not at k=5, where
        # the joint softmax's block of G*25 logit rows outgrows the registers.
        if triton_fits and triton_available() and self.kernel_size == 3:
            return "triton"
        return "torch"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        impl = self.resolved_impl(x)
        k, s = self.kernel_size, self.stride
        if impl == "torch":
            weights = self.filter_weights(x)
            x_padded = pad_same(x, k // 2, self.pad_mode)
            needs_grad = torch.is_grad_enabled() and (
                x_padded.requires_grad or weights.requires_grad
            )
            if needs_grad and not capturing():
                return WeightedSubsample.apply(x_padded, weights, k, s)
            return weighted_subsample(x_padded, weights, k, s)
        logits = self.filter_logits(x)
        if impl == "native":  # the C++ kernel takes logits of x's dtype; Triton's converts
            logits = logits.to(x.dtype)
        pad_mode = effective_pad_mode(x, k // 2, self.pad_mode)
        return softmax_subsample(x, logits, k, s, self.group, self.softmax == "joint", pad_mode)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"group={self.group}, pad_mode={self.pad_mode!r}, softmax={self.softmax!r}, impl={self.impl!r}"
        )
