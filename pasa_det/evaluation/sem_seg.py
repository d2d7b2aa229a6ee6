"""Semantic-segmentation mIoU that works on current NumPy (detectron2 0.6's uses np.int)."""

import json
import logging
import os
from collections import OrderedDict

import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm
from PIL import Image


def scores_from_confusion(conf: np.ndarray, class_names) -> "OrderedDict[str, float]":
    """mIoU, fwIoU, mACC, pACC and per-class IoU/ACC (percent) from a
    (num_classes, num_classes) matrix of ground-truth rows and predicted columns.
    Classes absent from both ground truth and prediction are left out of means."""
    conf = conf.astype(np.float64)
    tp = np.diag(conf)
    gt = conf.sum(axis=1)
    pred = conf.sum(axis=0)
    union = gt + pred - tp
    valid = gt > 0
    iou = np.divide(tp, union, out=np.full_like(tp, np.nan), where=union > 0)
    acc = np.divide(tp, gt, out=np.full_like(tp, np.nan), where=valid)
    res = OrderedDict()
    res["mIoU"] = 100 * float(np.nanmean(iou[valid])) if valid.any() else float("nan")
    res["fwIoU"] = (
        100 * float(np.nansum(iou[valid] * gt[valid] / gt.sum())) if valid.any() else float("nan")
    )
    for i, name in enumerate(class_names):
        res[f"IoU-{name}"] = 100 * float(iou[i])
    res["mACC"] = 100 * float(np.nanmean(acc[valid])) if valid.any() else float("nan")
    res["pACC"] = 100 * float(tp.sum() / max(gt.sum(), 1))
    for i, name in enumerate(class_names):
        res[f"ACC-{name}"] = 100 * float(acc[i])
    return res


class SemSegEvaluator(DatasetEvaluator):
    """Accumulates a confusion matrix over the dataset (across processes) and
    reports detectron2's `sem_seg` metrics."""

    def __init__(self, dataset_name, output_dir=None):
        self._dataset_name = dataset_name
        self._output_dir = output_dir
        meta = MetadataCatalog.get(dataset_name)
        self._class_names = list(meta.stuff_classes)
        self._num_classes = len(self._class_names)
        self._ignore_label = meta.get("ignore_label", 255)
        self._gt_files = {
            d["file_name"]: d["sem_seg_file_name"] for d in DatasetCatalog.get(dataset_name)
        }
        self._logger = logging.getLogger(__name__)

    def reset(self):
        self._conf = np.zeros((self._num_classes, self._num_classes), dtype=np.int64)

    def process(self, inputs, outputs):
        for inp, out in zip(inputs, outputs):
            pred = out["sem_seg"].argmax(dim=0).to("cpu", torch.int64).numpy()
            with open(self._gt_files[inp["file_name"]], "rb") as f:
                gt = np.asarray(Image.open(f), dtype=np.int64)
            keep = gt != self._ignore_label
            if gt.shape != pred.shape:
                raise ValueError(
                    f"prediction {pred.shape} and ground truth {gt.shape} differ for {inp['file_name']}"
                )
            index = gt[keep] * self._num_classes + pred[keep]
            self._conf += np.bincount(index, minlength=self._num_classes**2).reshape(
                self._conf.shape
            )

    def evaluate(self):
        conf = self._conf
        if comm.get_world_size() > 1:
            conf = sum(comm.all_gather(self._conf))
            if not comm.is_main_process():
                return None
        res = scores_from_confusion(conf, self._class_names)
        if self._output_dir:
            os.makedirs(self._output_dir, exist_ok=True)
            with open(os.path.join(self._output_dir, "sem_seg_evaluation.json"), "w") as f:
                json.dump(res, f)
        return OrderedDict(sem_seg=res)
