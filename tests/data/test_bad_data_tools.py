"""Bad data in a user's COCO-format set, through tools/train_net.py as a user runs it: each
kind is left out with one warning naming it, or ends the run in one line naming the file
and the fix, never with a traceback."""

import json
import os

import pytest

from tests.helpers.paths import QUICK_INSTANCE
from tests.helpers.scripts import run_tool
from tests.helpers.user_dataset import write_user_dataset
from tests.tools.test_own_data import TINY


def user_set(root, edit=None):
    """A user's set under `root`, its annotations changed by `edit(data)`; the
    DATASETS.REGISTER_COCO value that registers it as 'mine'."""
    json_file, images = write_user_dataset(str(root), num_images=6)
    if edit:
        with open(json_file) as f:
            data = json.load(f)
        edit(data)
        with open(json_file, "w") as f:
            json.dump(data, f)
    return json_file, images, f"[('mine', '{json_file}', '{images}')]"


def train_net(output, register, *opts, test="mine"):
    return run_tool(
        "train_net.py", "--config-file", QUICK_INSTANCE, "DATASETS.REGISTER_COCO", register,
        "DATASETS.TRAIN", "('mine',)", "DATASETS.TEST", f"('{test}',)", "OUTPUT_DIR", output,
        *TINY, "SOLVER.MAX_ITER", "1", *opts, timeout=300,
    )  # fmt: skip


def error_line(run):
    assert run.returncode == 1, run.stderr[-3000:]
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    return run.stderr.strip().splitlines()[-1]


def test_malformed_annotations_are_left_out_of_training_and_evaluation_in_one_warning(tmp_path):
    """A 2-point polygon made pycocotools fail after the inference (TypeError: Argument 'bb'
    has incorrect type); boxes of width 0 and -5 were used without a word."""

    def malform(data):
        first, second, third = data["annotations"][:3]
        first["segmentation"] = [[10, 10, 20, 20]]
        second["bbox"][2] = 0
        third["bbox"][2] = -5

    json_file, _, register = user_set(tmp_path / "data", malform)
    run = train_net(tmp_path / "out", register)
    assert run.returncode == 0, run.stderr[-3000:]
    warnings = [line for line in run.stdout.splitlines() if "malformed annotation" in line]
    assert len(warnings) == 1  # training and evaluation leave out the same three, named once
    assert warnings[0].endswith(
        f"dataset 'mine' ({json_file}): 3 malformed annotations left out, in training and "
        "evaluation alike: id 1 (000.png): a polygon of 2 points; id 2 (000.png): a box of "
        "width 0 and height 20.0; id 3 (000.png): a box of width -5 and height 32.0. Fix them "
        f"in {json_file} to use them."
    )
    assert "copypaste: Task: segm" in (tmp_path / "out" / "log.txt").read_text()


def test_an_unreadable_evaluation_image_is_one_line_also_from_a_loader_worker(tmp_path):
    """It was an 80-line traceback after the inference (BadImageError, an OSError), or with
    DATALOADER.NUM_WORKERS > 0 torch's "Caught … in DataLoader worker process 0"."""
    json_file, images, register = user_set(tmp_path / "data")
    with open(os.path.join(images, "004.jpg"), "r+b") as f:
        f.truncate(os.path.getsize(f.name) // 2)
    run = train_net(tmp_path / "out", register, "DATALOADER.NUM_WORKERS", "1", "--eval-only")
    line = error_line(run)
    assert line.startswith(f"error: cannot read {images}/004.jpg: OSError: image file is truncated")
    assert line.endswith(
        "Evaluation does not skip images (the metrics would describe a smaller set): replace "
        f"the file, or remove it and its annotations from {json_file}"
    )


@pytest.mark.parametrize("role", ["training", "evaluation"])
def test_a_set_without_annotations_is_one_line_before_training(tmp_path, role):
    """Training stopped in AssertionError: No valid data found in mine; evaluation would
    have scored nothing, after training."""
    json_file, images, register = user_set(tmp_path / "data")
    empty_json, empty_images, _ = user_set(tmp_path / "empty", lambda d: d["annotations"].clear())
    if role == "training":
        register, test = f"[('mine', '{empty_json}', '{empty_images}')]", "mine"
    else:
        register, test = register[:-1] + f", ('empty', '{empty_json}', '{empty_images}')]", "empty"
    run = train_net(tmp_path / "out", register, test=test)
    to = "train on" if role == "training" else "evaluate against"
    assert error_line(run).startswith(
        f"error: dataset '{test}' ({empty_json}) has no annotations to {to}: "
    )
    assert "Starting training" not in (tmp_path / "out" / "log.txt").read_text()


def test_shifts_that_no_image_survives_stop_before_training(tmp_path):
    """SHIFTS [1000] on ~100-px images ended, after training and inference, in KeyError: 'segm'."""
    _, _, register = user_set(tmp_path / "data")
    run = train_net(
        tmp_path / "out", register,
        "TEST.SHIFT_CONSISTENCY.ENABLED", "True", "TEST.SHIFT_CONSISTENCY.SHIFTS", "[1000]",
    )  # fmt: skip
    assert error_line(run) == (
        "error: TEST.SHIFT_CONSISTENCY.SHIFTS=[1000]: a shift of 1000 px moves image 000.png of "
        "'mine' (96x128 px) wholly out of frame. Shifts are px of the original image and must "
        "stay below every image's width and height: use shifts up to 95 (the default is [1, 2, "
        "5, 10, 20])"
    )


def test_an_adversarial_shift_that_no_image_survives_stops_before_training(tmp_path):
    _, _, register = user_set(tmp_path / "data")
    run = train_net(
        tmp_path / "out", register,
        "TEST.SHIFT_CONSISTENCY.ENABLED", "True",
        "TEST.SHIFT_CONSISTENCY.PROTOCOLS", "['adversarial']",
        "TEST.SHIFT_CONSISTENCY.ADVERSARIAL_MAX_SHIFT", "96",
    )  # fmt: skip
    assert error_line(run).startswith(
        "error: TEST.SHIFT_CONSISTENCY.ADVERSARIAL_MAX_SHIFT=96: a shift of 96 px moves image "
        "000.png of 'mine' (96x128 px) wholly out of frame."
    )
    assert "Starting training" not in (tmp_path / "out" / "log.txt").read_text()
