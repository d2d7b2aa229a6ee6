"""Test helpers around the published PASA formulation (its one copy lives in
`pasa_det.layers.reference`, which the benchmarks time too)."""

import torch
from torch import nn

from pasa_det.layers.reference import published_pasa

__all__ = ["published_pasa", "PublishedPASA", "randomize_norms_"]


class PublishedPASA(nn.Module):
    """The authors' module layout: children `conv` (no bias) and `bn`."""

    def __init__(self, channels, kernel_size=3, stride=2, group=8):
        super().__init__()
        self.kernel_size, self.stride, self.group = kernel_size, stride, group
        self.conv = nn.Conv2d(channels, group * kernel_size**2, kernel_size, bias=False)
        self.bn = nn.BatchNorm2d(group * kernel_size**2)

    def forward(self, x):
        return published_pasa(
            x, self.conv.weight, self.bn, self.kernel_size, self.stride, self.group
        )


def randomize_norms_(module: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm random affine parameters and running statistics."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in module.modules():
            if isinstance(bn, nn.BatchNorm2d):
                shape = bn.running_mean.shape
                bn.weight.copy_(torch.rand(shape, generator=gen) + 0.5)
                bn.bias.copy_(torch.randn(shape, generator=gen) * 0.1)
                bn.running_mean.copy_(torch.randn(shape, generator=gen) * 0.1)
                bn.running_var.copy_(torch.rand(shape, generator=gen) + 0.5)
    return module
