"""COCO AP of predictions made on shifted copies of a dataset's images: per copy, per
image, and over a selection that takes each image's predictions from one copy (the
worst-case protocols). Scored as detectron2's COCOEvaluator scores (pycocotools, the same
cleaned ground truth, category ids and mask areas), so the unshifted copy's AP equals it."""

import contextlib
import copy
import io
import itertools
from typing import Dict, Hashable, List, Optional

import numpy as np
from detectron2.data import MetadataCatalog
from detectron2.evaluation.coco_evaluation import instances_to_coco_json
from detectron2.utils import comm
from pycocotools.cocoeval import COCOeval

from pasa_det.detectron2_versions import coco_ground_truth

from .coco import CheckedCOCOEvaluator


def _quiet():
    return contextlib.redirect_stdout(io.StringIO())  # pycocotools prints every step


def _average_precision(precision: np.ndarray) -> float:
    """COCO AP (IoU 0.50:0.95, all areas, 100 detections) from COCOeval's `precision`
    array, in percent; NaN where no category has ground truth."""
    values = precision[:, :, :, 0, -1]
    values = values[values > -1]
    return 100 * float(values.mean()) if values.size else float("nan")


class CopyScores:
    """Predictions per (copy, image) for the tasks `tasks`, and their COCO AP."""

    def __init__(self, dataset_name: str, tasks=("bbox", "segm")):
        self.tasks = tuple(tasks)
        # Its ground truth is the one detectron2's evaluator reads, cleaned as in training.
        self.ground_truth = coco_ground_truth(
            CheckedCOCOEvaluator(dataset_name, self.tasks, output_dir=None, use_fast_impl=False)
        )
        self.dataset_name = dataset_name
        self.reset()

    def reset(self):
        self._results: Dict[Hashable, Dict[int, List[Dict]]] = {}
        self._evaluations: Dict = {}  # (task, copy) -> its COCOeval, after evaluate()

    def add(self, copy_key: Hashable, image_id: int, instances) -> None:
        results = instances_to_coco_json(instances.to("cpu"), image_id)
        # Read when predictions come: loading the dataset is what sets it.
        metadata = MetadataCatalog.get(self.dataset_name)
        mapping = metadata.get("thing_dataset_id_to_contiguous_id")
        if mapping:
            dataset_id = {v: k for k, v in mapping.items()}
            for r in results:
                r["category_id"] = dataset_id[r["category_id"]]
        self._results.setdefault(copy_key, {})[image_id] = results

    def gather(self) -> bool:
        """Bring every process's predictions to the main process; whether this is it."""
        parts = comm.gather(self._results)
        if not comm.is_main_process():
            return False
        merged: Dict[Hashable, Dict[int, List[Dict]]] = {}
        for part in parts:
            for key, per_image in part.items():
                merged.setdefault(key, {}).update(per_image)
        self._results, self._evaluations = merged, {}
        return True

    def image_ids(self) -> List[int]:
        return sorted({i for per_image in self._results.values() for i in per_image})

    def _evaluated(self, task: str, results: List[Dict]) -> Optional[COCOeval]:
        """COCOeval of `results` after evaluate(); None without any prediction (AP NaN,
        as detectron2 reports it)."""
        if not results:
            return None
        if task == "segm":  # the mask's area, not the box's, decides small/medium/large
            results = [{k: v for k, v in r.items() if k != "bbox"} for r in results]
        with _quiet():
            coco_eval = COCOeval(self.ground_truth, self.ground_truth.loadRes(results), task)
            coco_eval.evaluate()
        return coco_eval

    def _selection_evaluated(self, task: str, selection: Dict[int, Hashable]):
        results = itertools.chain.from_iterable(
            copy.deepcopy(self._results[key].get(image_id, []))
            for image_id, key in selection.items()
        )
        return self._evaluated(task, list(results))

    def _copy_evaluated(self, task: str, copy_key: Hashable) -> Optional[COCOeval]:
        """The evaluation of one copy, made once for its AP and its images' APs alike."""
        if (task, copy_key) not in self._evaluations:
            selection = {i: copy_key for i in self.image_ids()}
            self._evaluations[task, copy_key] = self._selection_evaluated(task, selection)
        return self._evaluations[task, copy_key]

    @staticmethod
    def _accumulated_ap(coco_eval: Optional[COCOeval]) -> float:
        if coco_eval is None:
            return float("nan")
        with _quiet():
            coco_eval.accumulate()
        return _average_precision(coco_eval.eval["precision"])

    def ap(self, task: str, selection: Dict[int, Hashable]) -> float:
        """COCO AP over the images, each image's predictions taken from the copy
        `selection[image_id]`."""
        return self._accumulated_ap(self._selection_evaluated(task, selection))

    def copy_ap(self, task: str, copy_key: Hashable) -> float:
        return self._accumulated_ap(self._copy_evaluated(task, copy_key))

    def per_image_ap(self, task: str, copy_key: Hashable) -> Dict[int, float]:
        """Each image's own COCO AP on copy `copy_key` (NaN for an image without ground
        truth; 0 for every image where the copy has no prediction at all)."""
        ids = self.image_ids()
        coco_eval = self._copy_evaluated(task, copy_key)
        if coco_eval is None:
            return {i: 0.0 if self.ground_truth.getAnnIds(imgIds=[i]) else np.nan for i in ids}
        # accumulate() over one image at a time: its matches alone, with the image list of
        # the evaluation cut to it (pycocotools orders evalImgs by category, area range,
        # then image, and accumulate() indexes them by that image list). The evaluation is
        # put back afterwards: copy_ap reads it too.
        evaluated = coco_eval._paramsEval
        categories = len(evaluated.catIds) if evaluated.useCats else 1
        areas, all_ids, matches = len(evaluated.areaRng), evaluated.imgIds, coco_eval.evalImgs
        position = {image_id: n for n, image_id in enumerate(all_ids)}
        out = {}
        try:
            for image_id in ids:
                n = position[image_id]
                coco_eval.evalImgs = [
                    matches[(k * areas + a) * len(all_ids) + n]
                    for k in range(categories)
                    for a in range(areas)
                ]
                evaluated.imgIds = coco_eval.params.imgIds = [image_id]
                out[image_id] = self._accumulated_ap(coco_eval)
        finally:
            coco_eval.evalImgs = matches
            evaluated.imgIds, coco_eval.params.imgIds = all_ids, list(all_ids)
        return out

    def worst_case(self, task: str, copy_keys: List[Hashable]) -> float:
        """COCO AP over the images with each image's predictions taken from the copy,
        among `copy_keys`, on which that image's own AP is lowest (the first in
        `copy_keys` on ties, and for images without ground truth)."""
        per_copy = [self.per_image_ap(task, key) for key in copy_keys]
        selection = {}
        for image_id in self.image_ids():
            scores = [np.inf if np.isnan(p[image_id]) else p[image_id] for p in per_copy]
            selection[image_id] = copy_keys[int(np.argmin(scores))]
        return self.ap(task, selection)
