"""Shift consistency: how much a model's predictions change when its input moves by
a few pixels, the property anti-aliasing is meant to improve.

Both evaluators are detectron2 `DatasetEvaluator`s that hold the model and run it
again on shifted versions of each input, so they slot into `inference_on_dataset`
beside the usual evaluators and work in multi-process evaluation (statistics are
gathered on the main process; every draw is seeded by the image, not the process).
"""

import itertools
import json
import logging
import os
import re
import zlib
from collections import OrderedDict
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np
import torch
from detectron2.data import MetadataCatalog, detection_utils
from detectron2.data import transforms as T
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

from pasa_det.config import ConfigError
from pasa_det.data.resumable import derive_seed
from pasa_det.detectron2_versions import coco_ground_truth

from .coco import CheckedCOCOEvaluator
from .export import json_ready

# The four directions of the authors' protocol, as unit (dx, dy): right, left, down, up.
DIRECTIONS = {"right": (1, 0), "left": (-1, 0), "down": (0, 1), "up": (0, -1)}

Model = Callable[[List[Dict]], List[Dict]]
logger = logging.getLogger(__name__)
RESULT_FILE = "shift_consistency.json"
# The config group of the settings, named in errors: the yacs one, or the LazyConfig's.
YACS_KEY = "TEST.SHIFT_CONSISTENCY"
LAZY_KEY = "dataloader.shift_consistency"


def _field(name: str, key: str) -> str:
    """A setting's name in the group `key`: upper case in yacs, lower in a LazyConfig."""
    return name if key == YACS_KEY else name.lower()


def shift_consistency_table(res: Dict) -> str:
    """The results as a reader wants them: AP per shift distance and direction (mask AP,
    then box AP), then the summary and agreement figures."""
    lines = []
    for task, label in (("segm", "mask AP"), ("bbox", "box AP")):
        if f"{task}_AP_0" not in res:
            continue
        shift_key = re.compile(rf"{task}_AP_({'|'.join(DIRECTIONS)})(\d+)")
        distances = sorted({int(m[2]) for m in map(shift_key.fullmatch, res) if m})
        lines.append(f"{label}: unshifted {res[f'{task}_AP_0']:.2f}")
        lines.append(f"  {'shift px':>8} " + "".join(f"{d:>8}" for d in DIRECTIONS))
        for d in distances:
            cells = "".join(f"{res[f'{task}_AP_{name}{d}']:8.2f}" for name in DIRECTIONS)
            lines.append(f"  {d:>8} {cells}")
        lines.append(
            f"  mean {res[f'{task}_AP_mean']:.2f}, spread (max - min) "
            f"{res[f'{task}_AP_spread']:.2f}, std {res[f'{task}_AP_std']:.2f}"
        )
    named = [
        ("consistency", "labels agreeing between shifted crops, %"),
        ("mask_iou", "mask IoU of matched instances, %"),
        ("class_agreement", "matched instances with the same class, %"),
        ("unmatched", "instances without a partner, %"),
    ]
    lines += [f"{text}: {res[key]:.2f}" for key, text in named if key in res]
    return "\n".join(lines)


def report(res: Dict, output_dir, dataset_name: str) -> None:
    """Log the results as a table and write them to `output_dir/shift_consistency.json`."""
    logger.info(f"Shift consistency on {dataset_name}:\n{shift_consistency_table(res)}")
    if output_dir:
        os.makedirs(output_dir, exist_ok=True)
        with open(os.path.join(output_dir, RESULT_FILE), "w") as f:
            json.dump(json_ready(res), f, indent=2)


def image_seed(seed: int, file_name: str) -> int:
    """A seed for one image's random draws, equal in every process that sees it."""
    return derive_seed(seed, zlib.crc32(file_name.encode()))


def translate(array: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """Move the content of an (H, W, ...) array by dx columns and dy rows, filling
    what is uncovered with zeros and dropping what leaves the frame."""
    out = np.zeros_like(array)
    h, w = array.shape[:2]
    if abs(dx) >= w or abs(dy) >= h:
        return out
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = array[
        max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def shared_view(h: int, w: int, dx: int, dy: int) -> Tuple[slice, slice]:
    """The rows and columns of an (h, w) image that stay in frame when it moves by (dx, dy)."""
    return slice(max(-dy, 0), h + min(-dy, 0)), slice(max(-dx, 0), w + min(-dx, 0))


def check_shifts_fit(
    shifts: Sequence[int], images: Sequence[Dict], dataset_name: str, key: str = YACS_KEY
) -> None:
    """Every shift (px of the original image) leaves part of every image in frame, as
    `translate` needs: a shift by an image's width or height zero-fills all of it, and the AP
    at that shift measures nothing. `images`: COCO image entries (file_name, width, height);
    `key`: the config group that set the shifts, for the error."""
    sized = [image for image in images if "width" in image and "height" in image]
    if not sized:
        return
    smallest = min(sized, key=lambda image: min(image["width"], image["height"]))
    side = min(smallest["width"], smallest["height"])
    if max(shifts) >= side:
        raise ConfigError(
            f"{key}.{_field('SHIFTS', key)}={list(shifts)}: a shift of {max(shifts)} px moves "
            f"image {smallest['file_name']} of {dataset_name!r} ({smallest['width']}x"
            f"{smallest['height']} px) wholly out of frame. Shifts are px of the original image "
            f"and must stay below every image's width and height: use shifts up to {side - 1} "
            "(the default is [1, 2, 5, 10, 20])"
        )


def label_agreement(labels_a: torch.Tensor, offset_a, labels_b: torch.Tensor, offset_b) -> float:
    """Fraction of pixels where two label maps agree in their overlap; `offset_*` is
    the (row, column) of each map's top-left corner in a common frame."""
    (ya, xa), (yb, xb) = offset_a, offset_b
    top, left = max(ya, yb), max(xa, xb)
    bottom = min(ya + labels_a.shape[0], yb + labels_b.shape[0])
    right = min(xa + labels_a.shape[1], xb + labels_b.shape[1])
    if bottom <= top or right <= left:
        raise ValueError("the two maps do not overlap")
    a = labels_a[top - ya : bottom - ya, left - xa : right - xa]
    b = labels_b[top - yb : bottom - yb, left - xb : right - xb]
    return (a == b).double().mean().item()


def match_instances(masks_a: torch.Tensor, masks_b: torch.Tensor, min_iou: float):
    """Greedy one-to-one matching of two sets of boolean masks (N, H, W) by mask IoU,
    best pairs first; returns [(index in a, index in b, IoU)] with IoU >= min_iou."""
    if len(masks_a) == 0 or len(masks_b) == 0:
        return []
    a = masks_a.flatten(1).double()
    b = masks_b.flatten(1).double()
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    iou = torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(inter))
    pairs, used_a, used_b = [], set(), set()
    for flat in torch.argsort(iou.flatten(), descending=True).tolist():
        i, j = divmod(flat, iou.shape[1])
        if iou[i, j] < min_iou:
            break
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            pairs.append((i, j, iou[i, j].item()))
    return pairs


def _chunks(items: Sequence, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


class _Counts:
    """Sums that can be gathered across processes and added."""

    def __init__(self, **values):
        self.values = dict(values)

    def add(self, **values):
        for k, v in values.items():
            self.values[k] = self.values.get(k, 0) + v

    def gathered(self) -> Dict[str, float]:
        total: Dict[str, float] = {}
        for part in comm.all_gather(self.values):
            for k, v in part.items():
                total[k] = total.get(k, 0) + v
        return total


class SemSegShiftConsistency(DatasetEvaluator):
    """Mean agreement of predicted labels between random pairs of crops of each image,
    offset from each other by up to `max_shift` pixels (in the network's input).

    Each pair is two crops of size (H - max_shift, W - max_shift) of the test-time input
    at independent random offsets; agreement is measured on their overlap.
    """

    def __init__(
        self,
        model: Model,
        num_pairs: int = 5,
        max_shift: int = 32,
        seed: int = 0,
        dataset_name: str = "",
        output_dir=None,
        key: str = YACS_KEY,
    ):
        if num_pairs < 1 or max_shift < 1:
            raise ValueError(
                f"need num_pairs >= 1 and max_shift >= 1, got {num_pairs}, {max_shift}"
            )
        self.model, self.num_pairs, self.max_shift, self.seed = model, num_pairs, max_shift, seed
        self.dataset_name, self.output_dir, self.key = dataset_name, output_dir, key

    def reset(self):
        self._counts = _Counts(agreement=0.0, pairs=0)

    def process(self, inputs, outputs):
        for inp in inputs:
            image = inp["image"]
            h, w = image.shape[-2] - self.max_shift, image.shape[-1] - self.max_shift
            if h < 1 or w < 1:
                raise ConfigError(
                    f"{self.key}.{_field('MAX_SHIFT', self.key)}={self.max_shift} leaves no crop "
                    f"of the {tuple(image.shape[-2:])} test input of {inp['file_name']}: set it "
                    f"below {min(image.shape[-2:])}, or make the test inputs larger ("
                    f"{'INPUT.MIN_SIZE_TEST' if self.key == YACS_KEY else 'the test resize'})"
                )
            rng = np.random.default_rng(image_seed(self.seed, inp["file_name"]))
            for _ in range(self.num_pairs):
                offsets = [
                    tuple(int(v) for v in rng.integers(0, self.max_shift + 1, size=2))
                    for _ in range(2)
                ]
                crops = [
                    {
                        "image": image[:, y : y + h, x : x + w],
                        "height": h,
                        "width": w,
                        "file_name": inp["file_name"],
                    }
                    for y, x in offsets
                ]
                labels = [out["sem_seg"].argmax(dim=0).cpu() for out in self.model(crops)]
                self._counts.add(
                    agreement=label_agreement(labels[0], offsets[0], labels[1], offsets[1]), pairs=1
                )

    def evaluate(self):
        counts = self._counts.gathered()
        if not comm.is_main_process():
            return None
        res = {
            "consistency": 100 * counts["agreement"] / max(counts["pairs"], 1),
            "pairs": counts["pairs"],
        }
        report(res, self.output_dir, self.dataset_name)
        return OrderedDict(shift_consistency=res)


class InstanceShiftConsistency(DatasetEvaluator):
    """COCO AP at every shift of the authors' protocol and agreement of instances
    between the original and each shifted input.

    A shift moves the original image's content by d pixels in one of four directions
    (uncovered border zero-filled) before the test-time resize; the predictions are
    moved back by d and scored against the original annotations. Instance agreement
    compares, inside the part of the image that stays in frame, the original
    predictions with the moved-back shifted ones (score >= `score_thresh`): mask IoU
    and class agreement of matched pairs (greedy by IoU >= `match_iou`), and the
    percentage of instances without a partner.
    """

    def __init__(
        self,
        model: Model,
        dataset_name: str,
        augmentations: Sequence[T.Augmentation] = (),
        image_format: str = "BGR",
        with_masks: bool = True,
        shifts: Sequence[int] = (1, 2, 5, 10, 20),
        score_thresh: float = 0.5,
        match_iou: float = 0.5,
        output_dir=None,
        key: str = YACS_KEY,
    ):
        """`augmentations` and `image_format`: the test loader's (the shifted images are
        read and resized as it reads the original); `with_masks`: whether the model
        predicts masks (mask AP and instance agreement)."""
        self.model, self.score_thresh, self.match_iou = model, score_thresh, match_iou
        self.dataset_name, self.output_dir = dataset_name, output_dir
        self.image_format = image_format
        self.augmentations = T.AugmentationList(list(augmentations))
        self.shifts = [
            (f"{name}{d}", ux * d, uy * d)
            for d, (name, (ux, uy)) in itertools.product(shifts, DIRECTIONS.items())
        ]
        # The tasks are fixed: inferred from the predictions, a shift without any would
        # lack "segm".
        tasks = ("bbox", "segm") if with_masks else ("bbox",)
        self.coco = {}
        for name in ["0"] + [s[0] for s in self.shifts]:
            self.coco[name] = CheckedCOCOEvaluator(
                dataset_name, tasks, output_dir=None, use_fast_impl=False
            )
            if name == "0":  # before loading the ground truth 4 x len(shifts) times more
                images = coco_ground_truth(self.coco[name]).dataset["images"]
                check_shifts_fit(shifts, images, dataset_name, key)

    def reset(self):
        for evaluator in self.coco.values():
            evaluator.reset()
        self._counts = _Counts(matched=0, iou=0.0, same_class=0, unmatched=0, instances=0)

    def _shifted_input(self, image: np.ndarray, dx: int, dy: int, inp: Dict) -> Dict:
        aug = T.AugInput(translate(image, dx, dy))
        self.augmentations(aug)
        tensor = torch.as_tensor(np.ascontiguousarray(aug.image.transpose(2, 0, 1)))
        return {
            "image": tensor,
            "height": inp["height"],
            "width": inp["width"],
            "file_name": inp["file_name"],
        }

    @staticmethod
    def _move_back(instances, dx: int, dy: int):
        instances = instances.to("cpu")
        h, w = instances.image_size
        if instances.has("pred_boxes"):
            boxes = instances.pred_boxes.clone()
            boxes.tensor -= torch.tensor([dx, dy, dx, dy], dtype=boxes.tensor.dtype)
            boxes.clip((h, w))
            instances.pred_boxes = boxes
        if instances.has("pred_masks"):
            masks = instances.pred_masks.permute(1, 2, 0).numpy()
            instances.pred_masks = torch.from_numpy(translate(masks, -dx, -dy)).permute(2, 0, 1)
        return instances

    def _agreement(self, original, moved_back, dx: int, dy: int):
        rows, cols = shared_view(*original.image_size, dx, dy)
        masks = []
        for instances in (original, moved_back):
            kept = instances[instances.scores >= self.score_thresh]
            m = kept.pred_masks[:, rows, cols].bool()
            visible = m.flatten(1).any(dim=1)
            masks.append((m[visible], kept.pred_classes[visible]))
        (masks_a, classes_a), (masks_b, classes_b) = masks
        pairs = match_instances(masks_a, masks_b, self.match_iou)
        self._counts.add(
            matched=len(pairs),
            iou=sum(iou for _, _, iou in pairs),
            same_class=sum(int(classes_a[i] == classes_b[j]) for i, j, _ in pairs),
            unmatched=len(masks_a) + len(masks_b) - 2 * len(pairs),
            instances=len(masks_a) + len(masks_b),
        )

    def process(self, inputs, outputs):
        self.coco["0"].process(inputs, outputs)
        for inp, out in zip(inputs, outputs):
            image = detection_utils.read_image(inp["file_name"], format=self.image_format)
            original = out["instances"].to("cpu")
            for batch in _chunks(self.shifts, len(DIRECTIONS)):  # one model call per distance
                shifted = self.model(
                    [self._shifted_input(image, dx, dy, inp) for _, dx, dy in batch]
                )
                for (name, dx, dy), out_shifted in zip(batch, shifted):
                    moved_back = self._move_back(out_shifted["instances"], dx, dy)
                    self.coco[name].process([inp], [{"instances": moved_back}])
                    if original.has("pred_masks"):
                        self._agreement(original, moved_back, dx, dy)

    def evaluate(self):
        counts = self._counts.gathered()
        coco_logger = logging.getLogger("detectron2.evaluation.coco_evaluation")
        level = coco_logger.level
        coco_logger.setLevel(logging.WARNING)  # 21 full COCO tables would bury the log
        try:
            per_shift = {name: evaluator.evaluate() for name, evaluator in self.coco.items()}
        finally:
            coco_logger.setLevel(level)
        if not comm.is_main_process():
            return None
        res = OrderedDict()
        for task in ("segm", "bbox"):
            if task not in per_shift["0"]:
                continue
            aps = {name: per_shift[name][task]["AP"] for name in per_shift}
            for name, ap in aps.items():
                res[f"{task}_AP_{name}"] = ap
            values = np.array(list(aps.values()))
            res[f"{task}_AP_mean"] = float(values.mean())
            res[f"{task}_AP_spread"] = float(values.max() - values.min())
            res[f"{task}_AP_std"] = float(values.std())
        if counts["instances"]:
            matched = max(counts["matched"], 1)
            res["mask_iou"] = 100 * counts["iou"] / matched
            res["class_agreement"] = 100 * counts["same_class"] / matched
            res["unmatched"] = 100 * counts["unmatched"] / counts["instances"]
        report(res, self.output_dir, self.dataset_name)
        return OrderedDict(shift_consistency=res)


def is_semantic(dataset_name: str) -> bool:
    """Whether `dataset_name` is scored per pixel (semantic segmentation)."""
    return MetadataCatalog.get(dataset_name).get("evaluator_type", None) in (
        "sem_seg",
        "cityscapes_sem_seg",
    )


def build_shift_consistency_evaluator(
    cfg, dataset_name: str, model: Model, output_dir=None
) -> DatasetEvaluator:
    """The shift-consistency evaluator for `dataset_name`'s task, from TEST.SHIFT_CONSISTENCY;
    its results also go to `output_dir/shift_consistency.json` (default: detectron2's
    OUTPUT_DIR/inference/<dataset>)."""
    sc = cfg.TEST.SHIFT_CONSISTENCY
    if output_dir is None:
        output_dir = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
    if cfg.MODEL.META_ARCHITECTURE == "SemanticSegmentor" or is_semantic(dataset_name):
        return SemSegShiftConsistency(
            model, sc.NUM_PAIRS, sc.MAX_SHIFT, sc.SEED, dataset_name, output_dir
        )
    return InstanceShiftConsistency(
        model,
        dataset_name,
        detection_utils.build_augmentation(cfg, is_train=False),
        cfg.INPUT.FORMAT,
        cfg.MODEL.MASK_ON,
        sc.SHIFTS,
        sc.SCORE_THRESH,
        sc.MATCH_IOU,
        output_dir,
    )
