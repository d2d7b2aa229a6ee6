"""detectron2's new-baseline Mask R-CNN R-101-FPN, 200 epochs of LSJ from scratch, with
detectron2's own ResNet (the control)."""

from ..common.new_baseline import new_baseline

dataloader, lr_multiplier, model, optimizer, train = new_baseline(
    depth=101, epochs=200, kind="none"
)
