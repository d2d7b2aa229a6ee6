"""Smoke tests of the benchmarks at tiny sizes (no timing assertions)."""

import json
import os
from pathlib import Path

import pytest
import torch
from fvcore.nn import FlopCountAnalysis

from pasa_det.analysis.benchmark import add_site_memory, mask_rcnn_aa_sites, summarize, time_site
from pasa_det.analysis.model_benchmark import (
    FLOP_HANDLES,
    build,
    count_backbone_flops,
    synthetic_inputs,
)
from pasa_det.analysis.tables import render
from pasa_det.config import load_config
from pasa_det.layers import PASA
from tests.helpers.paths import CONFIGS, QUICK_INSTANCE
from tests.helpers.scripts import run_tool

MASK_RCNN_PASA = os.path.join(
    CONFIGS, "COCO-InstanceSegmentation", "mask_rcnn_R_50_FPN_1x_pasa.yaml"
)


def test_mask_rcnn_sites_have_the_real_backbone_shapes():
    sites = {s["site"]: s["shape"][1:] for s in mask_rcnn_aa_sites(2, 800, 1344, MASK_RCNN_PASA)}
    assert sites == {
        "bottom_up.stem.aa": [64, 399, 671],  # after the dense 2x2 max-pool
        "bottom_up.res3.0.aa": [128, 200, 336],
        "bottom_up.res3.0.shortcut_aa": [256, 200, 336],
        "bottom_up.res4.0.aa": [256, 100, 168],
        "bottom_up.res4.0.shortcut_aa": [512, 100, 168],
        "bottom_up.res5.0.aa": [512, 50, 84],
        "bottom_up.res5.0.shortcut_aa": [1024, 50, 84],
        "top_block.aa": [256, 25, 42],
    }


def test_benchmark_site_reports_every_variant_and_summary():
    record = {"site": "tiny", "shape": [1, 16, 10, 12], "kernel_size": 3}
    record.update(time_site(record["shape"], 3, 8, repeats=1))
    add_site_memory(record, 3, 8)
    for mode in ("eval", "train"):
        assert set(record[mode]) == {"pasa", "pasa_torch", "published", "lpf", "subsample", "floor"}
        assert all(v["time_s"] > 0 and "peak_bytes" in v for v in record[mode].values())
    assert summarize([record])["k3"]["eval_speedup_vs_published"] > 0


def test_benchmark_pasa_tool_writes_json(tmp_path):
    out = tmp_path / "pasa.json"
    args = [
        "--scale",
        "0.05",
        "--sites",
        "top_block",
        "--kernel-sizes",
        "3",
        "--repeats",
        "1",
        "--output",
        str(out),
    ]
    run = run_tool("benchmark_pasa.py", *args, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(out.read_text())
    assert [r["site"] for r in result["records"]] == ["top_block.aa"]
    assert set(result["summary"]) == {"k3"}
    assert result["environment"]["command"].startswith("benchmark_pasa.py --scale 0.05")
    assert result["environment"]["cpu_cores"] == os.cpu_count()
    sites = render("pasa_sites", str(out))
    assert sites.splitlines()[2].startswith("| 3 | ")
    assert "`top_block.aa`" in render("pasa_largest_site", str(out))


def test_flop_handles_count_pasa_weighted_sum_and_softmax():
    m = PASA(16, kernel_size=3, group=8, norm="", init="random").eval()
    analysis = FlopCountAnalysis(m, (torch.randn(1, 16, 8, 8),))
    for name, handle in FLOP_HANDLES.items():
        analysis.set_op_handle(name, handle)
    analysis.unsupported_ops_warnings(False)
    conv, weighted_sum, softmax = 72 * 16 * 9 * 16, 16 * 16 * 9, 72 * 16
    assert analysis.total() == conv + weighted_sum + softmax
    assert not analysis.unsupported_ops()


def test_backbone_flops_count_the_filters_and_ignore_the_heads():
    from detectron2.modeling import build_model

    inputs = [{"image": torch.randint(0, 255, (3, 160, 160), dtype=torch.uint8)}]

    def flops(aa_type, *opts):
        cfg = load_config(QUICK_INSTANCE, ["MODEL.ANTIALIAS.TYPE", aa_type, *opts])
        return count_backbone_flops(build_model(cfg), inputs)

    none, lpf, pasa = flops("none"), flops("lpf"), flops("pasa")
    # LPF adds a 3×3 depthwise filter per site; PASA adds its logit convolutions on top.
    assert none < lpf < pasa
    assert flops("pasa", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0") == pasa


def test_untrained_mask_rcnn_heads_do_a_fixed_amount_of_work():
    """Whatever the backbone computes, the benchmark's detector keeps every
    proposal and detection and trains its mask head on a full foreground batch."""
    from detectron2.utils.events import EventStorage

    inputs = synthetic_inputs("mask_rcnn_R_50_FPN", 2, 64, 96, "cpu")
    model = build("mask_rcnn_R_50_FPN", "pasa", "cpu", 64, 96, Path(CONFIGS))
    heads = model.roi_heads
    with torch.no_grad():
        outputs = model.eval()(inputs)
    assert [len(o["instances"]) for o in outputs] == [heads.box_predictor.test_topk_per_image] * 2
    with EventStorage() as storage:
        model.train()(inputs)
        fg = storage.latest()["roi_head/num_fg_samples"][0]
    assert fg == heads.positive_fraction * heads.batch_size_per_image


def test_synthetic_inputs():
    (item,) = synthetic_inputs("mask_rcnn_R_50_FPN", 1, 32, 48, "cpu")
    assert item["image"].shape == (3, 32, 48) and len(item["instances"]) == 4
    assert item["instances"].gt_masks.tensor.any(dim=(1, 2)).all()
    (item,) = synthetic_inputs("deeplab_v3_plus_R_103", 1, 32, 48, "cpu")
    assert item["sem_seg"].shape == (32, 48)


@pytest.mark.slow
def test_benchmark_model_tool_writes_json(tmp_path):
    out = tmp_path / "model.json"
    args = [
        "--height",
        "64",
        "--width",
        "96",
        "--batch",
        "1",
        "--repeats",
        "1",
        "--output",
        str(out),
    ]
    run = run_tool("benchmark_model.py", *args, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    results = json.loads(out.read_text())["results"]
    assert set(results) == {"mask_rcnn_R_50_FPN", "deeplab_v3_plus_R_103"}
    assert results["mask_rcnn_R_50_FPN"]["pasa"]["flops_vs_none"] > 1
    table = render("model_benchmark", str(out)).splitlines()
    assert [row.split("|")[2].strip() for row in table[2:8]] == ["none", "lpf", "pasa"] * 2
