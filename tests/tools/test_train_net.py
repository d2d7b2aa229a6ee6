"""tools/train_net.py end to end on the embedded synthetic set (CPU, a few iterations)."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from pasa_det.analysis.printed_results import copypaste_results
from tests.helpers.paths import QUICK_INSTANCE, ROOT
from tests.helpers.scripts import run_tool

SMALL = ["SOLVER.IMS_PER_BATCH", "2", "DATALOADER.NUM_WORKERS", "0", "SOLVER.WARMUP_ITERS", "2"]


def train_net(*args, check=True):
    run = run_tool("train_net.py", "--config-file", QUICK_INSTANCE, *args)
    if check and run.returncode != 0:
        raise AssertionError(f"train_net failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
    return run


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("train"))
    train_net(
        *SMALL,
        "SOLVER.MAX_ITER",
        "4",
        "SOLVER.CHECKPOINT_PERIOD",
        "2",
        "DATASETS.TEST",
        "()",
        "OUTPUT_DIR",
        out,
    )
    return out


def test_training_writes_checkpoints_metrics_and_events(trained):
    files = os.listdir(trained)
    assert {
        "model_0000001.pth",
        "model_0000003.pth",
        "model_final.pth",
        "last_checkpoint",
        "metrics.json",
    } <= set(files)
    assert any(f.startswith("events.out.tfevents") for f in files)
    iterations = [
        json.loads(line)["iteration"] for line in open(os.path.join(trained, "metrics.json"))
    ]
    assert max(iterations) == 3
    with open(os.path.join(trained, "log.txt")) as f:
        assert "eta:" in f.read()


def test_resume_continues_iteration_count_optimizer_and_schedule(trained):
    run = train_net(
        "--resume",
        *SMALL,
        "SOLVER.MAX_ITER",
        "6",
        "SOLVER.CHECKPOINT_PERIOD",
        "2",
        "DATASETS.TEST",
        "()",
        "OUTPUT_DIR",
        trained,
    )
    assert "Starting training from iteration 4" in run.stderr + run.stdout
    checkpoint = torch.load(os.path.join(trained, "model_final.pth"), weights_only=False)
    assert checkpoint["iteration"] == 5
    assert checkpoint["trainer"]["optimizer"]["state"]  # SGD momentum buffers
    assert checkpoint["trainer"]["hooks"]["LRScheduler"]["last_epoch"] == 6
    iterations = [
        json.loads(line)["iteration"] for line in open(os.path.join(trained, "metrics.json"))
    ]
    assert max(iterations) == 5


@pytest.mark.slow
def test_eval_only_two_cpu_processes_give_the_same_ap_and_shift_consistency_as_one(trained):
    weights = os.path.join(trained, "model_final.pth")
    # Few detections per image keep an untrained model's evaluation fast.
    common = [
        "--eval-only",
        "MODEL.WEIGHTS",
        weights,
        "DATALOADER.NUM_WORKERS",
        "0",
        "TEST.DETECTIONS_PER_IMAGE",
        "5",
        "TEST.SHIFT_CONSISTENCY.ENABLED",
        "True",
        "TEST.SHIFT_CONSISTENCY.SHIFTS",
        "[2]",
        "TEST.SHIFT_CONSISTENCY.SCORE_THRESH",
        "0.0",
    ]
    one = train_net(*common, "OUTPUT_DIR", os.path.join(trained, "eval1"))
    two = train_net(
        "--num-gpus",
        "2",
        "--dist-url",
        "auto",
        *common,
        "OUTPUT_DIR",
        os.path.join(trained, "eval2"),
    )
    results_one = copypaste_results(one.stdout + one.stderr)
    results_two = copypaste_results(two.stdout + two.stderr)
    assert set(results_one) == {"bbox", "segm", "shift_consistency"}
    assert results_one == results_two
    shift = results_one["shift_consistency"]
    assert {
        "segm_AP_0",
        "segm_AP_right2",
        "segm_AP_left2",
        "segm_AP_down2",
        "segm_AP_up2",
        "segm_AP_spread",
    } <= set(shift)
    assert shift["segm_AP_0"] == results_one["segm"]["AP"]
    assert 0 <= shift["mask_iou"] <= 100 and 0 <= shift["unmatched"] <= 100
    # The same detections, gathered from two processes (an untrained model's AP is ~0,
    # so compare what was scored too).
    detections = [
        sorted(
            json.dumps(d, sort_keys=True)
            for d in json.load(
                open(
                    os.path.join(
                        trained,
                        folder,
                        "inference",
                        "synthetic_instances_val",
                        "coco_instances_results.json",
                    )
                )
            )
        )
        for folder in ("eval1", "eval2")
    ]
    assert detections[0] and detections[0] == detections[1]
    assert "on 2 devices" in two.stdout + two.stderr


def test_two_cpu_processes_train_and_write_one_checkpoint(tmp_path):
    run = train_net(
        "--num-gpus",
        "2",
        "--dist-url",
        "auto",
        *SMALL,
        "SOLVER.MAX_ITER",
        "3",
        "SOLVER.CHECKPOINT_PERIOD",
        "1000",
        "DATASETS.TEST",
        "()",
        "OUTPUT_DIR",
        str(tmp_path),
    )
    assert (
        "starting 2 CPU processes (gloo)" in run.stderr
        and "World size: 2" in run.stdout + run.stderr
    )
    assert sorted(f for f in os.listdir(tmp_path) if f.endswith(".pth")) == ["model_final.pth"]
    checkpoint = torch.load(tmp_path / "model_final.pth", weights_only=False)
    assert checkpoint["iteration"] == 2
    assert not any(k.startswith("module.") for k in checkpoint["model"])


def test_torchrun_starts_a_gloo_job_without_gpus(tmp_path):
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            os.path.join(ROOT, "tools", "train_net.py"),
            "--config-file",
            QUICK_INSTANCE,
            *SMALL,
            "SOLVER.MAX_ITER",
            "2",
            "SOLVER.CHECKPOINT_PERIOD",
            "1000",
            "DATASETS.TEST",
            "()",
            "OUTPUT_DIR",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "World size: 2" in run.stdout + run.stderr
    assert torch.load(tmp_path / "model_final.pth", weights_only=False)["iteration"] == 1


def test_missing_config_file_is_a_clear_error():
    run = run_tool("train_net.py", "--config-file", "configs/nope.yaml", timeout=300)
    assert run.returncode != 0
    assert re.search(r"nope\.yaml", run.stderr)


def test_run_killed_mid_training_and_resumed_ends_with_the_same_weights(tmp_path):
    args = [*SMALL, "SOLVER.MAX_ITER", "8", "SOLVER.CHECKPOINT_PERIOD", "3", "DATASETS.TEST", "()"]
    train_net(*args, "OUTPUT_DIR", str(tmp_path / "straight"))

    interrupted = tmp_path / "interrupted"
    process = subprocess.Popen(
        [
            sys.executable,
            os.path.join(ROOT, "tools", "train_net.py"),
            "--config-file",
            QUICK_INSTANCE,
            *args,
            "OUTPUT_DIR",
            str(interrupted),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    marker, deadline = interrupted / "last_checkpoint", time.monotonic() + 300
    while process.poll() is None and not (
        marker.exists() and marker.read_text().strip() == "model_0000002.pth"
    ):
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("no checkpoint of iteration 2 within 300 s")
        time.sleep(0.02)
    process.kill()  # as a crash or a preemption would
    assert process.wait() == -signal.SIGKILL, "training ended before it could be interrupted"
    assert not (interrupted / "model_final.pth").exists()

    run = train_net("--resume", *args, "OUTPUT_DIR", str(interrupted))
    start = int(
        re.search(r"Starting training from iteration (\d+)", run.stdout + run.stderr).group(1)
    )
    assert 0 < start < 8
    straight = torch.load(tmp_path / "straight" / "model_final.pth", weights_only=False)["model"]
    resumed = torch.load(interrupted / "model_final.pth", weights_only=False)["model"]
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key


def test_resume_without_a_checkpoint_warns_where_it_looked_in_the_log(tmp_path):
    fresh = train_net(
        *SMALL,
        "SOLVER.MAX_ITER",
        "1",
        "DATASETS.TEST",
        "()",
        "OUTPUT_DIR",
        str(tmp_path / "new"),
        "--resume",
    )
    assert "--resume found no checkpoint" not in fresh.stderr  # nothing there before
    (tmp_path / "metrics.json").write_text('{"iteration": 19}\n')  # an earlier run's trace
    train_net(
        *SMALL,
        "SOLVER.MAX_ITER",
        "1",
        "DATASETS.TEST",
        "()",
        "OUTPUT_DIR",
        str(tmp_path),
        "--resume",
    )
    expected = (
        f"--resume found no checkpoint to continue: {tmp_path} has no last_checkpoint file, "
        "though an earlier run left metrics.json there. Training starts at iteration 0 from "
        "scratch."
    )
    log = (tmp_path / "log.txt").read_text()
    line = next(line for line in log.splitlines() if "--resume found no checkpoint" in line)
    assert re.match(r"\[\d\d/\d\d \d\d:\d\d:\d\d\] pasa\.engine\.training WARNING: ", line)
    assert line.endswith(expected)
