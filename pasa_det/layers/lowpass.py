"""The fixed binomial low-pass filter of Zhang (ICML 2019), the "LPF" baseline."""

import torch
import torch.nn.functional as F
from torch import nn

from .binomial import binomial_kernel
from .padding import check_pad_mode, pad_same
from .pasa import check_kernel_and_stride


class LowPassFilter(nn.Module):
    """Depthwise binomial blur followed by subsampling.

    The filter is a non-persistent buffer: it is fixed, so it never appears in
    checkpoints and an LPF model has the same state_dict keys as the plain one.
    """

    def __init__(
        self, channels: int, kernel_size: int = 3, stride: int = 2, pad_mode: str = "reflect"
    ):
        super().__init__()
        check_kernel_and_stride(kernel_size, stride)
        self.channels = channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.pad_mode = check_pad_mode(pad_mode)
        kernel = binomial_kernel(kernel_size).expand(channels, 1, kernel_size, kernel_size)
        self.register_buffer("kernel", kernel.contiguous(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = pad_same(x, self.kernel_size // 2, self.pad_mode)
        return F.conv2d(x, self.kernel.to(x.dtype), stride=self.stride, groups=self.channels)

    def extra_repr(self) -> str:
        return f"{self.channels}, kernel_size={self.kernel_size}, stride={self.stride}, pad_mode={self.pad_mode!r}"
