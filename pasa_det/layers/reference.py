"""References for testing and timing `PASA`, never for use in a model.

`published_pasa`, the published formulation (Zou et al.'s code): filter logits and
weighted sums at full resolution through `unfold`, subsampled afterwards. It is the
ground truth `PASA` is tested against and the baseline the benchmarks time; it holds
k*k*C*H*W floats at once.

`autograd_pasa`, a `PASA` module's own computation with every gradient left to
autograd: the reference the hand-written backwards (the torch path's and the fused
kernels') are tested against.
"""

import torch.nn.functional as F

from .padding import pad_same
from .pasa import weighted_subsample


def published_pasa(
    x, conv_weight, norm, kernel_size, stride, group, softmax="joint", pad_mode="reflect"
):
    n, c, h, w = x.shape
    k = kernel_size
    x_padded = pad_same(x, k // 2, pad_mode)
    logits = norm(F.conv2d(x_padded, conv_weight))  # (n, G*k*k, h, w)
    if softmax == "joint":
        weights = logits.softmax(dim=1).reshape(n, group, k * k, h, w)
    else:
        weights = logits.reshape(n, group, k * k, h, w).softmax(dim=2)
    patches = F.unfold(x_padded, k).reshape(n, group, c // group, k * k, h, w)
    out = (patches * weights.unsqueeze(2)).sum(dim=3).reshape(n, c, h, w)
    return out[:, :, ::stride, ::stride]


def autograd_pasa(module, x):
    """`module(x)` for a `PASA` module, through its filters and `weighted_subsample`
    differentiated by autograd."""
    k = module.kernel_size
    x_padded = pad_same(x, k // 2, module.pad_mode)
    return weighted_subsample(x_padded, module.filter_weights(x), k, module.stride)
