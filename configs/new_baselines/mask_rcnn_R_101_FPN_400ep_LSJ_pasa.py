"""detectron2's new-baseline Mask R-CNN R-101-FPN, 400 epochs of LSJ from scratch, with
PASA before each subsampling."""

from ..common.new_baseline import new_baseline

dataloader, lr_multiplier, model, optimizer, train = new_baseline(
    depth=101, epochs=400, kind="pasa"
)
