"""detectron2's "new baselines" (Mask R-CNN R-50/R-101-FPN trained from scratch with
large-scale jitter, SyncBN and a 4conv1fc box head; box 44.6 / mask 40.3 AP for R-50 at
100 epochs in detectron2's MODEL_ZOO.md), with the backbone anti-aliased by `kind`."""

from detectron2.config import LazyCall as L
from detectron2.data import transforms as T
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import MultiStepParamScheduler

from .coco import dataloader
from .mask_rcnn_fpn import model
from .train import optimizer, train

# 100 epochs of COCO train2017 (118k images) at 64 images per iteration.
ITERATIONS_PER_100_EPOCHS = 184375
DROPS_PER_100_EPOCHS = (163889, 177546)
IMAGE_SIZE = 1024


def new_baseline(depth: int, epochs: int, kind: str):
    """(dataloader, lr_multiplier, model, optimizer, train) of the recipe for a ResNet of
    `depth` trained `epochs` (100, 200 or 400) epochs, anti-aliased by `kind`."""
    scale = epochs // 100
    train.init_checkpoint = ""
    train.amp.enabled = True
    train.ddp.fp16_compression = True
    train.max_iter = ITERATIONS_PER_100_EPOCHS * scale

    bottom_up = model.backbone.bottom_up
    bottom_up.freeze_at = 0
    bottom_up.stages.depth = depth
    bottom_up.antialias.kind = kind
    bottom_up.stem.norm = bottom_up.stages.norm = model.backbone.norm = "SyncBN"
    # Heads may see no box in a process, which torch's SyncBatchNorm cannot take.
    model.roi_heads.box_head.conv_norm = model.roi_heads.mask_head.conv_norm = "naiveSyncBN_N"
    model.proposal_generator.head.conv_dims = [-1, -1]  # two convolutions in the RPN head
    model.roi_heads.box_head.conv_dims = [256] * 4
    model.roi_heads.box_head.fc_dims = [1024]

    dataloader.train.mapper.augmentations = [
        L(T.ResizeScale)(
            min_scale=0.1, max_scale=2.0, target_height=IMAGE_SIZE, target_width=IMAGE_SIZE
        ),
        L(T.FixedSizeCrop)(crop_size=(IMAGE_SIZE, IMAGE_SIZE)),
        L(T.RandomFlip)(horizontal=True),
    ]
    dataloader.train.mapper.recompute_boxes = True  # the crop cuts boxes
    dataloader.train.total_batch_size = 64

    lr_multiplier = L(WarmupParamScheduler)(
        scheduler=L(MultiStepParamScheduler)(
            values=[1.0, 0.1, 0.01],
            milestones=[drop * scale for drop in DROPS_PER_100_EPOCHS],
            num_updates=train.max_iter,
        ),
        warmup_length=250 / train.max_iter,
        warmup_factor=0.001,
    )
    optimizer.lr = 0.1
    optimizer.weight_decay = 4e-5
    return dataloader, lr_multiplier, model, optimizer, train
