"""tools/lazyconfig_train_net.py end to end with the quick LazyConfig on the embedded
synthetic set (CPU, 64-px images, a few iterations): it trains and evaluates, a run stopped
by SIGTERM and resumed ends with the uninterrupted run's weights, --eval-only of the saved
weights prints the numbers training printed, and mistakes end in one line."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import detectron2
import pytest
import torch

from pasa_det.analysis.printed_results import copypaste_results
from tests.helpers.paths import QUICK_INSTANCE, ROOT, TOOLS
from tests.helpers.scripts import run_tool

QUICK_LAZY = QUICK_INSTANCE.replace(".yaml", ".py")
_AUG = "dataloader.{}.mapper.augmentations.0"
TINY = [
    "dataloader.train.total_batch_size=2",
    "dataloader.train.num_workers=0",
    "dataloader.test.num_workers=0",
    f"{_AUG.format('train')}.short_edge_length=[64]",
    f"{_AUG.format('train')}.max_size=64",
    f"{_AUG.format('test')}.short_edge_length=64",
    f"{_AUG.format('test')}.max_size=64",
    "model.roi_heads.box_predictor.test_topk_per_image=5",  # an untrained model's evaluation
    "train.max_iter=10",
    "lr_multiplier.scheduler.milestones=[8]",
    "train.checkpointer.period=2",
]


def lazy(*args, check=True, config=QUICK_LAZY):
    run = run_tool("lazyconfig_train_net.py", "--config-file", config, *args)
    if check and run.returncode != 0:
        raise AssertionError(
            f"lazyconfig_train_net failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
        )
    return run


def weights(folder):
    return torch.load(folder / "model_final.pth", weights_only=True)["model"]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    return out, lazy(*TINY, f"train.output_dir={out}")


def test_trains_and_eval_only_of_the_saved_weights_and_config_prints_the_same_numbers(straight):
    out, run = straight
    trained = copypaste_results(run.stdout + run.stderr)
    assert set(trained) == {"bbox", "segm"}
    assert all(0 <= trained[t]["AP"] <= 100 for t in trained if trained[t]["AP"] is not None)
    assert (out / "last_checkpoint").read_text() == "model_final.pth"
    assert "eta:" in (out / "log.txt").read_text()
    again = lazy(
        "--eval-only", *TINY, f"train.output_dir={out / 'eval'}",
        f"train.init_checkpoint={out / 'model_final.pth'}",
    )  # fmt: skip
    assert copypaste_results(again.stdout + again.stderr) == trained
    # The config the run saved is the run's: evaluating with it gives the same numbers.
    saved = lazy(
        "--eval-only", f"train.output_dir={out / 'eval_saved'}",
        f"train.init_checkpoint={out / 'model_final.pth'}", config=out / "config.yaml",
    )  # fmt: skip
    assert copypaste_results(saved.stdout + saved.stderr) == trained


def test_eval_only_with_shift_consistency_scores_every_shift(straight):
    out, _ = straight
    folder = out / "eval_shift"
    run = lazy(
        "--eval-only", *TINY, f"train.output_dir={folder}",
        f"train.init_checkpoint={out / 'model_final.pth'}",
        "dataloader.shift_consistency.enabled=True", "dataloader.shift_consistency.shifts=[2]",
        "dataloader.shift_consistency.protocols=[grid,worst_case]",
    )  # fmt: skip
    written = json.loads(
        (folder / "inference/synthetic_instances_val/shift_consistency.json").read_text()
    )
    for task in ("bbox", "segm"):  # the test loader's mapper reads and resizes the shifted ones
        assert {f"{task}_AP_{d}2" for d in ("right", "left", "down", "up")} <= set(written)
        assert written[f"{task}_AP_spread"] >= 0
        assert f"{task}_AP_worst_case" in set(written)
    # The worst case reads the grid's 4 shifted copies: no pass of its own.
    assert written["forward_passes_worst_case"] == 4 and written["forward_passes_total"] == 5
    printed = copypaste_results(run.stdout + run.stderr)
    trained = copypaste_results((out / "log.txt").read_text())
    # The usual evaluation is unchanged beside it.
    assert {task: printed[task] for task in trained} == trained


def test_resume_with_another_model_is_refused_before_anything_is_written(straight):
    out, _ = straight
    before = {p: (out / p).read_bytes() for p in os.listdir(out) if (out / p).is_file()}
    kind = "model.backbone.bottom_up.antialias.kind"
    run = lazy("--resume", *TINY, f"{kind}=lpf", f"train.output_dir={out}", check=False)
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1] == (
        f"error: --resume cannot continue the run in {out} with this config: {kind} is 'lpf' "
        f"here but 'pasa' in the run ({out}/config.yaml), which changes the model's parameters "
        f"or the optimizer's parameter groups. Resume with the run's config (--config-file "
        f"{out}/config.yaml) or start a new run in another train.output_dir; nothing in the "
        "folder was changed"
    )
    after = {p: (out / p).read_bytes() for p in before}
    assert {p for p in after if after[p] != before[p]} <= {"run.lock"}


def test_sigterm_then_resume_ends_with_the_uninterrupted_weights(straight, tmp_path):
    out, _ = straight
    process = subprocess.Popen(
        [sys.executable, os.path.join(TOOLS, "lazyconfig_train_net.py"), "--config-file",
         QUICK_LAZY, *TINY, f"train.output_dir={tmp_path}"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    marker, deadline = tmp_path / "last_checkpoint", time.monotonic() + 300
    while process.poll() is None and not (
        marker.exists() and marker.read_text() == "model_0000001.pth"
    ):
        assert time.monotonic() < deadline, "no checkpoint of iteration 1 within 300 s"
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    stop = re.search(r"SIGTERM received: stopped after iteration (\d+) and saved (\S+);", stderr)
    assert stop and 1 <= int(stop.group(1)) < 9, stderr[-3000:]
    assert not (tmp_path / "model_final.pth").exists()

    resumed = lazy("--resume", *TINY, f"train.output_dir={tmp_path}")
    start = re.search(r"Starting training from iteration (\d+)", resumed.stdout + resumed.stderr)
    assert int(start.group(1)) == int(stop.group(1)) + 1
    final, uninterrupted = weights(tmp_path), weights(out)
    assert final.keys() == uninterrupted.keys()
    for key in final:
        assert torch.equal(final[key], uninterrupted[key]), key


@pytest.mark.parametrize(
    "args, message",
    [
        (["train.max_iterr=3"], r"has no key train\.max_iterr; did you mean train\.max_iter\?"),
        (
            ["dataloader.train.names=[mine]"],
            r"dataloader\.train\.names names 'mine', which is "
            r"not registered.*dataloader\.register_coco",
        ),  # fmt: skip
        (
            ["model.roi_heads.num_classes=5"],
            r"model\.roi_heads\.num_classes is 5 but dataset 'synthetic_instances_\w+' has 3 "
            r"classes.*: model\.roi_heads\.num_classes=3, or dataloader\.check_num_classes=False",
        ),  # fmt: skip
        (
            ["dataloader.shift_consistency.protocols=[grid,pmk]"],
            r"dataloader\.shift_consistency\.protocols=\[.grid., .pmk.\]: list protocols among",
        ),
        (
            ["dataloader.shift_consistency.match_iou=1.5"],
            r"dataloader\.shift_consistency\.match_iou must lie in \[0, 1\], got 1\.5",
        ),
        (
            [
                "dataloader.shift_consistency.enabled=True",
                "dataloader.shift_consistency.shifts=[1,500]",
            ],
            r"dataloader\.shift_consistency\.shifts=\[1, 500\]: a shift of 500 px moves image",
        ),  # fmt: skip
        (
            [
                "dataloader.shift_consistency.enabled=True",
                "dataloader.shift_consistency.protocols=[adversarial]",
                "dataloader.shift_consistency.adversarial_max_shift=500",
            ],
            r"dataloader\.shift_consistency\.adversarial_max_shift=500: a shift of 500 px moves",
        ),  # fmt: skip
    ],
)
def test_a_mistake_in_the_overrides_is_one_line_naming_the_key(args, message, tmp_path):
    run = lazy(*args, f"train.output_dir={tmp_path}", check=False)
    assert run.returncode == 1
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and re.search(message, last), run.stderr[-2000:]
    assert "Traceback" not in run.stderr


@pytest.mark.slow
def test_two_processes_train_a_model_whose_numbers_any_process_count_reproduces(tmp_path):
    two = ["--num-gpus", "2", "--dist-url", "auto"]
    run = lazy(
        *two, *TINY, "train.max_iter=6", "lr_multiplier.scheduler.milestones=[4]",
        f"train.output_dir={tmp_path / 'train'}",
    )  # fmt: skip
    trained = copypaste_results(run.stdout + run.stderr)
    assert set(trained) == {"bbox", "segm"}
    for processes in (1, 2):
        again = lazy(
            *(two if processes == 2 else []), "--eval-only", *TINY,
            f"train.init_checkpoint={tmp_path / 'train' / 'model_final.pth'}",
            f"train.output_dir={tmp_path / f'eval{processes}'}",
        )  # fmt: skip
        assert copypaste_results(again.stdout + again.stderr) == trained, processes


DETECTRON2_COCO_DATA = os.path.join(
    os.path.dirname(detectron2.__file__), "model_zoo/configs/common/data/coco.py"
)
ON_DETECTRON2_DATA = f"""
from detectron2.config import LazyCall as L, LazyConfig
from detectron2.data import transforms as T

_quick = LazyConfig.load({QUICK_LAZY!r})
model, optimizer, train, lr_multiplier = (
    _quick.model, _quick.optimizer, _quick.train, _quick.lr_multiplier
)
dataloader = LazyConfig.load({DETECTRON2_COCO_DATA!r}).dataloader
dataloader.train.dataset.names = "synthetic_instances_train"
dataloader.test.dataset.names = "synthetic_instances_val"
dataloader.train.mapper.use_instance_mask = True
dataloader.train.mapper.instance_mask_format = "bitmask"
dataloader.train.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=(64,), sample_style="choice", max_size=64)
]
dataloader.test.mapper.augmentations = [L(T.ResizeShortestEdge)(short_edge_length=64, max_size=64)]
dataloader.train.total_batch_size = 2
dataloader.train.num_workers = dataloader.test.num_workers = 0
dataloader.evaluator.dataset_name = "synthetic_instances_val"
train.max_iter = 4
lr_multiplier.scheduler.milestones = [3]
"""


@pytest.mark.skipif(
    not os.path.isfile(DETECTRON2_COCO_DATA),
    reason="this detectron2 install ships no model-zoo configs (detectron2 0.6 from PyPI)",
)
def test_a_config_on_detectron2s_own_data_module_trains_checks_and_evaluates(tmp_path):
    config = tmp_path / "on_detectron2_data.py"
    config.write_text(ON_DETECTRON2_DATA)
    out = f"train.output_dir={tmp_path / 'out'}"
    topk = "model.roi_heads.box_predictor.test_topk_per_image=5"
    run = lazy(out, topk, config=config)
    assert set(copypaste_results(run.stdout + run.stderr)) == {"bbox", "segm"}
    wrong = lazy(out + "2", "model.roi_heads.num_classes=5", check=False, config=config)
    assert (
        wrong.stderr.strip()
        .splitlines()[-1]
        .startswith("error: model.roi_heads.num_classes is 5 but dataset 'synthetic_instances_")
    )
    unknown = lazy(out + "3", "dataloader.test.dataset.names=mine", check=False, config=config)
    assert "dataloader.test.dataset.names names 'mine', which is not registered" in unknown.stderr
