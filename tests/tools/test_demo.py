"""tools/demo.py: streams files, globs and folders; names unreadable images instead of crashing,
and an output folder or inputs it cannot use in one line; says when the model is untrained."""

import os
import re

import numpy as np
import pytest
from PIL import Image

from pasa_det.config import load_config
from pasa_det.engine.demo import DemoError, iter_image_paths, run_demo
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
    assert "MODEL.WEIGHTS is empty: the drawings come from an UNTRAINED" in run.stdout
    assert "; drawn by an UNTRAINED model (MODEL.WEIGHTS is empty)" in run.stdout.splitlines()[-1]
    assert Image.open(tmp_path / "out" / "img0.png").size == (80, 64)


def error_lines(run):
    assert run.returncode != 0 and "Traceback" not in run.stderr, run.stderr[-2000:]
    return [line for line in run.stderr.splitlines() if line.startswith("error:")]


def demo(*args):
    return run_tool("demo.py", "--config-file", QUICK_INSTANCE, *args, timeout=300)


def test_unwritable_output_is_named_before_the_model_is_built(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(b"x")
    notes = tmp_path / "notes.txt"
    notes.write_text("a file, not a folder")
    run = demo("--input", tmp_path / "in", "--output", notes / "out", "MODEL.WEIGHTS", "")
    assert error_lines(run) == [
        f"error: --output {notes / 'out'} cannot be written ({notes} is a file, not a folder); "
        "choose a folder you can write to"
    ]
    # Checked first: the missing weights are not reached.
    cfg = load_config(QUICK_INSTANCE, ["MODEL.WEIGHTS", str(tmp_path / "missing.pth")])
    with pytest.raises(DemoError, match=rf"--output {re.escape(str(notes))} cannot be written"):
        run_demo(cfg, [str(tmp_path / "in")], str(notes))


def test_inputs_matching_no_image_are_named(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image")
    pattern = str(tmp_path / "*.jpg")
    run = demo("--input", empty, pattern, "--output", tmp_path / "out", "MODEL.WEIGHTS", "")
    (line,) = error_lines(run)
    assert line.startswith(f"error: --input {empty} {pattern} matches no file: a folder gives")
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")
    # Files that exist but none of them an image: each is named, then one error line.
    run = demo("--input", empty / "notes.txt", "--output", tmp_path / "out", "MODEL.WEIGHTS", "")
    assert error_lines(run) == [
        "error: no file --input gave could be read as an image (1 skipped, each named in a "
        "warning above); give image files, or folders and patterns that hold them"
    ]
    assert f"skipped {empty / 'notes.txt'}: cannot read it as an image" in run.stdout
