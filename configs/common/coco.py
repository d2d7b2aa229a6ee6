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
dataloader.evaluator = L(CheckedCOCOEvaluator)(
    dataset_name="${..test.name}", use_fast_impl=fast_cocoeval_available()
)
