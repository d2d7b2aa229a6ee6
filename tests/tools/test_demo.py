"""tools/demo.py: streams files, globs and folders; names unreadable images instead of crashing."""

import os

import numpy as np
from PIL import Image

from pasa_det.engine.demo import iter_image_paths
from tests.helpers.paths import QUICK_INSTANCE
from tests.helpers.scripts import run_tool


def test_iter_image_paths_expands_dirs_and_globs(tmp_path):
    for name in ("b.png", "a.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    paths = list(iter_image_paths([str(tmp_path), str(tmp_path / "*.png"), "single.jpg"]))
    assert paths == [
        str(tmp_path / "a.jpg"),
        str(tmp_path / "b.png"),
        str(tmp_path / "b.png"),
        "single.jpg",
    ]


def test_demo_draws_images_and_names_unreadable_ones(tmp_path):
    images = tmp_path / "in"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)).save(
            images / f"img{i}.png"
        )
    (images / "broken.png").write_bytes(b"not an image")
    run = run_tool(
        "demo.py",
        "--config-file",
        QUICK_INSTANCE,
        "--input",
        images,
        "--output",
        tmp_path / "out",
        "--confidence-threshold",
        "0.0",
        "MODEL.WEIGHTS",
        "",
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert sorted(os.listdir(tmp_path / "out")) == ["img0.png", "img1.png"]
    assert "skipped " + str(images / "broken.png") in run.stdout + run.stderr
    assert "wrote 2 images" in run.stdout and "skipped 1 unreadable" in run.stdout
    assert Image.open(tmp_path / "out" / "img0.png").size == (80, 64)
