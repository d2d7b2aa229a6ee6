"""COCO instance segmentation data as a LazyConfig: detectron2's 1x augmentation, the
resumable training stream and checked test loader of `pasa_det.data.loaders`, and the
COCO evaluator that works where detectron2's C++ COCOeval is not built."""

from detectron2.config import LazyCall as L
from detectron2.data import DatasetMapper
from detectron2.data import transforms as T
from omegaconf import OmegaConf

from pasa_det.data.loaders import build_checked_test_loader, build_resumable_train_loader
from pasa_det.detectron2_versions import fast_cocoeval_available
from pasa_det.evaluation import CheckedCOCOEvaluator

dataloader = OmegaConf.create()
# One's own data, registered before the loaders are built: [[name, annotations.json, image
# folder]] and [[name, leftImg8bit/<split>, gtFine/<split>, "instance" | "semantic"]].
dataloader.register_coco = []
dataloader.register_cityscapes = []
dataloader.train = L(build_resumable_train_loader)(
    names=["coco_2017_train"],
    mapper=L(DatasetMapper)(
        is_train=True,
        augmentations=[
            L(T.ResizeShortestEdge)(
                short_edge_length=(640, 672, 704, 736, 768, 800),
                sample_style="choice",
                max_size=1333,
            ),
            L(T.RandomFlip)(horizontal=True),
        ],
        image_format="BGR",
        use_instance_mask=True,
    ),
    total_batch_size=16,
    num_workers=4,
    seed="${...train.seed}",
)
dataloader.test = L(build_checked_test_loader)(
    name="coco_2017_val",
    mapper=L(DatasetMapper)(
        is_train=False,
        augmentations=[L(T.ResizeShortestEdge)(short_edge_length=800, max_size=1333)],
        image_format="${...train.mapper.image_format}",
    ),
    num_workers=4,
)
# The model's class counts must match the datasets' (False: a different count on purpose).
dataloader.check_num_classes = True
# Shift consistency, evaluated beside `evaluator` when enabled: AP at these shifts (px of the
# original image, four directions) and agreement of instances scored >= score_thresh matched
# at mask IoU >= match_iou; for semantic segmentation, num_pairs crop pairs per image offset
# by up to max_shift px, drawn from seed. `protocols` chooses what is measured, as
# TEST.SHIFT_CONSISTENCY.PROTOCOLS does (docs/RESULTS.md).
dataloader.shift_consistency = dict(
    enabled=False,
    shifts=[1, 2, 5, 10, 20],
    score_thresh=0.5,
    match_iou=0.5,
    num_pairs=5,
    max_shift=32,
    seed=0,
    protocols=["grid", "crop_pairs"],
    subpixel_shifts=[0.25, 0.5, 0.75],
    adversarial_max_shift=2,
)
dataloader.evaluator = L(CheckedCOCOEvaluator)(
    dataset_name="${..test.name}", use_fast_impl=fast_cocoeval_available()
)
