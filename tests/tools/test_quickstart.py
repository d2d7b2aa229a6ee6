"""tools/quickstart.py at a tiny budget: it trains, evaluates, writes its metrics with the
run's environment (what the docs' quickstart table is rendered from) and draws predictions."""

import json
import os

import pytest
import torch

from pasa_det.analysis.tables import render
from pasa_det.detectron2_versions import detectron2_release
from tests.helpers.paths import ROOT
from tests.helpers.scripts import run_tool


@pytest.mark.parametrize("score_thresh", ["0.0", "1.0"])  # with detections, and with none
def test_quickstart_writes_metrics_and_pictures(tmp_path, score_thresh):
    # fmt: off
    tiny = [
        "SOLVER.MAX_ITER", "2", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.WARMUP_ITERS", "1",
        "DATALOADER.NUM_WORKERS", "0", "INPUT.MIN_SIZE_TRAIN", "(64,)",
        "INPUT.MAX_SIZE_TRAIN", "64", "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "64",
        "TEST.DETECTIONS_PER_IMAGE", "5", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", score_thresh,
        "OUTPUT_DIR", str(tmp_path),
    ]
    # fmt: on
    run = run_tool("quickstart.py", *tiny)
    assert run.returncode == 0, run.stderr[-3000:]
    metrics_path = tmp_path / "metrics_final.json"
    report = json.loads(metrics_path.read_text())
    assert report["iterations"] == 2 and report["train_and_eval_minutes"] > 0
    assert report["environment"]["command"].startswith("quickstart.py SOLVER.MAX_ITER 2")
    if score_thresh == "1.0":  # nothing detected: AP 0, said in the log
        assert report["bbox"]["AP"] == report["segm"]["AP"] == 0.0
        assert "segm: the model detected nothing in the test set; AP 0" in run.stdout + run.stderr
    else:
        assert (
            0 <= report["segm"]["AP"] <= 100 and "detected nothing" not in run.stdout + run.stderr
        )
    row = render("quickstart", str(metrics_path)).splitlines()[2].split(" | ")
    assert row[1:4] == ["2", f"{report['bbox']['AP']:.1f}", f"{report['segm']['AP']:.1f}"]
    assert row[5] == f"`{report['weights_sha256'][:12]}…` |"
    assert len(os.listdir(tmp_path / "demo")) == 8


def test_quickstart_reports_a_bad_override_in_one_line():
    run = run_tool("quickstart.py", "SOLVER.MAX_ITERS", "2", timeout=300)
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1] == (
        "error: command-line overrides: unknown config key SOLVER.MAX_ITERS; "
        "did you mean SOLVER.MAX_ITER?"
    )


def committed_quickstart(release: str) -> dict:
    with open(os.path.join(ROOT, "results", "cpu", f"quickstart_detectron2-{release}.json")) as f:
        return json.load(f)


def test_committed_quickstart_runs_of_both_detectron2_routes_trained_the_same_model():
    """detectron2 0.6 and main train bit-identical quickstart models: the README's two rows
    agree, so reproducing one route's (below) checks both."""
    old, main = committed_quickstart("0.6"), committed_quickstart("main")
    assert old["environment"]["detectron2"].startswith("0.6")
    assert main["environment"]["detectron2"].startswith("main")
    assert old["weights_sha256"] == main["weights_sha256"]
    for task in ("bbox", "segm"):
        assert old[task]["AP"] == main[task]["AP"]


@pytest.mark.reproduction
def test_quickstart_gives_the_committed_result(tmp_path):
    """The README's quickstart table is what `make quickstart` produces on this route: the
    same trained weights (bit for bit) and the same AP."""
    release = detectron2_release()
    committed = os.path.join(ROOT, "results", "cpu", f"quickstart_detectron2-{release}.json")
    expected = committed_quickstart(release)
    run = run_tool("quickstart.py", "OUTPUT_DIR", tmp_path, timeout=1800)
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads((tmp_path / "metrics_final.json").read_text())
    stale = (
        f"{committed} is stale: re-run `make quickstart` and commit its metrics_final.json (on "
        "another processor, whose kernels round differently, the weights differ too: this one "
        f"runs torch's {torch.backends.cpu.get_cpu_capability()} kernels)"
    )
    assert got["weights_sha256"] == expected["weights_sha256"], stale
    for task in ("bbox", "segm"):
        assert got[task]["AP"] == pytest.approx(expected[task]["AP"], abs=1e-9), stale
