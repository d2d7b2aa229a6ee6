"""The fixed binomial low-pass filter of Zhang (ICML 2019), the "LPF" baseline."""

import math

import torch
import torch.nn.functional as F
from torch import nn

from .padding import check_pad_mode, pad_same
from .pasa import check_kernel_and_stride


def binomial_kernel(kernel_size: int) -> torch.Tensor:
    """The normalised 2-D binomial filter: row k of Pascal's triangle, outer
    product with itself, divided by its sum (k=3: [1,2,1]x[1,2,1]/16)."""
    row = torch.tensor(
        [math.comb(kernel_size - 1, i) for i in range(kernel_size)], dtype=torch.float64
    )
    kernel = torch.outer(row, row)
    return (kernel / kernel.sum()).float()


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
