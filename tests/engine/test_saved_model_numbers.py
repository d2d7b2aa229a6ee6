"""The numbers a multi-process run reports are its saved model's: the norms' running
statistics are the same in every process, so the evaluation after training scores exactly
the weights and buffers in model_final.pth."""

import os

import pytest
import torch
from detectron2.utils import comm

from pasa_det.analysis.printed_results import copypaste_results
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
# the backbone's BatchNorm statistics.
EVALUATED = [
    "DATASETS.TEST", "('synthetic_instances_val',)", "INPUT.MIN_SIZE_TEST", "64",
    "INPUT.MAX_SIZE_TEST", "64", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",
    "TEST.DETECTIONS_PER_IMAGE", "20",
]  # fmt: skip


def _train_net(*args):
    run = run_tool("train_net.py", "--config-file", QUICK_INSTANCE, *args)
    assert run.returncode == 0, run.stderr[-3000:]
    results = copypaste_results(run.stdout + run.stderr)
    assert set(results) == {"bbox", "segm"}, run.stderr[-3000:]
    return results


@pytest.mark.slow
def test_two_process_training_reports_the_ap_of_its_model_final(tmp_path):
    two = ["--num-gpus", "2", "--dist-url", "auto"]
    trained = _train_net(
        *two, *TINY, *EVALUATED, "SOLVER.MAX_ITER", "8", "OUTPUT_DIR", tmp_path / "train"
    )
    assert trained["segm"]["AP"] > 0
    weights = ["--eval-only", "MODEL.WEIGHTS", tmp_path / "train" / "model_final.pth"]
    for processes in (1, 2):
        evaluated = _train_net(
            *(two if processes == 2 else []),
            *weights,
            *TINY,
            *EVALUATED,
            "OUTPUT_DIR",
            tmp_path / f"eval{processes}",
        )
        assert evaluated == trained, processes
