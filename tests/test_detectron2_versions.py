"""pasa_det on detectron2 0.6 and main: the version differences are handled, and
importing pasa_det changes nothing of detectron2."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.evaluation import COCOEvaluator
from detectron2.structures import Boxes, BoxMode, Instances
from detectron2.utils.events import EventStorage
from pycocotools import mask as mask_util

from pasa_det.detectron2_versions import fast_cocoeval_available, write_metrics

IMPORT_EVERYTHING = (
    "import pasa_det, pasa_det.engine, pasa_det.evaluation, pasa_det.checkpoint, pasa_det.modeling"
)


def test_importing_pasa_det_rewrites_no_attribute_of_detectron2():
    # Which detectron2 modules pasa_det uses, then: import those first, snapshot every
    # attribute, import pasa_det, and compare identities.
    listed = subprocess.run(
        [
            sys.executable,
            "-c",
            f"{IMPORT_EVERYTHING}; import sys; print(' '.join(m for m in sys.modules "
            "if m == 'detectron2' or m.startswith('detectron2.')))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert "detectron2.engine.defaults" in listed and "detectron2.engine.train_loop" in listed
    check = f"""
import importlib, sys
modules = [importlib.import_module(m) for m in {listed!r}]
before = {{m.__name__: dict(vars(m)) for m in modules}}
{IMPORT_EVERYTHING}
changed = [f"{{name}}.{{k}}" for name, attrs in before.items() for k, v in vars(sys.modules[name]).items()
           if k not in attrs or attrs[k] is not v]
changed = [c for c in changed if not c.rsplit(".", 1)[1].startswith("__")]  # import bookkeeping
print(changed)
"""
    run = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "[]"


def test_write_metrics_records_the_losses_at_the_given_iteration():
    with EventStorage(start_iter=7) as storage:
        storage.iter = 7  # 0.6 reads the iteration from the storage, main takes it as an argument
        write_metrics({"loss_a": torch.tensor(1.0), "loss_b": torch.tensor(0.5)}, 0.25, 7)
        assert storage.history("total_loss").values() == [(1.5, 7)]
        assert storage.history("loss_a").latest() == 1.0
        assert storage.history("data_time").latest() == 0.25


def test_cityscapesscripts_is_served_under_detectron2_mains_name():
    import cityscapesscripts.helpers.labels as labels
    from deeplearning.projects.cityscapesApi.cityscapesscripts.helpers import labels as aliased

    import pasa_det  # noqa: F401

    assert aliased is labels and aliased.name2label["car"].id == 26


def noisy_predictions(dicts, seed=0):
    """Ground truth as detections, jittered, with random scores and some misclassified
    copies: a mix of hits and misses at every IoU threshold."""
    rng = np.random.default_rng(seed)
    outputs = []
    for d in dicts:
        h, w = d["height"], d["width"]
        boxes, masks, classes, scores = [], [], [], []
        for a in d["annotations"]:
            box = BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS)
            mask = (
                mask_util.decode(mask_util.frPyObjects(a["segmentation"], h, w)).max(axis=2)
                if isinstance(a["segmentation"], list)
                else mask_util.decode(a["segmentation"])
            )
            for wrong in (False, True):
                boxes.append(np.asarray(box) + rng.normal(0, 3, 4))
                masks.append(np.roll(mask, int(rng.integers(-3, 4)), axis=1))
                classes.append((a["category_id"] + 1) % 3 if wrong else a["category_id"])
                scores.append(rng.uniform(0.05, 0.5 if wrong else 1.0))
        instances = Instances((h, w))
        instances.pred_boxes = Boxes(torch.tensor(np.array(boxes), dtype=torch.float32))
        instances.pred_masks = torch.tensor(np.array(masks), dtype=torch.bool)
        instances.pred_classes = torch.tensor(classes)
        instances.scores = torch.tensor(scores, dtype=torch.float32)
        outputs.append({"instances": instances})
    return outputs


@pytest.mark.skipif(
    not fast_cocoeval_available(), reason="this detectron2 is built without its C++ COCOeval"
)
def test_fast_cocoeval_gives_pycocotools_ap_on_the_embedded_set(tmp_path):
    name = "synthetic_instances_val"
    dicts = DatasetCatalog.get(name)
    outputs = noisy_predictions(dicts)
    results = {}
    for fast in (True, False):
        evaluator = COCOEvaluator(name, output_dir=str(tmp_path / str(fast)), use_fast_impl=fast)
        evaluator.reset()
        for d, o in zip(dicts, outputs):
            evaluator.process([{"image_id": d["image_id"], "file_name": d["file_name"]}], [o])
        results[fast] = evaluator.evaluate()
    assert 20 < results[False]["segm"]["AP"] < 95  # neither trivial nor perfect
    for task in ("bbox", "segm"):
        assert results[True][task].keys() == results[False][task].keys()
        for metric, value in results[False][task].items():
            assert results[True][task][metric] == pytest.approx(value, abs=1e-9, nan_ok=True), (
                task,
                metric,
            )
