"""The numbers a multi-process run reports are its saved model's: the norms' running
statistics are the same in every process, so the evaluation after training scores exactly
the weights and buffers in model_final.pth."""

import json
import os

import pytest
import torch
from detectron2.data import MetadataCatalog
from detectron2.utils import comm

from pasa_det.analysis.printed_results import copypaste_results
from pasa_det.data.prepare import prepare_dataset
from pasa_det.engine import launch
from pasa_det.engine.norm_statistics import average_over_processes, per_process_statistics
from tests.helpers.paths import QUICK_INSTANCE
from tests.helpers.scripts import run_tool
from tests.helpers.tiny_training import TINY


def _average_in_two_processes(folder):
    torch.manual_seed(comm.get_rank())
    model = torch.nn.Sequential(
        torch.nn.BatchNorm2d(3), torch.nn.SyncBatchNorm(2), torch.nn.BatchNorm1d(4)
    )
    model.train()
    model[0](torch.randn(2, 3, 4, 4) + comm.get_rank())
    model[2](torch.randn(5, 4) * (1 + comm.get_rank()))
    before = [t.clone() for t in per_process_statistics(model)]
    average_over_processes(per_process_statistics(model))
    torch.save(
        {"before": before, "after": per_process_statistics(model)},
        os.path.join(folder, f"rank{comm.get_rank()}.pt"),
    )


def test_statistics_become_the_mean_over_processes_and_equal_in_each(tmp_path):
    launch(_average_in_two_processes, 2, args=(str(tmp_path),))
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert len(ranks[0]["after"]) == 4  # the two BatchNorms, not the SyncBatchNorm
    for i in range(4):
        assert not torch.equal(ranks[0]["before"][i], ranks[1]["before"][i])
        assert torch.equal(ranks[0]["after"][i], ranks[1]["after"][i])
        mean = (ranks[0]["before"][i] + ranks[1]["before"][i]) / 2
        torch.testing.assert_close(ranks[0]["after"][i], mean)


# Enough detections (score threshold 0) that the AP of a few iterations' model moves with
# the backbone's BatchNorm statistics; 64-px test images.
EVALUATED = [
    "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "64",
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "TEST.DETECTIONS_PER_IMAGE", "20",
]  # fmt: skip


def first_validation_images(folder, count=24):
    """DATASETS overrides registering and testing on the first `count` images of the
    embedded validation set (the evaluation is run three times)."""
    prepare_dataset("synthetic_instances_val")
    metadata = MetadataCatalog.get("synthetic_instances_val")
    with open(metadata.json_file) as f:
        data = json.load(f)
    data["images"] = data["images"][:count]
    kept = {image["id"] for image in data["images"]}
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in kept]
    subset = os.path.join(folder, "val_subset.json")
    with open(subset, "w") as f:
        json.dump(data, f)
    register = f"[('val_subset', '{subset}', '{metadata.image_root}')]"
    return ["DATASETS.REGISTER_COCO", register, "DATASETS.TEST", "('val_subset',)"]


def _train_net(*args):
    run = run_tool("train_net.py", "--config-file", QUICK_INSTANCE, *args)
    assert run.returncode == 0, run.stderr[-3000:]
    results = copypaste_results(run.stdout + run.stderr)
    assert set(results) == {"bbox", "segm"}, run.stderr[-3000:]
    return results


@pytest.mark.slow
def test_two_process_training_reports_the_ap_of_its_model_final(tmp_path):
    two = ["--num-gpus", "2", "--dist-url", "auto"]
    evaluated_on = [*EVALUATED, *first_validation_images(tmp_path)]
    trained = _train_net(
        *two, *TINY, *evaluated_on, "SOLVER.MAX_ITER", "16", "OUTPUT_DIR", tmp_path / "train"
    )
    # After 16 iterations the AP is well above 0 (0.17) and was the same in 3 runs; after 8 it
    # was near 0 and differed between runs (why is not known), failing this at random.
    assert trained["segm"]["AP"] > 0
    weights = ["--eval-only", "MODEL.WEIGHTS", tmp_path / "train" / "model_final.pth"]
    for processes in (1, 2):
        evaluated = _train_net(
            *(two if processes == 2 else []),
            *weights,
            *TINY,
            *evaluated_on,
            "OUTPUT_DIR",
            tmp_path / f"eval{processes}",
        )
        assert evaluated == trained, processes
