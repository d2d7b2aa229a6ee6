"""Interruptions lose nothing: SIGINT/SIGTERM checkpoint and resume exactly; a
non-finite loss stops training without writing the poisoned state."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from pasa_det.engine import NonFiniteLossError, TrainingInterrupted
from tests.helpers.paths import QUICK_INSTANCE, ROOT
from tests.helpers.scripts import run_tool
from tests.helpers.tiny_training import TINY, At, trainer


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    trainer(out, "SOLVER.CHECKPOINT_PERIOD", "1000").train()
    return torch.load(out / "model_final.pth", weights_only=True)["model"]


@pytest.mark.parametrize(
    "signum", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)]
)
def test_signal_checkpoints_and_resume_ends_with_the_same_weights(straight, tmp_path, signum):
    interrupted = trainer(
        tmp_path,
        "SOLVER.CHECKPOINT_PERIOD",
        "1000",
        hooks=[At(1, lambda t: os.kill(os.getpid(), signum))],
    )
    with pytest.raises(TrainingInterrupted) as stop:
        interrupted.train()
    assert str(stop.value) == (
        f"{signal.Signals(signum).name} received: stopped after iteration 1 and saved "
        f"{tmp_path / 'model_0000001.pth'}; continue with the same command and --resume"
    )
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"
    assert signal.getsignal(signum) in (
        signal.SIG_DFL,
        signal.default_int_handler,
    )  # handlers restored
    resumed = trainer(tmp_path, "SOLVER.CHECKPOINT_PERIOD", "1000", resume=True)
    assert resumed.start_iter == 2
    resumed.train()
    final = torch.load(tmp_path / "model_final.pth", weights_only=True)["model"]
    assert final.keys() == straight.keys()
    for key in straight:
        assert torch.equal(final[key], straight[key]), key


def test_non_finite_loss_stops_naming_iteration_and_terms_and_saves_nothing_after_it(tmp_path):
    def poison(t):
        forward = t.model.forward

        def nan_mask_loss(batch):
            losses = forward(batch)
            losses["loss_mask"] = losses["loss_mask"] * float("nan")
            return losses

        t.model.forward = nan_mask_loss

    t = trainer(
        tmp_path, "SOLVER.CHECKPOINT_PERIOD", "1", "SOLVER.MAX_ITER", "3", hooks=[At(2, poison)]
    )
    with pytest.raises(
        NonFiniteLossError,
        match=r"training diverged at iteration 2 \(loss_mask=nan\)\..*the last checkpoint is "
        r".*model_0000001\.pth\. To try: a lower SOLVER\.BASE_LR \(now 0\.02\)",
    ):
        t.train()
    assert sorted(f for f in os.listdir(tmp_path) if f.endswith(".pth")) == [
        "model_0000000.pth",
        "model_0000001.pth",
    ]
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"
    good = torch.load(tmp_path / "model_0000001.pth", weights_only=True)["model"]
    assert all(torch.isfinite(v).all() for v in good.values() if v.is_floating_point())


def test_detectron2s_own_divergence_check_stops_every_process_with_advice(tmp_path):
    def poison(t):
        def diverged(batch):
            raise FloatingPointError(
                "Predicted boxes or scores contain Inf/NaN. Training has diverged."
            )

        t.model.forward = diverged

    t = trainer(tmp_path, "SOLVER.CHECKPOINT_PERIOD", "1", hooks=[At(1, poison)])
    with pytest.raises(
        NonFiniteLossError,
        match=r"^training diverged at iteration 1 \(detectron2: Predicted boxes or scores "
        r"contain Inf/NaN\. Training has diverged\)\. It stopped without updating",
    ):
        t.train()
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000000.pth"


def test_resume_with_data_loader_workers_ends_with_the_same_weights(tmp_path):
    """Mapped in a worker process, the data no longer reseeds the main process's RNGs,
    from which the model draws its RPN and ROI samples; the step seeds them itself."""
    opts = ["SOLVER.CHECKPOINT_PERIOD", "1000", "DATALOADER.NUM_WORKERS", "1"]
    trainer(tmp_path / "straight", *opts).train()
    stop = At(2, lambda t: os.kill(os.getpid(), signal.SIGTERM))
    with pytest.raises(TrainingInterrupted):
        trainer(tmp_path / "cut", *opts, hooks=[stop]).train()
    trainer(tmp_path / "cut", *opts, resume=True).train()
    straight, resumed = (
        torch.load(tmp_path / run / "model_final.pth", weights_only=True)["model"]
        for run in ("straight", "cut")
    )
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key


def test_divergence_at_the_last_iteration_is_not_evaluated(tmp_path):
    def poison(t):
        forward = t.model.forward
        t.model.forward = lambda batch: {k: v * float("inf") for k, v in forward(batch).items()}

    t = trainer(
        tmp_path,
        "DATASETS.TEST",
        "('synthetic_instances_val',)",
        "SOLVER.MAX_ITER",
        "2",
        hooks=[At(1, poison)],
    )
    with pytest.raises(NonFiniteLossError, match="iteration 1"):
        t.train()
    assert not (tmp_path / "inference").exists()
    assert not (tmp_path / "model_final.pth").exists()


def test_train_net_explains_a_divergence_in_one_line(tmp_path):
    run = run_tool(
        "train_net.py",
        "--config-file",
        QUICK_INSTANCE,
        *TINY,
        "SOLVER.BASE_LR",
        "1e12",
        "SOLVER.WARMUP_ITERS",
        "0",
        "SOLVER.CLIP_GRADIENTS.ENABLED",
        "False",
        "SOLVER.MAX_ITER",
        "20",
        "OUTPUT_DIR",
        tmp_path,
    )
    assert run.returncode == 1
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("error: training diverged at iteration "), run.stderr[-2000:]
    assert "SOLVER.CLIP_GRADIENTS.ENABLED True" in last
    assert "Traceback" not in run.stderr + run.stdout
    log = (tmp_path / "log.txt").read_text()
    assert "Training stopped: training diverged at iteration" in log


@pytest.mark.slow
def test_train_net_exits_on_sigterm_with_a_checkpoint_and_how_to_resume(tmp_path):
    process = subprocess.Popen(
        [
            sys.executable,
            os.path.join(ROOT, "tools", "train_net.py"),
            "--config-file",
            QUICK_INSTANCE,
            *TINY,
            "SOLVER.MAX_ITER",
            "1000",
            "SOLVER.CHECKPOINT_PERIOD",
            "1000",
            "OUTPUT_DIR",
            str(tmp_path),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    log, deadline = tmp_path / "log.txt", time.monotonic() + 300
    while process.poll() is None and not (
        log.exists() and "Starting training from iteration 0" in log.read_text()
    ):
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("training did not start within 300 s")
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    saved = (tmp_path / "last_checkpoint").read_text()
    assert stderr.strip().splitlines()[-1] == (
        f"SIGTERM received: stopped after iteration {int(saved[6:13])} and saved {tmp_path / saved}; "
        "continue with the same command and --resume"
    )
    assert torch.load(tmp_path / saved, weights_only=True)["iteration"] == int(saved[6:13])
