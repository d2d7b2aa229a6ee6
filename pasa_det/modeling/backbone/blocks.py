"""Anti-aliased versions of detectron2's strided stems and blocks.

Each class adopts the convolutions of the detectron2 module it replaces, so
every parameter keeps its name and its weights, moves their stride into an
extra child `aa` (and `shortcut_aa`), and rewrites only `forward`.
"""

import torch
import torch.nn.functional as F
from detectron2.layers import CNNBlockBase
from detectron2.modeling.backbone.resnet import BasicBlock, BasicStem, BottleneckBlock
from detectron2.projects.deeplab.resnet import DeepLabStem
from torch import nn

from pasa_det.layers.capture import capturing


def dense_max_pool(x: torch.Tensor) -> torch.Tensor:
    """2x2 max-pool at stride 1, which precedes the stem's stride-2 filter.

    An odd size gets one -inf row/column at its end, so the filter then yields
    ceil(H/2) like detectron2's 3x3 stride-2 pool; even sizes are untouched. A captured
    graph always pads (by 0 where even): its sizes may be symbolic, and a branch on
    their parity would fix it at capture time or, for a data-dependent size, fail.
    """
    h, w = x.shape[-2:]
    if capturing() or h % 2 or w % 2:
        x = F.pad(x, (0, w % 2, 0, h % 2), value=float("-inf"))
    return F.max_pool2d(x, kernel_size=2, stride=1)


def _unstride(*convs: nn.Conv2d) -> None:
    for conv in convs:
        if conv is not None:
            conv.stride = (1, 1)


class AntiAliasedBasicStem(BasicStem):
    """conv 7x7/2 -> ReLU -> max-pool 2x2/1 -> filter/2 (replaces max-pool 3x3/2)."""

    def __init__(self, stem: BasicStem, aa: nn.Module):
        CNNBlockBase.__init__(self, stem.in_channels, stem.out_channels, stem.stride)
        self.conv1 = stem.conv1
        self.aa = aa

    def forward(self, x):
        return self.aa(dense_max_pool(F.relu_(self.conv1(x))))


class AntiAliasedDeepLabStem(DeepLabStem):
    """DeepLab's three-conv stem with its max-pool replaced as in the basic stem."""

    def __init__(self, stem: DeepLabStem, aa: nn.Module):
        CNNBlockBase.__init__(self, stem.in_channels, stem.out_channels, stem.stride)
        self.conv1, self.conv2, self.conv3 = stem.conv1, stem.conv2, stem.conv3
        self.aa = aa

    def forward(self, x):
        for conv in (self.conv1, self.conv2, self.conv3):
            x = F.relu_(conv(x))
        return self.aa(dense_max_pool(x))


class _AntiAliasedShortcutMixin:
    def _adopt_shortcut(self, block: CNNBlockBase, shortcut_aa):
        self.shortcut = block.shortcut
        self.shortcut_aa = shortcut_aa
        if shortcut_aa is not None:
            _unstride(self.shortcut)

    def _shortcut(self, x):
        if self.shortcut is None:
            return x
        if self.shortcut_aa is not None:
            x = self.shortcut_aa(x)
        return self.shortcut(x)


class AntiAliasedBottleneckBlock(_AntiAliasedShortcutMixin, BottleneckBlock):
    """conv1 1x1 -> conv2 3x3 (both stride 1) -> filter/2 -> conv3 1x1;
    shortcut: filter/2 -> 1x1 conv (or detectron2's strided 1x1 when
    `shortcut_aa` is None)."""

    def __init__(self, block: BottleneckBlock, aa: nn.Module, shortcut_aa: nn.Module = None):
        CNNBlockBase.__init__(self, block.in_channels, block.out_channels, block.stride)
        self._adopt_shortcut(block, shortcut_aa)
        self.conv1, self.conv2, self.conv3 = block.conv1, block.conv2, block.conv3
        _unstride(self.conv1, self.conv2)
        self.aa = aa

    def forward(self, x):
        out = F.relu_(self.conv1(x))
        out = F.relu_(self.conv2(out))
        out = self.conv3(self.aa(out))
        out += self._shortcut(x)
        return F.relu_(out)


class AntiAliasedBasicBlock(_AntiAliasedShortcutMixin, BasicBlock):
    """conv1 3x3 stride 1 -> filter/2 -> conv2 3x3; shortcut as the bottleneck's."""

    def __init__(self, block: BasicBlock, aa: nn.Module, shortcut_aa: nn.Module = None):
        CNNBlockBase.__init__(self, block.in_channels, block.out_channels, block.stride)
        self._adopt_shortcut(block, shortcut_aa)
        self.conv1, self.conv2 = block.conv1, block.conv2
        _unstride(self.conv1)
        self.aa = aa

    def forward(self, x):
        out = self.aa(F.relu_(self.conv1(x)))
        out = self.conv2(out)
        out += self._shortcut(x)
        return F.relu_(out)


class AntiAliasedLastLevel(nn.Module):
    """FPN's extra P6 level from P5 by a stride-2 filter instead of 1x1 max-pool."""

    def __init__(self, aa: nn.Module, in_feature: str = "p5"):
        super().__init__()
        self.num_levels = 1
        self.in_feature = in_feature
        self.aa = aa

    def forward(self, x):
        return [self.aa(x)]
