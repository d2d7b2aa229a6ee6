"""Faults around a run end in one line and lose nothing: a busy OUTPUT_DIR, --resume with
a config that cannot continue the run, signals during evaluation, a loss that explodes
while staying finite, an evaluation that gives no number."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from detectron2.engine import HookBase
from detectron2.evaluation import COCOEvaluator, DatasetEvaluator, DatasetEvaluators

from pasa_det.config import load_config
from pasa_det.config.lazy import load_lazy_config
from pasa_det.engine import (
    EvaluationInterrupted,
    NonFiniteLossError,
    Trainer,
    TrainingInterrupted,
)
from pasa_det.engine.output_lock import OutputDirBusy, lock_output_dir, release_output_dir
from pasa_det.engine.resume_check import (
    LAZY_NOT_STRUCTURAL,
    incompatible_keys,
    lazy_structure,
    yacs_structure,
)
from pasa_det.evaluation.headline_metrics import EvaluationFailed, check_headline_metrics
from tests.helpers.paths import QUICK_INSTANCE, ROOT
from tests.helpers.scripts import run_tool
from tests.helpers.tiny_training import TINY, At, trainer

# A quick evaluation: 64-px test images, few detections each.
EVAL = [
    "DATASETS.TEST", "('synthetic_instances_val',)", "INPUT.MIN_SIZE_TEST", "64",
    "INPUT.MAX_SIZE_TEST", "64", "TEST.DETECTIONS_PER_IMAGE", "5",
]  # fmt: skip


def train_net(*args, **kwargs):
    return run_tool("train_net.py", "--config-file", QUICK_INSTANCE, *args, **kwargs)


def last_line(run) -> str:
    assert "Traceback" not in run.stderr + run.stdout, run.stderr[-3000:]
    return run.stderr.strip().splitlines()[-1]


# ---- a busy OUTPUT_DIR ----
def hold_lock(folder):
    code = (
        "import sys, time; from pasa_det.engine.output_lock import lock_output_dir; "
        "lock_output_dir(sys.argv[1]); print('locked', flush=True); time.sleep(600)"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(folder)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline() == "locked\n"
    return holder


def test_a_second_run_into_a_busy_output_dir_stops_at_once_naming_the_other(tmp_path):
    holder = hold_lock(tmp_path)
    try:
        run = train_net(*TINY, "OUTPUT_DIR", tmp_path)
        assert run.returncode == 1
        line = last_line(run)
        assert line.startswith(f"error: OUTPUT_DIR {tmp_path} is in use by another run (pid ")
        assert f"pid {holder.pid} on host " in line and "set OUTPUT_DIR to another folder" in line
        assert sorted(os.listdir(tmp_path)) == ["run.lock"]  # no config.yaml, log or model
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_left_by_a_dead_run_does_not_block(tmp_path):
    holder = hold_lock(tmp_path)
    with pytest.raises(OutputDirBusy, match=f"pid {holder.pid} on host"):
        lock_output_dir(str(tmp_path))
    holder.kill()
    holder.wait()
    lock_output_dir(str(tmp_path))  # the kernel released the dead run's lock
    lock_output_dir(str(tmp_path))  # the same process again: its own run
    assert f"pid {os.getpid()} on host" in (tmp_path / "run.lock").read_text()
    release_output_dir(str(tmp_path))


# ---- --resume with a config that cannot continue the run ----
def quick(*opts):
    cfg = load_config(QUICK_INSTANCE, list(opts))
    cfg.freeze()
    return cfg


def test_keys_that_change_the_model_or_its_parameter_groups_are_named_with_both_values():
    run = quick()
    find = lambda *opts: incompatible_keys(  # noqa: E731
        run, quick(*opts), yacs_structure(Trainer.build_model, Trainer.build_optimizer)
    )
    assert find("MODEL.ANTIALIAS.GROUP", "4") == [("MODEL.ANTIALIAS.GROUP", 4, 8)]
    assert find("MODEL.RESNETS.DEPTH", "34", "SOLVER.MAX_ITER", "9") == [
        ("MODEL.RESNETS.DEPTH", 34, 18)
    ]
    # Biases at another learning rate: a parameter group of their own.
    assert find("SOLVER.BIAS_LR_FACTOR", "2.0") == [("SOLVER.BIAS_LR_FACTOR", 2.0, 1.0)]
    # Continuing with another schedule, learning rate or data is fine.
    assert (
        find("SOLVER.MAX_ITER", "9", "SOLVER.BASE_LR", "0.01", "INPUT.MIN_SIZE_TRAIN", "(96,)")
        == []
    )


def test_lazy_keys_that_change_the_model_are_named_and_the_schedule_is_not():
    lazy = QUICK_INSTANCE.replace(".yaml", ".py")
    run = load_lazy_config(lazy)

    def find(*overrides):
        return incompatible_keys(
            run, load_lazy_config(lazy, overrides), lazy_structure, LAZY_NOT_STRUCTURAL
        )

    kind = "model.backbone.bottom_up.antialias.kind"
    assert find(f"{kind}=lpf", "train.max_iter=9") == [(kind, "lpf", "pasa")]
    assert find("model.roi_heads.num_classes=5") == [("model.roi_heads.num_classes", 5, 3)]
    assert (
        find("train.max_iter=9", "optimizer.lr=0.01", "dataloader.train.total_batch_size=2") == []
    )


def test_resume_with_another_antialias_type_is_refused_before_anything_is_written(tmp_path):
    first = train_net(*TINY, "SOLVER.MAX_ITER", "2", "OUTPUT_DIR", tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    before = {p: (tmp_path / p).read_bytes() for p in os.listdir(tmp_path) if p != "run.lock"}
    run = train_net("--resume", *TINY, "SOLVER.MAX_ITER", "4", "MODEL.ANTIALIAS.TYPE", "lpf",
                    "OUTPUT_DIR", tmp_path)  # fmt: skip
    assert run.returncode == 1
    assert last_line(run) == (
        f"error: --resume cannot continue the run in {tmp_path} with this config: "
        f"MODEL.ANTIALIAS.TYPE is 'lpf' here but 'pasa' in the run ({tmp_path}/config.yaml), "
        "which changes the model's parameters or the optimizer's parameter groups. Resume with "
        f"the run's config (--config-file {tmp_path}/config.yaml) or start a new run in another "
        "OUTPUT_DIR; nothing in the folder was changed"
    )
    after = {p: (tmp_path / p).read_bytes() for p in os.listdir(tmp_path) if p != "run.lock"}
    assert after == before


# ---- signals during evaluation ----
class SignalWhenEvaluating(HookBase):
    """Before iteration `iteration`, make the model send `signum` to its own process when it
    runs in eval mode for the `forward`-th time (shift consistency: image 1's plain pass is
    the first, its first shifted copy the second)."""

    def __init__(self, iteration, signum=signal.SIGTERM, forward=1):
        self.iteration, self.signum, self.forward = iteration, signum, forward

    def before_step(self):
        if self.trainer.iter != self.iteration:
            return
        model, forward, calls = self.trainer.model, self.trainer.model.forward, []

        def forward_then_signal(batch):
            if not model.training:
                calls.append(True)
                if len(calls) == self.forward:
                    os.kill(os.getpid(), self.signum)
            return forward(batch)

        model.forward = forward_then_signal


def result_files(folder):
    inference = folder / "inference"
    return sorted(str(p.relative_to(inference)) for p in inference.rglob("*") if p.is_file())


def test_signal_during_a_periodic_evaluation_saves_the_model_and_stops(tmp_path):
    t = trainer(tmp_path, *EVAL, "TEST.EVAL_PERIOD", "2", "SOLVER.CHECKPOINT_PERIOD", "1000",
                hooks=[SignalWhenEvaluating(1)])  # fmt: skip
    start = time.monotonic()
    with pytest.raises(TrainingInterrupted) as stop:
        t.train()
    assert time.monotonic() - start < 120
    assert stop.value.iteration == 1 and stop.value.signum == signal.SIGTERM
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"
    assert torch.load(tmp_path / "model_0000001.pth", weights_only=True)["iteration"] == 1
    assert result_files(tmp_path) == []
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handlers restored


@pytest.mark.parametrize("shift_consistency", [False, True])
def test_signal_during_the_final_evaluation_stops_it_and_keeps_model_final(
    tmp_path, shift_consistency
):
    shift = ["TEST.SHIFT_CONSISTENCY.ENABLED", "True", "TEST.SHIFT_CONSISTENCY.SHIFTS", "[2]"]
    t = trainer(tmp_path, *EVAL, "SOLVER.MAX_ITER", "2", *(shift if shift_consistency else []),
                hooks=[SignalWhenEvaluating(1, forward=2 if shift_consistency else 1)])  # fmt: skip
    with pytest.raises(EvaluationInterrupted) as stop:
        t.train()
    final = tmp_path / "model_final.pth"
    assert str(stop.value) == (
        "SIGTERM received during evaluation: stopped it and kept none of its results; "
        f"{final} is complete: evaluate it with --eval-only MODEL.WEIGHTS {final}"
    )
    assert torch.load(final, weights_only=True)["iteration"] == 1
    assert result_files(tmp_path) == []


class SignalAtEvaluate(DatasetEvaluator):
    """Signals its process once the evaluators before it have written their results."""

    def evaluate(self):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)  # the handler raises before this ends


def test_results_written_before_the_signal_are_removed_and_others_kept(tmp_path):
    cfg = quick(*EVAL, "OUTPUT_DIR", str(tmp_path))
    model = Trainer.build_model(cfg)
    earlier = tmp_path / "inference" / "earlier.json"
    earlier.parent.mkdir()
    earlier.write_text("{}")
    out = tmp_path / "inference" / "synthetic_instances_val"
    coco = COCOEvaluator("synthetic_instances_val", output_dir=str(out), use_fast_impl=False)
    evaluators = [DatasetEvaluators([coco, SignalAtEvaluate()])]
    with pytest.raises(EvaluationInterrupted, match="^SIGINT received during evaluation"):
        Trainer.test(cfg, model, evaluators)
    assert result_files(tmp_path) == ["earlier.json"]


@pytest.mark.slow
def test_sigterm_during_eval_only_exits_143_within_seconds_without_results(tmp_path):
    process = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "tools", "train_net.py"), "--config-file",
         QUICK_INSTANCE, "--eval-only", *TINY, *EVAL, "MODEL.WEIGHTS_ALLOW_MISSING_FILTERS",
         "True", "OUTPUT_DIR", str(tmp_path)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    log, deadline = tmp_path / "log.txt", time.monotonic() + 300
    while process.poll() is None and "Start inference on" not in (
        log.read_text() if log.exists() else ""
    ):
        assert time.monotonic() < deadline, "evaluation did not start within 300 s"
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    _, stderr = process.communicate(timeout=60)
    assert time.monotonic() - sent < 15
    assert process.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    assert stderr.strip().splitlines()[-1] == (
        "SIGTERM received during evaluation: stopped it and kept none of its results; "
        "run it again to evaluate"
    )
    assert "Traceback" not in stderr
    assert not (tmp_path / "inference").exists() or result_files(tmp_path) == []


# ---- divergence that stays finite, and evaluations without a number ----
def test_a_loss_exploding_past_the_factor_stops_training_with_the_divergence_line(tmp_path):
    def explode(t):
        forward = t.model.forward
        t.model.forward = lambda batch: {k: v * 1e5 for k, v in forward(batch).items()}

    t = trainer(tmp_path, "SOLVER.CHECKPOINT_PERIOD", "1", hooks=[At(2, explode)])
    with pytest.raises(
        NonFiniteLossError,
        match=r"^training diverged at iteration 2 \(total loss \S+, over "
        r"SOLVER\.DIVERGENCE_LOSS_FACTOR 1000 times the first iteration's \S+\)\. It stopped",
    ):
        t.train()
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"


def test_train_net_stops_a_finite_explosion_of_the_loss_in_one_line(tmp_path):
    run = train_net(*TINY, "SOLVER.MAX_ITER", "20", "SOLVER.BASE_LR", "1e4", "OUTPUT_DIR", tmp_path)
    assert run.returncode == 1
    assert last_line(run).startswith("error: training diverged at iteration ")
    assert "over SOLVER.DIVERGENCE_LOSS_FACTOR 1000 times the first iteration's" in run.stderr
    assert not (tmp_path / "model_final.pth").exists()


def test_headline_metrics_that_are_nan_fail_and_secondary_ones_do_not():
    nan = float("nan")
    check_headline_metrics({"bbox": {"AP": 1.0, "APl": nan}, "segm": {"AP": 0.0}})
    check_headline_metrics({})
    with pytest.raises(EvaluationFailed, match=r"no number for segm AP \(NaN\)"):
        check_headline_metrics({"bbox": {"AP": 1.0}, "segm": {"AP": nan}})
    with pytest.raises(EvaluationFailed, match="no number for sem_seg mIoU on b"):
        check_headline_metrics({"a": {"sem_seg": {"mIoU": 5.0}}, "b": {"sem_seg": {"mIoU": nan}}})


def test_eval_only_of_a_model_that_predicts_nothing_is_an_error(tmp_path):
    run = train_net("--eval-only", *TINY, *EVAL, "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "1.0",
                    "MODEL.WEIGHTS_ALLOW_MISSING_FILTERS", "True", "OUTPUT_DIR", tmp_path)  # fmt: skip
    assert run.returncode == 1
    assert last_line(run).startswith(
        "error: the evaluation gave no number for bbox AP (NaN): detectron2 reports NaN "
        "when the model predicts nothing at all"
    )
