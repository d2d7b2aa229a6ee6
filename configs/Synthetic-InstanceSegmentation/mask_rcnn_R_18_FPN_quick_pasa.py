"""The quickstart as a LazyConfig: the PASA Mask R-CNN R-18-FPN of
mask_rcnn_R_18_FPN_quick_pasa.yaml, from scratch on the embedded synthetic set (160 px
images, light heads, 300 iterations of 8 images)."""

from detectron2.config import LazyCall as L
from detectron2.data import transforms as T
from detectron2.layers import ShapeSpec
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import MultiStepParamScheduler

from ..common.coco import dataloader
from ..common.mask_rcnn_fpn import model
from ..common.train import optimizer, train

_bottom_up = model.backbone.bottom_up
_bottom_up.stages.depth = 18
del _bottom_up.stages.stride_in_1x1  # basic blocks have no 1x1 convolution
_bottom_up.stem.norm = _bottom_up.stages.norm = "BN"
_bottom_up.freeze_at = 0
_bottom_up.antialias.kind = "pasa"
model.backbone.out_channels = 128
model.proposal_generator.head.in_channels = 128
model.proposal_generator.anchor_generator.sizes = [[16], [32], [64], [128], [256]]
model.proposal_generator.pre_nms_topk = (1000, 500)
model.proposal_generator.post_nms_topk = (256, 100)
model.proposal_generator.batch_size_per_image = 128
model.roi_heads.num_classes = 3
model.roi_heads.batch_size_per_image = 64
model.roi_heads.box_head.input_shape = ShapeSpec(channels=128, height=7, width=7)
model.roi_heads.box_head.fc_dims = [256, 256]
model.roi_heads.box_predictor.input_shape = ShapeSpec(channels=256)
model.roi_heads.mask_head.input_shape = ShapeSpec(channels=128, height=14, width=14)
model.roi_heads.mask_head.conv_dims = [128] * 3  # two convolutions, then the upsampling
model.pixel_std = [1.0, 1.0, 1.0]  # as the YAML (detectron2's yacs default)

dataloader.train.names = ["synthetic_instances_train"]
dataloader.train.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=(160,), sample_style="choice", max_size=160),
    L(T.RandomFlip)(horizontal=True),
]
dataloader.train.mapper.instance_mask_format = "bitmask"
dataloader.train.total_batch_size = 8
dataloader.train.num_workers = 1
dataloader.test.name = "synthetic_instances_val"
dataloader.test.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=160, max_size=160)
]
dataloader.test.num_workers = 1

train.max_iter = 300
train.checkpointer.period = 100
train.eval_period = 0  # at the end only
train.device = "cpu"
train.seed = 0
train.output_dir = "output/quickstart_lazy"
lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(MultiStepParamScheduler)(
        values=[1.0, 0.1], milestones=[240], num_updates="${train.max_iter}"
    ),
    warmup_length=50 / 300,
    warmup_factor=0.001,
)
