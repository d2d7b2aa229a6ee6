"""tools/compare_antialiasing.py's engine on a tiny budget: every variant trains,
is scored (AP, shift consistency), counted and timed, and both tables are written."""

import json
import os
import signal

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json

from pasa_det.analysis.compare import (
    compare,
    differences_table,
    paired_differences,
    redraw_figures,
)
from pasa_det.analysis.shift_figures import FIGURE_FILES
from pasa_det.analysis.tables import render
from pasa_det.data.synthetic_generator import CLASSES, write_instance_split
from pasa_det.engine import TrainingInterrupted
from tests.helpers.paths import QUICK_INSTANCE
from tests.helpers.scripts import load_script


def register_tiny_val(root) -> str:
    name = "test_compare_tiny_val"
    write_instance_split(str(root), num_images=3, seed=5)
    json_file, image_root = os.path.join(root, "annotations.json"), os.path.join(root, "images")
    if name not in DatasetCatalog.list():
        DatasetCatalog.register(name, lambda: load_coco_json(json_file, image_root, name))
        MetadataCatalog.get(name).set(
            json_file=json_file,
            image_root=image_root,
            evaluator_type="coco",
            thing_classes=list(CLASSES),
        )
    return name


@pytest.mark.slow
def test_compare_writes_one_row_per_variant_over_seeds(tmp_path):
    val = register_tiny_val(tmp_path / "val")
    out = tmp_path / "out"
    opts = [
        "SOLVER.MAX_ITER",
        "2",
        "SOLVER.IMS_PER_BATCH",
        "2",
        "SOLVER.WARMUP_ITERS",
        "1",
        "DATALOADER.NUM_WORKERS",
        "0",
        "DATASETS.TEST",
        f"('{val}',)",
        "TEST.SHIFT_CONSISTENCY.SHIFTS",
        "[1]",
        "TEST.SHIFT_CONSISTENCY.SCORE_THRESH",
        "0.0",
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST",
        "0.0",
        "TEST.DETECTIONS_PER_IMAGE",
        "3",
    ]
    report, table = compare(QUICK_INSTANCE, str(out), ["none", "lpf", "pasa"], opts, 1, [0, 1])
    rows = json.loads((out / "comparison.json").read_text())["variants"]
    assert list(rows) == ["none", "lpf", "pasa"]
    for row in rows.values():
        assert list(row["runs"]) == ["0", "1"]
        for run in row["runs"].values():
            assert {"bbox", "segm", "shift_consistency"} <= set(run["metrics"])
            shift = run["metrics"]["shift_consistency"]
            assert "segm_AP_right1" in shift and "segm_AP_worst_case" in shift
            assert "segm_AP_adversarial" in shift and "segm_AP_subpixel_mean" in shift
            assert run["environment"]["command"] == report["environment"]["command"]
        aps = [run["metrics"]["segm"]["AP"] for run in row["runs"].values()]
        mask_ap = row["summary"]["mask AP"]
        assert mask_ap["n"] == 2 and mask_ap["mean"] == pytest.approx(sum(aps) / 2)
        assert mask_ap["std"] == pytest.approx(abs(aps[0] - aps[1]) / 2**0.5)
        measured = row["measured"]
        assert measured["backbone_gflops_per_image"] > 0 and measured["infer_s_per_image"] > 0
    # LPF adds no parameters (a fixed filter); PASA adds its filter-logit convs and norms.
    params = {v: rows[v]["measured"]["params_M"] for v in rows}
    assert params["lpf"] == params["none"] < params["pasa"]
    markdown = (out / "comparison.md").read_text()
    assert "| metric | none | lpf | pasa |" in markdown and " ± " in markdown
    assert (
        table in markdown
        and table == render("comparison", str(out / "comparison.json"))[: len(table)]
    )
    scores = render("comparison_scores", str(out / "comparison.json"))
    assert scores.startswith(table.split("\n| params (M)")[0]) and "params" not in scores
    differences = render("comparison_differences", str(out / "comparison.json")).splitlines()
    assert differences[0] == "| metric | lpf − none | pasa − none | pasa − lpf |"
    # Run again: every run is read from its folder, none retrained.
    weights = out / "seed1" / "pasa" / "model_final.pth"
    stamp = weights.stat().st_mtime_ns
    again, _ = compare(QUICK_INSTANCE, str(out), ["none", "lpf", "pasa"], opts, 1, [0, 1])
    assert weights.stat().st_mtime_ns == stamp
    for v in rows:
        assert again["variants"][v]["runs"] == report["variants"][v]["runs"]
    assert report["forward_passes_per_image"]["adversarial"] == 24
    # Other shift settings: the saved models are evaluated again, not retrained.
    rescored, _ = compare(
        QUICK_INSTANCE,
        str(out),
        ["none", "lpf", "pasa"],
        [*opts, "TEST.SHIFT_CONSISTENCY.ADVERSARIAL_MAX_SHIFT", "1"],
        1,
        [0, 1],
    )
    assert weights.stat().st_mtime_ns == stamp
    assert rescored["forward_passes_per_image"]["adversarial"] == 8
    for v in rows:
        for seed, run in rescored["variants"][v]["runs"].items():
            assert "rescored" in run
            assert run["metrics"]["segm"] == report["variants"][v]["runs"][seed]["metrics"]["segm"]
    # The pictures again, from the saved models alone.
    curves = out / "shift_curves.png"
    before = curves.stat().st_mtime_ns
    paths = redraw_figures(
        QUICK_INSTANCE, str(out), [*opts, "TEST.SHIFT_CONSISTENCY.ADVERSARIAL_MAX_SHIFT", "1"]
    )
    assert [os.path.basename(p) for p in paths] == list(FIGURE_FILES)
    assert curves.stat().st_mtime_ns > before and weights.stat().st_mtime_ns == stamp


def test_tool_says_how_to_continue_an_interrupted_comparison(tmp_path, monkeypatch, capsys):
    tool = load_script("tools/compare_antialiasing.py")
    checkpoint = str(tmp_path / "seed0" / "pasa" / "model_0000007.pth")

    def stopped(*args):
        raise TrainingInterrupted(signal.SIGTERM, 7, checkpoint)

    monkeypatch.setattr(tool, "compare", stopped)
    with pytest.raises(SystemExit) as ended:
        tool.main(["--config-file", QUICK_INSTANCE, "--output", str(tmp_path), "--seeds", "3"])
    assert ended.value.code == 128 + signal.SIGTERM
    assert capsys.readouterr().err.strip() == (
        f"SIGTERM received: stopped after iteration 7 and saved {checkpoint}; "
        "run the same command again to continue the comparison"
    )


def semantic_run(miou, consistency):
    return {
        "metrics": {"sem_seg": {"mIoU": miou}, "shift_consistency": {"consistency": consistency}}
    }


def test_paired_differences_cancel_what_seeds_share():
    variants = {
        "none": {"runs": {"0": semantic_run(40.0, 90.0), "1": semantic_run(50.0, 92.0)}},
        "pasa": {"runs": {"0": semantic_run(41.0, 91.0), "1": semantic_run(51.5, 93.0)}},
    }
    diff = paired_differences(variants)["pasa − none"]
    # Unpaired, the seeds' 10-point spread would swamp a 1.25-point gain; paired, it cancels.
    assert diff["mIoU"]["per_seed"] == [1.0, 1.5]
    assert diff["mIoU"]["mean"] == pytest.approx(1.25)
    assert diff["mIoU"]["std"] == pytest.approx(0.5 / 2**0.5)
    assert diff["consistency"] == {"mean": 1.0, "std": 0.0, "n": 2, "per_seed": [1.0, 1.0]}
    table = differences_table(variants).splitlines()
    assert table[0] == "| metric | pasa − none |"
    assert table[2] == "| mIoU | +1.25 ± 0.35 (+1.00, +1.50) |"


def test_paired_differences_use_only_seeds_both_variants_ran():
    variants = {
        "none": {"runs": {"0": semantic_run(40.0, 90.0), "1": semantic_run(50.0, 92.0)}},
        "lpf": {"runs": {"1": semantic_run(49.0, 93.0)}},
    }
    assert paired_differences(variants)["lpf − none"]["mIoU"] == {
        "mean": -1.0,
        "std": None,
        "n": 1,
        "per_seed": [-1.0],
    }


def test_differences_of_a_single_variant_say_what_is_missing():
    variants = {"pasa": {"runs": {"0": semantic_run(40.0, 90.0)}}}
    with pytest.raises(ValueError, match=r"two variants or more; this comparison has \['pasa'\]"):
        differences_table(variants)
