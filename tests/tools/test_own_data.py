"""A user's own data from the command line only (docs/GETTING_STARTED.md, "Your own
data"), and the failures a new user meets there, each one line that says what to change."""

import os
import re

import pytest

from tests.helpers.paths import QUICK_INSTANCE, QUICK_SEMANTIC
from tests.helpers.scripts import run_tool
from tests.helpers.user_dataset import write_user_dataset

# fmt: off
TINY = [
    "SOLVER.IMS_PER_BATCH", "2", "SOLVER.WARMUP_ITERS", "1", "DATALOADER.NUM_WORKERS", "0",
    "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "96", "INPUT.MIN_SIZE_TEST", "64",
    "INPUT.MAX_SIZE_TEST", "96", "TEST.DETECTIONS_PER_IMAGE", "5",
    # A few iterations score below the default threshold: keep detections to evaluate.
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",
]
# fmt: on


@pytest.fixture(scope="module")
def user_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("user_data")
    json_file, images = write_user_dataset(str(root))
    register = f"[('mine', '{json_file}', '{images}')]"
    return {"register": register, "images": images, "root": root}


def own_data(user_data, output, *extra):
    return [
        "DATASETS.REGISTER_COCO", user_data["register"], "DATASETS.TRAIN", "('mine',)",
        "DATASETS.TEST", "('mine',)", "OUTPUT_DIR", str(output), *TINY, *extra,
    ]  # fmt: skip


def test_own_coco_data_trains_evaluates_and_demos_from_the_command_line(user_data, tmp_path):
    run = run_tool(
        "train_net.py", "--config-file", QUICK_INSTANCE,
        *own_data(user_data, tmp_path, "SOLVER.MAX_ITER", "2"),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    log = (tmp_path / "log.txt").read_text()
    per_category = log.split("Per-category segm AP")[1]
    assert re.search(r"\| square +\| [\d.]+ +\| triangle +\| [\d.]+ +\| disc ", per_category)
    demo = run_tool(
        "demo.py", "--config-file", QUICK_INSTANCE, "--input", user_data["images"],
        "--output", str(tmp_path / "demo"),
        # overrides after --input are overrides, not files
        *own_data(user_data, tmp_path), "MODEL.WEIGHTS", str(tmp_path / "model_final.pth"),
    )  # fmt: skip
    assert demo.returncode == 0, demo.stderr[-3000:]
    drawn = sorted(os.listdir(tmp_path / "demo"))
    assert drawn == sorted(os.listdir(user_data["images"]))  # 000.png and 003.png kept apart


@pytest.mark.slow
def test_own_coco_data_with_two_cpu_processes(user_data, tmp_path):
    run = run_tool(
        "train_net.py", "--num-gpus", "2", "--config-file", QUICK_INSTANCE,
        *own_data(user_data, tmp_path, "SOLVER.MAX_ITER", "2"),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Per-category segm AP" in (tmp_path / "log.txt").read_text()


def test_own_cityscapes_layout_data_trains_and_evaluates(tmp_path):
    from pasa_det.data.synthetic_generator import write_semantic_split

    write_semantic_split(str(tmp_path / "city"), "train", 4, seed=7, height=64, width=96)
    image_dir = tmp_path / "city" / "leftImg8bit" / "train"
    gt_dir = tmp_path / "city" / "gtFine" / "train"
    register = f"[('city_sem', '{image_dir}', '{gt_dir}', 'semantic')]"
    run = run_tool(
        "train_net.py", "--config-file", QUICK_SEMANTIC,
        "DATASETS.REGISTER_CITYSCAPES", register, "DATASETS.TRAIN", "('city_sem',)",
        "DATASETS.TEST", "('city_sem',)", "MODEL.SEM_SEG_HEAD.NUM_CLASSES", "19",
        "SOLVER.MAX_ITER", "1", "OUTPUT_DIR", str(tmp_path / "out"), *TINY,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert "mIoU" in (tmp_path / "out" / "log.txt").read_text()


def last_line(run):
    return run.stderr.strip().splitlines()[-1]


def test_an_unregistered_dataset_is_named_with_close_names_before_the_model_is_built(tmp_path):
    run = run_tool(
        "train_net.py", "--config-file", QUICK_INSTANCE,
        "DATASETS.TRAIN", "('synthetic_instance_train',)", "OUTPUT_DIR", str(tmp_path),
    )  # fmt: skip
    assert run.returncode == 1
    assert last_line(run).startswith(
        "error: DATASETS.TRAIN names 'synthetic_instance_train', which is not registered. "
        "Close registered names: synthetic_instances_train"
    )
    assert "DATASETS.REGISTER_COCO" in last_line(run) and len(last_line(run)) < 600
    assert "Model:" not in (tmp_path / "log.txt").read_text()  # stopped before building it


def test_num_classes_that_differ_from_the_data_stop_or_are_allowed(user_data, tmp_path):
    wrong = own_data(user_data, tmp_path / "a", "MODEL.ROI_HEADS.NUM_CLASSES", "2")
    run = run_tool("train_net.py", "--config-file", QUICK_INSTANCE, *wrong, "SOLVER.MAX_ITER", "1")
    assert run.returncode == 1
    assert last_line(run) == (
        "error: MODEL.ROI_HEADS.NUM_CLASSES is 2 but dataset 'mine' has 3 classes (square, "
        "triangle, disc): set MODEL.ROI_HEADS.NUM_CLASSES 3, or DATASETS.CHECK_NUM_CLASSES "
        "False to use a different count on purpose"
    )
    allowed = own_data(
        user_data, tmp_path / "b", "MODEL.ROI_HEADS.NUM_CLASSES", "2",
        "DATASETS.CHECK_NUM_CLASSES", "False", "DATASETS.TEST", "()", "SOLVER.MAX_ITER", "1",
    )  # fmt: skip
    assert run_tool("train_net.py", "--config-file", QUICK_INSTANCE, *allowed).returncode == 0


def test_unreachable_weights_name_the_key_and_the_offline_fix(tmp_path):
    run = run_tool(
        "train_net.py", "--config-file", QUICK_INSTANCE,
        "MODEL.WEIGHTS", "http://127.0.0.1:9/R-50.pkl", "OUTPUT_DIR", str(tmp_path), *TINY,
    )  # fmt: skip
    assert run.returncode == 1
    line = last_line(run)
    assert line.startswith("error: MODEL.WEIGHTS http://127.0.0.1:9/R-50.pkl cannot be downloaded")
    assert "set MODEL.WEIGHTS to the local file" in line
    assert "Traceback" not in run.stderr


def test_evaluating_weights_without_the_filters_is_refused_unless_allowed(tmp_path):
    trained = tmp_path / "none"
    args = [*TINY, "DATASETS.TEST", "()", "SOLVER.MAX_ITER", "1"]
    none = run_tool(
        "train_net.py", "--config-file", QUICK_INSTANCE,
        "MODEL.ANTIALIAS.TYPE", "none", "OUTPUT_DIR", str(trained), *args,
    )  # fmt: skip
    assert none.returncode == 0, none.stderr[-2000:]
    weights = str(trained / "model_final.pth")
    evaluate = ["--eval-only", "MODEL.WEIGHTS", weights, "OUTPUT_DIR", str(tmp_path / "eval")]
    run = run_tool("train_net.py", "--config-file", QUICK_INSTANCE, *evaluate, *TINY)
    assert run.returncode == 1
    assert last_line(run).startswith("error: the checkpoint holds no weights for ")
    assert "MODEL.WEIGHTS_ALLOW_MISSING_FILTERS True" in last_line(run)
    allowed = run_tool(
        "train_net.py", "--config-file", QUICK_INSTANCE, *evaluate, *TINY,
        "MODEL.WEIGHTS_ALLOW_MISSING_FILTERS", "True",
    )  # fmt: skip
    assert allowed.returncode == 0, allowed.stderr[-2000:]


def test_demo_refuses_class_names_of_another_dataset_and_unreachable_weights(tmp_path):
    image = tmp_path / "a.png"  # never read: both stop before the first image
    common = ["--config-file", QUICK_INSTANCE, "--input", str(image), "--output", str(tmp_path)]
    coco_names = run_tool("demo.py", *common, "DATASETS.TEST", "('coco_2017_val',)")
    assert coco_names.returncode == 1
    assert last_line(coco_names).startswith(
        "error: MODEL.ROI_HEADS.NUM_CLASSES is 3 but dataset 'coco_2017_val' has 80 classes"
    )
    offline = run_tool("demo.py", *common, "MODEL.WEIGHTS", "http://127.0.0.1:9/model.pth")
    assert offline.returncode == 1
    assert last_line(offline).startswith(
        "error: MODEL.WEIGHTS http://127.0.0.1:9/model.pth cannot be downloaded"
    )
