"""The shift pictures: the curves read the right numbers from a comparison's results,
and the strip and its GIF hold one frame per shift."""

import numpy as np
import pytest
import torch
from detectron2.structures import Boxes, Instances
from PIL import Image

from pasa_det.analysis.shift_figures import (
    STRIP_SHIFTS,
    curve,
    plot_shift_curves,
    prediction_strip,
    save_gif,
    strip_frames,
)
from pasa_det.config import load_config
from tests.helpers.paths import QUICK_INSTANCE


def test_instance_curve_averages_the_directions_at_each_distance():
    shift = {
        "segm_AP_0": 50.0,
        "segm_AP_right1": 40.0,
        "segm_AP_left1": 60.0,
        "segm_AP_subpixel_right0.5": 45.0,
        "segm_AP_subpixel_down0.5": 47.0,
        "segm_AP_mean": 1.0,  # summaries are not distances
        "segm_AP_worst_case": 2.0,
        "bbox_AP_right1": 99.0,
    }
    assert curve(shift, "segm") == {0.0: 50.0, 0.5: 46.0, 1.0: 50.0}


def test_semantic_curve_starts_at_full_agreement():
    shift = {"zero_shift_1px": 90.0, "zero_shift_2px": 80.0, "subpixel_right0.25": 95.0}
    assert curve(shift, "labels") == {0.0: 100.0, 0.25: 95.0, 1.0: 90.0, 2.0: 80.0}


def report_of(values):
    """A comparison report: variant -> per-seed mask AP at 1 px (0 px at 60)."""
    return {
        "seeds": [0, 1],
        "variants": {
            v: {
                "runs": {
                    str(s): {
                        "metrics": {
                            "shift_consistency": {
                                "segm_AP_0": 60.0,
                                "segm_AP_right1": ap,
                                "bbox_AP_0": 60.0,
                                "bbox_AP_right1": ap,
                            }
                        }
                    }
                    for s, ap in enumerate(aps)
                }
            }
            for v, aps in values.items()
        },
    }


def test_curves_draw_a_line_and_a_seed_band_per_variant(tmp_path):
    fig = plot_shift_curves(report_of({"none": [40.0, 44.0], "pasa": [55.0, 57.0]}))
    mask_axis = fig.axes[0]
    lines = {line.get_label(): line.get_ydata().tolist() for line in mask_axis.get_lines()}
    assert lines == {"none": [60.0, 42.0], "pasa": [60.0, 56.0]}
    assert len(mask_axis.collections) == 2  # the ± std bands
    fig.savefig(tmp_path / "curves.png")
    assert Image.open(tmp_path / "curves.png").size[0] > 500


def square_finder(offset):
    """Predicts one box and mask over the bright pixels, `offset` px off."""

    def model(inputs):
        outs = []
        for inp in inputs:
            bright = inp["image"].float().mean(0) > 128
            mask = torch.roll(bright, offset, dims=1)
            ys, xs = mask.nonzero(as_tuple=True)
            instances = Instances(tuple(mask.shape))
            instances.pred_boxes = Boxes(
                torch.tensor(
                    [[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=torch.float32
                )
            )
            instances.pred_masks = mask[None]
            instances.scores = torch.ones(1)
            instances.pred_classes = torch.zeros(1, dtype=torch.int64)
            outs.append({"instances": instances})
        return outs

    model.eval = lambda: model
    return model


def test_strip_has_a_row_per_variant_and_its_gif_a_frame_per_shift(tmp_path):
    cfg = load_config(
        QUICK_INSTANCE,
        ["INPUT.FORMAT", "RGB", "INPUT.MIN_SIZE_TEST", 64, "INPUT.MAX_SIZE_TEST", 64],
    )
    image = np.full((64, 64, 3), 20, dtype=np.uint8)
    image[20:40, 24:44] = 230
    models = {"none": square_finder(3), "pasa": square_finder(0)}
    fig = prediction_strip(models, cfg, image, STRIP_SHIFTS)
    assert len(fig.axes) == 2 * len(STRIP_SHIFTS)
    assert [ax.get_ylabel() for ax in fig.axes[:: len(STRIP_SHIFTS)]] == ["none", "pasa"]
    frames = strip_frames(fig, len(STRIP_SHIFTS))
    save_gif(frames, str(tmp_path / "strip.gif"))
    gif = Image.open(tmp_path / "strip.gif")
    assert gif.n_frames == len(STRIP_SHIFTS)
    with pytest.raises(EOFError):
        gif.seek(len(STRIP_SHIFTS))
