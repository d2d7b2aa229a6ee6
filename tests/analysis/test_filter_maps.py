"""tools/visualize_filters.py and pasa_det.analysis.filter_maps: the captured filters,
their entropy and mean-filter summaries on hand-set filter banks, and a smoke run."""

import json
import math
import os

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from pasa_det.analysis.filter_maps import (
    FilterRecorder,
    UnknownSiteError,
    find_pasa_modules,
    normalized_entropy,
    renormalize_groups,
    site_stride,
    summarize_site,
    upsample_to_image,
)
from pasa_det.layers.pasa import PASA
from tests.helpers.paths import QUICK_INSTANCE
from tests.helpers.scripts import run_tool


def record(pasa: PASA, x: torch.Tensor):
    model = nn.Sequential(nn.Identity(), pasa).eval()
    with FilterRecorder(model) as recorder, torch.no_grad():
        model(x)
    assert list(recorder.records) == ["1"]
    return recorder.records["1"]


@pytest.mark.parametrize(
    "k, groups, hw, resized_hw, map_hw",
    [
        (3, 4, (20, 30), (20, 30), (10, 15)),
        (5, 2, (17, 23), (17, 23), (9, 12)),
        (3, 4, (16, 24), (11, 24), (6, 12)),  # bottom rows are batch padding: cropped off
    ],
)
def test_shapes(k, groups, hw, resized_hw, map_hw):
    rec = record(PASA(16, k, stride=2, group=groups), torch.randn(1, 16, *hw))
    assert rec.weights.shape == (1, groups, k * k, math.ceil(hw[0] / 2), math.ceil(hw[1] / 2))
    s = summarize_site(rec, resized_hw, padded_hw=hw)
    assert s["stride"] == 2
    assert s["entropy"].shape == (groups, *map_hw)
    assert s["mean_entropy_per_group"].shape == s["group_mass"].shape == (groups,)
    assert s["mean_filter"].shape == (groups, k, k)
    assert 0 <= s["entropy"].min() and s["entropy"].max() <= 1 + 1e-6


@pytest.mark.parametrize("softmax", ["joint", "group"])
def test_zero_logits_give_box_filters(softmax):
    k, groups = 3, 4
    pasa = PASA(8, k, group=groups, norm="", init="random", softmax=softmax)
    nn.init.zeros_(pasa.conv.weight)
    s = summarize_site(record(pasa, torch.randn(2, 8, 12, 14)), (12, 14), (12, 14))
    torch.testing.assert_close(s["entropy"], torch.ones(groups, 6, 7))
    torch.testing.assert_close(s["mean_filter"], torch.full((groups, k, k), 1 / k**2))
    torch.testing.assert_close(
        s["group_mass"], torch.full((groups,), 1 / groups if softmax == "joint" else 1.0)
    )


def test_one_dominant_tap_gives_no_blur():
    k, groups, channels = 3, 3, 6
    taps = [0, 4, 8]  # a different tap for each group
    pasa = PASA(channels, k, group=groups, norm="", init="random", softmax="joint")
    with torch.no_grad():
        pasa.conv.weight.zero_()
        for g, t in enumerate(taps):
            pasa.conv.weight[g * k * k + t] = 1.0  # logit 6 * 9 * 2 = 108 for a constant 2 input
    s = summarize_site(record(pasa, torch.full((1, channels, 10, 10), 2.0)), (10, 10), (10, 10))
    torch.testing.assert_close(s["entropy"], torch.zeros(groups, 5, 5), atol=1e-6, rtol=0)
    expected = torch.zeros(groups, k * k)
    expected[range(groups), taps] = 1.0
    torch.testing.assert_close(s["mean_filter"], expected.view(groups, k, k), atol=1e-6, rtol=0)


def test_muted_group_is_left_out():
    """Under `joint`, a group whose share underflows to 0 has no filter shape: NaN
    in its map, out of the averages, counted as muted."""
    pasa = PASA(4, 3, group=2, norm="", init="random", softmax="joint")
    with torch.no_grad():
        pasa.conv.weight.zero_()
        pasa.conv.weight[4] = (
            10.0  # group 0, centre tap: logit 4 * 9 * 10 = 360; group 1 stays at 0
        )
    s = summarize_site(record(pasa, torch.ones(1, 4, 8, 8)), (8, 8), (8, 8))
    assert s["entropy"][1].isnan().all() and s["mean_entropy_per_group"][1].isnan()
    assert s["mean_filter"][1].isnan().all()
    torch.testing.assert_close(s["muted_fraction"], torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(s["group_mass"], torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(s["mean_filter"][0].flatten(), torch.eye(9)[4])


def test_joint_filters_renormalised_per_group_equal_the_group_softmax():
    """A softmax over all G*k*k logits, restricted to a group and rescaled to sum 1,
    is the softmax over that group's logits: the renormalisation recovers it."""
    joint = PASA(8, 3, group=4, norm="", init="random", softmax="joint")
    grouped = PASA(8, 3, group=4, norm="", init="random", softmax="group")
    grouped.conv.weight.data.copy_(joint.conv.weight.data)
    x = torch.randn(2, 8, 9, 11)
    joint_w = record(joint, x).weights
    sums = joint_w.sum(dim=2)
    assert not torch.allclose(sums, torch.ones_like(sums))
    torch.testing.assert_close(sums.sum(dim=1), torch.ones(2, 5, 6))
    torch.testing.assert_close(renormalize_groups(joint_w), record(grouped, x).weights)


def test_normalized_entropy_values():
    probs = torch.zeros(1, 2, 9, 1, 1)
    probs[0, 0, :2] = 0.5  # two equal taps
    probs[0, 1] = 1 / 9
    torch.testing.assert_close(
        normalized_entropy(probs).flatten(), torch.tensor([math.log(2) / math.log(9), 1.0])
    )


def test_site_stride_and_upsampling():
    # a 160 x 160 image padded to 160: stem /4 (40), P6 /64 (ceil 2.5 = 3)
    assert site_stride((160, 160), (40, 40)) == 4
    assert site_stride((160, 160), (3, 3)) == 64
    assert site_stride((96, 128), (2, 2)) == 64  # a 65-pixel image padded to 96
    site_map = torch.arange(6.0).view(2, 3)
    up = upsample_to_image(site_map, 4, resized_hw=(8, 12), image_hw=(16, 24))
    assert up.shape == (16, 24)
    torch.testing.assert_close(up, site_map.repeat_interleave(8, 0).repeat_interleave(8, 1))
    # a last cell cut short by the image edge keeps its own value
    assert (
        upsample_to_image(site_map, 4, resized_hw=(6, 12), image_hw=(6, 12))[:, 0].tolist()
        == [0] * 4 + [3] * 2
    )


def test_sites_by_name_or_name_end():
    model = nn.ModuleDict(
        {
            "stem": nn.ModuleDict({"aa": PASA(8, 3, group=4)}),
            "res3": nn.ModuleDict({"aa": PASA(8, 3, group=4), "shortcut_aa": PASA(8, 3, group=4)}),
        }
    )
    assert list(find_pasa_modules(model)) == ["stem.aa", "res3.aa", "res3.shortcut_aa"]
    assert list(find_pasa_modules(model, ["aa"])) == ["stem.aa", "res3.aa"]
    assert list(find_pasa_modules(model, ["res3.shortcut_aa", "stem.aa"])) == [
        "stem.aa",
        "res3.shortcut_aa",
    ]
    with pytest.raises(UnknownSiteError, match=r"no PASA module named \['res4.aa'\].*'stem.aa'"):
        find_pasa_modules(model, ["res4.aa", "stem.aa"])


def visualize_untrained(image, output, sites):
    """tools/visualize_filters.py on an untrained quickstart model."""
    args = ["--input", image, "--output", output, "--sites", sites, "MODEL.WEIGHTS", ""]
    return run_tool("visualize_filters.py", "--config-file", QUICK_INSTANCE, *args, timeout=300)


def test_tool_writes_figures_and_json(tmp_path):
    image = tmp_path / "img.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (70, 90, 3), dtype=np.uint8)).save(
        image
    )
    sites = ["backbone.bottom_up.stem.aa", "backbone.bottom_up.res5.0.aa"]
    run = visualize_untrained(image, tmp_path / "out", "res5.0.aa,stem.aa")
    assert run.returncode == 0, run.stderr[-2000:]
    assert sorted(os.listdir(tmp_path / "out" / "img")) == sorted(
        [f"{s}.png" for s in sites] + ["overview.png"]
    )
    for name in os.listdir(tmp_path / "out" / "img"):
        assert Image.open(tmp_path / "out" / "img" / name).format == "PNG"
    result = json.loads((tmp_path / "out" / "filters.json").read_text())
    (entry,) = result["images"]
    assert entry["image_hw"] == [70, 90] and entry["resized_hw"] == [124, 160]
    stem, res5 = (entry["sites"][s] for s in sites)
    assert (stem["stride"], stem["map_hw"], res5["stride"], res5["map_hw"]) == (
        4,
        [31, 40],
        32,
        [4, 5],
    )
    assert len(stem["mean_entropy_per_group"]) == 8 and np.array(
        stem["mean_filter_per_group"]
    ).shape == (8, 3, 3)
    np.testing.assert_allclose(
        np.array(stem["mean_filter_per_group"]).sum(axis=(1, 2)), 1.0, atol=1e-4
    )
    assert list(entry["sites"]) == list(result["sites"]) == sites  # in the order they ran
    # Untrained, INIT lpf: every group of every site filters with the 3×3 binomial.
    binomial = np.outer([1, 2, 1], [1, 2, 1]) / 16
    for site in (stem, res5):
        np.testing.assert_allclose(site["mean_filter_per_group"], [binomial] * 8, atol=1e-5)
        np.testing.assert_allclose(site["mean_entropy_per_group"], 0.946, atol=5e-4)


def test_tool_names_an_unknown_site_in_one_line(tmp_path):
    image = tmp_path / "img.png"
    Image.fromarray(np.zeros((40, 40, 3), dtype=np.uint8)).save(image)
    run = visualize_untrained(image, tmp_path / "out", "res6.aa")
    assert run.returncode == 1
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("error: no PASA module named ['res6.aa']; the model has: ")
    assert "backbone.bottom_up.stem.aa" in last and "Traceback" not in run.stderr
