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
from typing import Callable, Dict, List, Sequence, Tuple, Union

import numpy as np
import torch
from detectron2.data import MetadataCatalog, detection_utils
from detectron2.data import transforms as T
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

from pasa_det.config import ConfigError
from pasa_det.config.checks import INSTANCE_PROTOCOLS, SEMANTIC_PROTOCOLS
from pasa_det.data.resumable import derive_seed

from .copy_ap import CopyScores
from .export import json_ready
from .image_shifts import (
    circular,
    shared_view,
    subpixel_view,
    translate,
    translate_subpixel,
)

# The four directions of the authors' protocol, as unit (dx, dy): right, left, down, up.
DIRECTIONS = {"right": (1, 0), "left": (-1, 0), "down": (0, 1), "up": (0, -1)}
# The sub-pixel protocol's directions.
SUBPIXEL_AXES = (("right", (1, 0)), ("down", (0, 1)))

Model = Callable[[List[Dict]], List[Dict]]
logger = logging.getLogger(__name__)
RESULT_FILE = "shift_consistency.json"
# The config group of the settings, named in errors: the yacs one, or the LazyConfig's.
YACS_KEY = "TEST.SHIFT_CONSISTENCY"
LAZY_KEY = "dataloader.shift_consistency"
# The instance evaluator's defaults, which the checks before training assume too.
INSTANCE_DEFAULT_PROTOCOLS = ("grid",)
INSTANCE_DEFAULT_SHIFTS = (1, 2, 5, 10, 20)
ADVERSARIAL_DEFAULT_MAX_SHIFT = 2


def task_protocols(protocols: Sequence[str], task_names: Sequence[str], key: str) -> List[str]:
    """The protocols of `protocols` that score this task (`task_names`); ConfigError
    naming the key when none does."""
    chosen = [p for p in protocols if p in task_names]
    if not chosen:
        raise ConfigError(
            f"{key}.{_field('PROTOCOLS', key)}={list(protocols)} names no protocol for this "
            f"dataset's task: add some of {', '.join(task_names)}"
        )
    return chosen


def _field(name: str, key: str) -> str:
    """A setting's name in the group `key`: upper case in yacs, lower in a LazyConfig."""
    return name if key == YACS_KEY else name.lower()


def shift_consistency_table(res: Dict) -> str:
    """The results as a reader wants them: per task (mask AP, then box AP) the AP per
    shift distance and direction with its summary, then the other protocols' APs; then
    the agreement figures and each protocol's cost."""
    lines = []
    for task, label in (("segm", "mask AP"), ("bbox", "box AP")):
        if f"{task}_AP_0" not in res:
            continue
        shift_key = re.compile(rf"{task}_AP_({'|'.join(DIRECTIONS)})(\d+)")
        distances = sorted({int(m[2]) for m in map(shift_key.fullmatch, res) if m})
        lines.append(f"{label}: unshifted {res[f'{task}_AP_0']:.2f}")
        if distances:
            lines.append(f"  {'shift px':>8} " + "".join(f"{d:>8}" for d in DIRECTIONS))
            for d in distances:
                cells = "".join(f"{res[f'{task}_AP_{name}{d}']:8.2f}" for name in DIRECTIONS)
                lines.append(f"  {d:>8} {cells}")
            lines.append(
                f"  mean {res[f'{task}_AP_mean']:.2f}, spread (max - min) "
                f"{res[f'{task}_AP_spread']:.2f}, std {res[f'{task}_AP_std']:.2f}"
            )
        prefix = f"{task}_AP_subpixel_"
        axes = "|".join(name for name, _ in SUBPIXEL_AXES)
        subpixel = [
            m[1] for m in map(re.compile(rf"{prefix}((?:{axes})[\d.]+)").fullmatch, res) if m
        ]
        if subpixel:
            cells = ", ".join(f"{name} {res[prefix + name]:.2f}" for name in subpixel)
            lines.append(
                f"  sub-pixel shifts (px, bilinear): {cells}; mean {res[prefix + 'mean']:.2f}, "
                f"spread {res[prefix + 'spread']:.2f}"
            )
        for protocol, text in (
            ("worst_case", "worst case, each image on its worst shift of the grid"),
            ("adversarial", "adversarial, each image on its worst integer shift"),
        ):
            if f"{task}_AP_{protocol}" in res:
                lines.append(f"  {text}: {res[f'{task}_AP_{protocol}']:.2f}")
    named = [
        ("consistency", "labels agreeing between shifted crops, %"),
        ("massc_circular", "labels agreeing after circular shifts (mASSC), %"),
        ("massc_zero", "labels agreeing after zero-padded shifts (mASSC), %"),
        ("subpixel_mean", "labels agreeing after sub-pixel shifts, %"),
        ("adversarial", "labels agreeing under each image's worst integer shift, %"),
        ("mask_iou", "mask IoU of matched instances, %"),
        ("class_agreement", "matched instances with the same class, %"),
        ("unmatched", "instances without a partner, %"),
    ]
    lines += [f"{text}: {res[key]:.2f}" for key, text in named if key in res]
    cost = protocol_cost(res)
    if cost:
        lines.append(f"forward passes per image: {', '.join(f'{k} {v}' for k, v in cost.items())}")
    return "\n".join(lines)


PASSES = "forward_passes_"  # result keys: forward passes per image, by protocol and in total


def passes_per_image(passes: Dict[str, int]) -> Dict[str, int]:
    """The result keys of each protocol's cost (flat: detectron2 prints results as numbers)."""
    return {f"{PASSES}{protocol}": n for protocol, n in passes.items()}


def protocol_cost(res: Dict) -> Dict[str, int]:
    """protocol -> forward passes per image, read back from results."""
    return {k[len(PASSES) :]: v for k, v in res.items() if k.startswith(PASSES)}


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


def check_shifts_fit(
    shifts: Union[int, Sequence[int]],
    images: Sequence[Dict],
    dataset_name: str,
    key: str = YACS_KEY,
    field: str = "SHIFTS",
    default: str = str(list(INSTANCE_DEFAULT_SHIFTS)),
) -> None:
    """Every shift (px of the original image) leaves part of every image in frame, as
    `translate` needs: a shift by an image's width or height zero-fills all of it, and the AP
    at that shift measures nothing. `images`: COCO image entries (file_name, width, height);
    `key` and `field`: the config key that set the shifts, and its default, for the error."""
    sized = [image for image in images if "width" in image and "height" in image]
    if not sized:
        return
    smallest = min(sized, key=lambda image: min(image["width"], image["height"]))
    side = min(smallest["width"], smallest["height"])
    shifts = shifts if isinstance(shifts, int) else list(shifts)
    largest = shifts if isinstance(shifts, int) else max(shifts)
    if largest >= side:
        raise ConfigError(
            f"{key}.{_field(field, key)}={shifts}: a shift of {largest} px moves "
            f"image {smallest['file_name']} of {dataset_name!r} ({smallest['width']}x"
            f"{smallest['height']} px) wholly out of frame. Shifts are px of the original image "
            f"and must stay below every image's width and height: use shifts up to {side - 1} "
            f"(the default is {default})"
        )


def check_instance_shifts_fit(
    images: Sequence[Dict],
    dataset_name: str,
    protocols: Sequence[str] = INSTANCE_DEFAULT_PROTOCOLS,
    shifts: Sequence[int] = INSTANCE_DEFAULT_SHIFTS,
    adversarial_max_shift: int = ADVERSARIAL_DEFAULT_MAX_SHIFT,
    key: str = YACS_KEY,
) -> None:
    """check_shifts_fit for the shifts the instance `protocols` run: the grid's `shifts`
    (grid, worst_case) and the adversarial protocol's largest one. The evaluator checks
    this when it is built; train_net.py before training."""
    if {"grid", "worst_case"} & set(protocols):
        check_shifts_fit(shifts, images, dataset_name, key)
    if "adversarial" in protocols:
        check_shifts_fit(
            adversarial_max_shift,
            images,
            dataset_name,
            key,
            "ADVERSARIAL_MAX_SHIFT",
            str(ADVERSARIAL_DEFAULT_MAX_SHIFT),
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


def subpixel_copies(fractions: Sequence[float]) -> List[Tuple[str, float, float]]:
    """(name, dx, dy) of the sub-pixel protocol: each fraction to the right and down."""
    return [(f"{d}{t:g}", t * ux, t * uy) for t in fractions for d, (ux, uy) in SUBPIXEL_AXES]


def adversarial_copies(max_shift: int) -> List[Tuple[str, int, int]]:
    """(name, dx, dy) of every integer shift with |dx|, |dy| <= max_shift but (0, 0)."""
    span = range(-max_shift, max_shift + 1)
    return [(f"x{dx:+d}y{dy:+d}", dx, dy) for dy in span for dx in span if dx or dy]


class SemSegShiftConsistency(DatasetEvaluator):
    """Agreement of predicted labels (argmax) under shifts of the network's input, by
    protocol (`protocols`, a subset of SEMANTIC_PROTOCOLS):

    - crop_pairs: `num_pairs` random pairs of crops of size (H - max_shift, W - max_shift)
      at independent offsets, compared on their overlap (Zhang's consistency);
    - massc_circular / massc_zero: `num_pairs` random shifts (dx, dy), each in
      [-max_shift, max_shift], of the whole input with wrap-around / with a zero-filled
      border; the shifted prediction is moved back and compared with the original one, on
      the whole map / on the part that stays in frame (LPS's mASSC);
    - subpixel: shifts by each of `subpixel_shifts` px to the right and down (bilinear
      resampling); the prediction of the shifted input is compared with the original
      prediction's logits resampled by the same shift, where no border was filled in;
    - adversarial: every integer shift up to `adversarial_max_shift` px in x and y (zero
      border); per image the lowest agreement over them, averaged over images (and the
      mean agreement at each distance max(|dx|, |dy|), `zero_shift_<d>px`).

    Random shifts are drawn from `seed` and each image's file name.
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
        protocols: Sequence[str] = ("crop_pairs",),
        subpixel_shifts: Sequence[float] = (0.25, 0.5, 0.75),
        adversarial_max_shift: int = 2,
    ):
        if num_pairs < 1 or max_shift < 1:
            raise ValueError(
                f"need num_pairs >= 1 and max_shift >= 1, got {num_pairs}, {max_shift}"
            )
        self.model, self.num_pairs, self.max_shift, self.seed = model, num_pairs, max_shift, seed
        self.dataset_name, self.output_dir, self.key = dataset_name, output_dir, key
        self.protocols = task_protocols(protocols, SEMANTIC_PROTOCOLS, key)
        self.subpixel = subpixel_copies(subpixel_shifts)
        self.adversarial = adversarial_copies(adversarial_max_shift)
        self.adversarial_max_shift = adversarial_max_shift
        passes = {
            "crop_pairs": 2 * num_pairs,
            "massc_circular": num_pairs,
            "massc_zero": num_pairs,
            "subpixel": len(self.subpixel),
            "adversarial": len(self.adversarial),
        }
        self.passes = {p: passes[p] for p in self.protocols}
        # The protocols other than crop_pairs share one run of the whole original input.
        self.passes["total"] = sum(self.passes.values()) + (set(self.protocols) != {"crop_pairs"})

    def reset(self):
        self._counts = _Counts(agreement=0.0, pairs=0)

    def _labels(self, images: List[torch.Tensor], file_name: str, logits=False):
        inputs = [
            {"image": im, "height": im.shape[-2], "width": im.shape[-1], "file_name": file_name}
            for im in images
        ]
        maps = [out["sem_seg"].cpu() for out in self.model(inputs)]
        return maps if logits else [m.argmax(dim=0) for m in maps]

    def _check_crop_fits(self, image, file_name):
        h, w = image.shape[-2] - self.max_shift, image.shape[-1] - self.max_shift
        if h < 1 or w < 1:
            raise ConfigError(
                f"{self.key}.{_field('MAX_SHIFT', self.key)}={self.max_shift} leaves no crop "
                f"of the {tuple(image.shape[-2:])} test input of {file_name}: set it "
                f"below {min(image.shape[-2:])}, or make the test inputs larger ("
                f"{'INPUT.MIN_SIZE_TEST' if self.key == YACS_KEY else 'the test resize'})"
            )
        return h, w

    def _crop_pairs(self, image, file_name, rng):
        h, w = self._check_crop_fits(image, file_name)
        for _ in range(self.num_pairs):
            offsets = [
                tuple(int(v) for v in rng.integers(0, self.max_shift + 1, size=2)) for _ in range(2)
            ]
            crops = [image[:, y : y + h, x : x + w] for y, x in offsets]
            labels = self._labels(crops, file_name)
            self._counts.add(
                agreement=label_agreement(labels[0], offsets[0], labels[1], offsets[1]), pairs=1
            )

    def _massc(self, image, file_name, rng, original):
        hwc = image.permute(1, 2, 0).numpy()
        shifts = [
            tuple(int(v) for v in rng.integers(-self.max_shift, self.max_shift + 1, size=2))
            for _ in range(self.num_pairs)
        ]
        for protocol, move in (("massc_circular", circular), ("massc_zero", translate)):
            if protocol not in self.protocols:
                continue
            moved = [torch.from_numpy(move(hwc, dx, dy)).permute(2, 0, 1) for dx, dy in shifts]
            for (dx, dy), labels in zip(shifts, self._labels(moved, file_name)):
                if protocol == "massc_circular":
                    agreement = (circular(labels.numpy(), -dx, -dy) == original.numpy()).mean()
                else:
                    agreement = label_agreement(original, (0, 0), labels, (-dy, -dx))
                self._counts.add(**{protocol: float(agreement), f"{protocol}_n": 1})

    def _subpixel(self, image, file_name, original_logits):
        hwc = image.permute(1, 2, 0).numpy()
        logits_hwc = original_logits.permute(1, 2, 0).numpy()
        moved = [
            torch.from_numpy(np.clip(np.rint(translate_subpixel(hwc, dx, dy)), 0, 255))
            .to(image.dtype)
            .permute(2, 0, 1)
            for _, dx, dy in self.subpixel
        ]
        for (name, dx, dy), labels in zip(self.subpixel, self._labels(moved, file_name)):
            expected = translate_subpixel(logits_hwc, dx, dy).argmax(axis=2)
            view = subpixel_view(*labels.shape, dx, dy)
            agreement = float((labels.numpy()[view] == expected[view]).mean())
            self._counts.add(**{f"subpixel_{name}": agreement, f"subpixel_{name}_n": 1})

    def _adversarial(self, image, file_name, original):
        if self.adversarial_max_shift >= min(image.shape[-2:]):
            raise ConfigError(
                f"{self.key}.{_field('ADVERSARIAL_MAX_SHIFT', self.key)}="
                f"{self.adversarial_max_shift} moves the {tuple(image.shape[-2:])} test input of "
                f"{file_name} wholly out of frame: set it below {min(image.shape[-2:])}"
            )
        hwc = image.permute(1, 2, 0).numpy()
        worst = 1.0
        for batch in _chunks(self.adversarial, 4):
            moved = [
                torch.from_numpy(translate(hwc, dx, dy)).permute(2, 0, 1) for _, dx, dy in batch
            ]
            for (_, dx, dy), labels in zip(batch, self._labels(moved, file_name)):
                agreement = label_agreement(original, (0, 0), labels, (-dy, -dx))
                worst = min(worst, agreement)
                ring = f"zero_shift_{max(abs(dx), abs(dy))}px"
                self._counts.add(**{ring: agreement, f"{ring}_n": 1})
        self._counts.add(adversarial=worst, adversarial_n=1)

    def process(self, inputs, outputs):
        for inp in inputs:
            image, file_name = inp["image"], inp["file_name"]
            if "crop_pairs" in self.protocols:
                rng = np.random.default_rng(image_seed(self.seed, file_name))
                self._crop_pairs(image, file_name, rng)
            if set(self.protocols) == {"crop_pairs"}:
                continue
            original_logits = self._labels([image], file_name, logits=True)[0]
            original = original_logits.argmax(dim=0)
            if {"massc_circular", "massc_zero"} & set(self.protocols):
                shift_rng = np.random.default_rng([image_seed(self.seed, file_name), 1])
                self._massc(image, file_name, shift_rng, original)
            if "subpixel" in self.protocols:
                self._subpixel(image, file_name, original_logits)
            if "adversarial" in self.protocols:
                self._adversarial(image, file_name, original)

    def evaluate(self):
        counts = self._counts.gathered()
        if not comm.is_main_process():
            return None
        res = OrderedDict()
        if "crop_pairs" in self.protocols:
            res["consistency"] = 100 * counts["agreement"] / max(counts["pairs"], 1)
            res["pairs"] = counts["pairs"]
        for protocol in ("massc_circular", "massc_zero", "adversarial"):
            if protocol in self.protocols:
                res[protocol] = 100 * counts[protocol] / max(counts[f"{protocol}_n"], 1)
        if "adversarial" in self.protocols:  # the mean agreement at each distance of its grid
            for d in range(1, self.adversarial_max_shift + 1):
                ring = f"zero_shift_{d}px"
                res[ring] = 100 * counts[ring] / max(counts[f"{ring}_n"], 1)
        if "subpixel" in self.protocols:
            values = []
            for name, _, _ in self.subpixel:
                res[f"subpixel_{name}"] = (
                    100 * counts[f"subpixel_{name}"] / max(counts[f"subpixel_{name}_n"], 1)
                )
                values.append(res[f"subpixel_{name}"])
            res["subpixel_mean"] = float(np.mean(values))
        res.update(passes_per_image(self.passes))
        report(res, self.output_dir, self.dataset_name)
        return OrderedDict(shift_consistency=res)


class InstanceShiftConsistency(DatasetEvaluator):
    """COCO AP and instance agreement under shifts of the original image, by protocol
    (`protocols`, a subset of INSTANCE_PROTOCOLS):

    - grid: the authors' protocol: the content moved by each of `shifts` px in four
      directions (uncovered border zero-filled) before the test-time resize; the
      predictions moved back and scored against the original annotations: AP per shift,
      mean, spread and std; and, inside the part that stays in frame, agreement of the
      original predictions with the moved-back ones (score >= `score_thresh`): mask IoU
      and class agreement of pairs matched greedily at IoU >= `match_iou`, and the
      percentage of instances without a partner;
    - worst_case: COCO AP over the set with each image's predictions taken from the grid's
      shifted copy on which that image's own AP is lowest (`CopyScores.worst_case`);
    - subpixel: AP at shifts of each of `subpixel_shifts` px to the right and down, the
      image resampled bilinearly (predicted masks moved back the same way, kept >= 0.5);
    - adversarial: the worst case over every integer shift (dx, dy) with |dx|, |dy| up to
      `adversarial_max_shift` px but (0, 0).

    Each task (box, mask) chooses its own worst copies.
    """

    def __init__(
        self,
        model: Model,
        dataset_name: str,
        augmentations: Sequence[T.Augmentation] = (),
        image_format: str = "BGR",
        with_masks: bool = True,
        shifts: Sequence[int] = INSTANCE_DEFAULT_SHIFTS,
        score_thresh: float = 0.5,
        match_iou: float = 0.5,
        output_dir=None,
        key: str = YACS_KEY,
        protocols: Sequence[str] = INSTANCE_DEFAULT_PROTOCOLS,
        subpixel_shifts: Sequence[float] = (0.25, 0.5, 0.75),
        adversarial_max_shift: int = ADVERSARIAL_DEFAULT_MAX_SHIFT,
    ):
        """`augmentations` and `image_format`: the test loader's (the shifted images are
        read and resized as it reads the original); `with_masks`: whether the model
        predicts masks (mask AP and instance agreement)."""
        self.model, self.score_thresh, self.match_iou = model, score_thresh, match_iou
        self.dataset_name, self.output_dir = dataset_name, output_dir
        self.image_format = image_format
        self.augmentations = T.AugmentationList(list(augmentations))
        self.protocols = task_protocols(protocols, INSTANCE_PROTOCOLS, key)
        grid = [
            (f"{name}{d}", ux * d, uy * d)
            for d, (name, (ux, uy)) in itertools.product(shifts, DIRECTIONS.items())
        ]
        self.copies = {
            "grid": grid,
            "worst_case": grid,
            "subpixel": subpixel_copies(subpixel_shifts),
            "adversarial": adversarial_copies(adversarial_max_shift),
        }
        self.copies = {p: self.copies[p] for p in self.protocols}
        # One model run per distinct offset, whichever protocols share it.
        self.offsets = list(
            dict.fromkeys((dx, dy) for c in self.copies.values() for _, dx, dy in c)
        )
        self.passes = {p: len(c) for p, c in self.copies.items()}
        self.passes["total"] = 1 + len(self.offsets)
        # The tasks are fixed: inferred from the predictions, a shift without any would
        # lack "segm".
        self.tasks = ("bbox", "segm") if with_masks else ("bbox",)
        self.scores = CopyScores(dataset_name, self.tasks)
        check_instance_shifts_fit(
            self.scores.ground_truth.dataset["images"],
            dataset_name,
            self.protocols,
            shifts,
            adversarial_max_shift,
            key,
        )

    def reset(self):
        self.scores.reset()
        self._counts = _Counts(matched=0, iou=0.0, same_class=0, unmatched=0, instances=0)

    def _shifted_input(self, image: np.ndarray, dx, dy, inp: Dict) -> Dict:
        if float(dx).is_integer() and float(dy).is_integer():
            moved = translate(image, int(dx), int(dy))
        else:
            moved = np.clip(np.rint(translate_subpixel(image, dx, dy)), 0, 255).astype(image.dtype)
        aug = T.AugInput(moved)
        self.augmentations(aug)
        tensor = torch.as_tensor(np.ascontiguousarray(aug.image.transpose(2, 0, 1)))
        return {
            "image": tensor,
            "height": inp["height"],
            "width": inp["width"],
            "file_name": inp["file_name"],
        }

    @staticmethod
    def _move_back(instances, dx, dy):
        instances = instances.to("cpu")
        h, w = instances.image_size
        if instances.has("pred_boxes"):
            boxes = instances.pred_boxes.clone()
            boxes.tensor -= torch.tensor([dx, dy, dx, dy], dtype=boxes.tensor.dtype)
            boxes.clip((h, w))
            instances.pred_boxes = boxes
        if instances.has("pred_masks"):
            masks = instances.pred_masks.permute(1, 2, 0).numpy()
            if float(dx).is_integer() and float(dy).is_integer():
                moved = translate(masks, -int(dx), -int(dy))
            else:
                moved = translate_subpixel(masks, -dx, -dy) >= 0.5
            instances.pred_masks = torch.from_numpy(moved).permute(2, 0, 1)
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
        grid = {(dx, dy) for _, dx, dy in self.copies.get("grid", [])}
        for inp, out in zip(inputs, outputs):
            image = detection_utils.read_image(inp["file_name"], format=self.image_format)
            original = out["instances"].to("cpu")
            self.scores.add((0, 0), inp["image_id"], original)
            for batch in _chunks(self.offsets, len(DIRECTIONS)):
                shifted = self.model([self._shifted_input(image, dx, dy, inp) for dx, dy in batch])
                for (dx, dy), out_shifted in zip(batch, shifted):
                    moved_back = self._move_back(out_shifted["instances"], dx, dy)
                    self.scores.add((dx, dy), inp["image_id"], moved_back)
                    if (dx, dy) in grid and original.has("pred_masks"):
                        self._agreement(original, moved_back, dx, dy)

    def evaluate(self):
        counts = self._counts.gathered()
        if not self.scores.gather():
            return None
        res = OrderedDict()
        for task in ("segm", "bbox"):
            if task not in self.tasks:
                continue
            res[f"{task}_AP_0"] = self.scores.copy_ap(task, (0, 0))
            for protocol, prefix in (("grid", f"{task}_AP"), ("subpixel", f"{task}_AP_subpixel")):
                if protocol in self.protocols:  # AP per copy, and their summary
                    aps = [res[f"{task}_AP_0"]]
                    for name, dx, dy in self.copies[protocol]:
                        res[f"{prefix}_{name}"] = self.scores.copy_ap(task, (dx, dy))
                        aps.append(res[f"{prefix}_{name}"])
                    res.update(_summary(prefix, aps))
            for protocol in ("worst_case", "adversarial"):
                if protocol in self.protocols:
                    offsets = [(dx, dy) for _, dx, dy in self.copies[protocol]]
                    res[f"{task}_AP_{protocol}"] = self.scores.worst_case(task, offsets)
        if counts["instances"]:
            matched = max(counts["matched"], 1)
            res["mask_iou"] = 100 * counts["iou"] / matched
            res["class_agreement"] = 100 * counts["same_class"] / matched
            res["unmatched"] = 100 * counts["unmatched"] / counts["instances"]
        res.update(passes_per_image(self.passes))
        report(res, self.output_dir, self.dataset_name)
        return OrderedDict(shift_consistency=res)


def _summary(prefix: str, aps: List[float]) -> Dict[str, float]:
    """Mean, spread (max - min) and std of the APs (unshifted first) of one protocol."""
    values = np.array(aps)
    return {
        f"{prefix}_mean": float(values.mean()),
        f"{prefix}_spread": float(values.max() - values.min()),
        f"{prefix}_std": float(values.std()),
    }


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
    protocols = {
        "protocols": list(sc.PROTOCOLS),
        "subpixel_shifts": list(sc.SUBPIXEL_SHIFTS),
        "adversarial_max_shift": sc.ADVERSARIAL_MAX_SHIFT,
    }
    if cfg.MODEL.META_ARCHITECTURE == "SemanticSegmentor" or is_semantic(dataset_name):
        return SemSegShiftConsistency(
            model, sc.NUM_PAIRS, sc.MAX_SHIFT, sc.SEED, dataset_name, output_dir, **protocols
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
        **protocols,
    )
