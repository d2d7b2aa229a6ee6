"""detectron2's new-baseline Mask R-CNN R-50-FPN, 400 epochs of LSJ from scratch, with
a fixed binomial low-pass filter before each subsampling."""

from ..common.new_baseline import new_baseline

dataloader, lr_multiplier, model, optimizer, train = new_baseline(depth=50, epochs=400, kind="lpf")
