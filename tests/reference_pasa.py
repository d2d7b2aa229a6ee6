"""The published PASA formulation, written from design §2 for the tests: filter
logits and weighted sums at full resolution (unfold), subsampled afterwards."""
import torch
import torch.nn.functional as F
from torch import nn


def published_pasa(x, conv_weight, norm, kernel_size, stride, group, softmax="joint", pad_mode="reflect"):
    n, c, h, w = x.shape
    k, p = kernel_size, kernel_size // 2
    if pad_mode == "reflect" and min(h, w) <= p:
        pad_mode = "replicate"
    x_padded = F.pad(x, (p, p, p, p), mode=pad_mode) if pad_mode != "zeros" else F.pad(x, (p,) * 4)
    logits = norm(F.conv2d(x_padded, conv_weight))  # (n, G*k*k, h, w)
    if softmax == "joint":
        weights = logits.softmax(dim=1).reshape(n, group, k * k, h, w)
    else:
        weights = logits.reshape(n, group, k * k, h, w).softmax(dim=2)
    patches = F.unfold(x_padded, k).reshape(n, group, c // group, k * k, h, w)
    out = (patches * weights.unsqueeze(2)).sum(dim=3).reshape(n, c, h, w)
    return out[:, :, ::stride, ::stride]


class PublishedPASA(nn.Module):
    """The authors' module layout: children `conv` (no bias) and `bn`."""

    def __init__(self, channels, kernel_size=3, stride=2, group=8):
        super().__init__()
        self.kernel_size, self.stride, self.group = kernel_size, stride, group
        self.conv = nn.Conv2d(channels, group * kernel_size**2, kernel_size, bias=False)
        self.bn = nn.BatchNorm2d(group * kernel_size**2)

    def forward(self, x):
        return published_pasa(x, self.conv.weight, self.bn, self.kernel_size, self.stride, self.group)


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
