"""Values that used to pass the config check and fail later (when the model is built, or
after training in the evaluator) fail when the config loads, naming key, value, limit and fix."""

import os

import pytest
from detectron2.modeling import build_backbone

from pasa_det.config import ConfigError, load_config
from pasa_det.config.checks import pasa_filter_channels
from pasa_det.layers import PASA
from tests.helpers.paths import CONFIGS, QUICK_INSTANCE, QUICK_SEMANTIC
from tests.helpers.scripts import run_tool

R50 = os.path.join(CONFIGS, "COCO-InstanceSegmentation", "mask_rcnn_R_50_FPN_1x_pasa.yaml")
R101 = os.path.join(CONFIGS, "COCO-InstanceSegmentation", "mask_rcnn_R_101_FPN_3x_pasa.yaml")
DEEPLAB = os.path.join(
    CONFIGS,
    "Cityscapes-SemanticSegmentation",
    "deeplab_v3_plus_R_103_os16_mg124_poly_90k_bs16_pasa.yaml",
)


def built_filter_channels(cfg):
    """{site: channels} of the PASA filters in the backbone the config builds."""
    sites = {}
    for path, module in build_backbone(cfg).named_modules():
        if not isinstance(module, PASA):
            continue
        path = path.removeprefix("bottom_up.")
        if path == "stem.aa":
            site = "the stem"
        elif path == "top_block.aa":
            site = "the FPN top block (P6)"
        else:
            stage, block, child = path.split(".")
            assert block == "0"
            site = stage if child == "aa" else f"{stage} shortcut"
        sites[site] = module.in_channels
    return sites


@pytest.mark.parametrize(
    "config, opts",
    [
        (QUICK_INSTANCE, []),  # R-18, basic blocks, FPN
        (QUICK_INSTANCE, ["MODEL.ANTIALIAS.FPN_TOP", "True", "MODEL.ANTIALIAS.STEM", "False"]),
        (R50, []),
        (R50, ["MODEL.ANTIALIAS.SHORTCUT", "False", "MODEL.ANTIALIAS.STAGES", "['res2', 'res4']"]),
        (R50, ["MODEL.RESNETS.NUM_GROUPS", "32", "MODEL.RESNETS.WIDTH_PER_GROUP", "8"]),
        (R101, ["MODEL.FPN.OUT_CHANNELS", "192", "MODEL.ANTIALIAS.FPN_TOP", "True"]),
        (R50, ["MODEL.BACKBONE.NAME", "'build_resnet_pasa_backbone'"]),
        (  # C4: res5 is not built
            R50,
            ["MODEL.BACKBONE.NAME", "'build_resnet_pasa_backbone'"]
            + ["MODEL.RESNETS.OUT_FEATURES", "['res4']"],
        ),
        (DEEPLAB, []),  # deep stem (128 channels), dilated res5
        (DEEPLAB, ["MODEL.RESNETS.RES4_DILATION", "2", "MODEL.RESNETS.RES5_DILATION", "4"]),
        (DEEPLAB, ["MODEL.RESNETS.STEM_TYPE", "'basic'", "MODEL.RESNETS.STEM_OUT_CHANNELS", "64"]),
    ],
)
def test_computed_filter_channels_are_the_built_backbones(config, opts):
    cfg = load_config(config, [*opts, "MODEL.ANTIALIAS.GROUP", "1", "MODEL.DEVICE", "cpu"])
    computed = pasa_filter_channels(cfg)
    assert dict(computed) == built_filter_channels(cfg)
    assert len(computed) == len(dict(computed))


def test_group_that_does_not_divide_a_filtered_channel_count_fails_at_load():
    with pytest.raises(ConfigError) as e:
        load_config(QUICK_INSTANCE, ["MODEL.ANTIALIAS.GROUP", "7"])
    assert str(e.value) == (
        "MODEL.ANTIALIAS.GROUP=7 must divide the 64 channels filtered at the stem; with "
        "MODEL.RESNETS.* and MODEL.ANTIALIAS.* as set, PASA filters 64, 128, 256, 512 channels. "
        "Use a GROUP that divides them all: 1, 2, 4, 8, 16, 32, 64"
    )
    # 16 fits every ResNet filter, not a filtered FPN top of 72 channels.
    fpn_top = ["MODEL.ANTIALIAS.FPN_TOP", "True", "MODEL.FPN.OUT_CHANNELS", "72"]
    with pytest.raises(ConfigError) as e:
        load_config(QUICK_INSTANCE, ["MODEL.ANTIALIAS.GROUP", "16", *fpn_top])
    assert str(e.value).startswith(
        "MODEL.ANTIALIAS.GROUP=16 must divide the 72 channels filtered at the FPN top block (P6)"
    )
    assert str(e.value).endswith(
        "64, 72, 128, 256, 512 channels. Use a GROUP that divides them all: 1, 2, 4, 8"
    )
    # Unused by LPF and by backbones that place no PASA filter.
    load_config(QUICK_INSTANCE, ["MODEL.ANTIALIAS.GROUP", "7", "MODEL.ANTIALIAS.TYPE", "lpf"])
    plain = ["MODEL.BACKBONE.NAME", "'build_resnet_fpn_backbone'"]
    load_config(QUICK_INSTANCE, ["MODEL.ANTIALIAS.GROUP", "7", *plain])


def test_train_net_reports_a_group_that_does_not_fit_in_one_line(tmp_path):
    """It was a ValueError with a traceback once the model was being built."""
    run = run_tool(
        "train_net.py", "--config-file", QUICK_INSTANCE, "MODEL.ANTIALIAS.GROUP", "7",
        "OUTPUT_DIR", tmp_path, timeout=300,
    )  # fmt: skip
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert (
        run.stderr.strip()
        .splitlines()[-1]
        .startswith(
            "error: MODEL.ANTIALIAS.GROUP=7 must divide the 64 channels filtered at the stem; "
        )
    )


@pytest.mark.parametrize(
    "opts, message",
    [
        (
            ["TEST.SHIFT_CONSISTENCY.MAX_SHIFT", "0"],
            "TEST.SHIFT_CONSISTENCY.MAX_SHIFT must be >= 1 (a whole number of pixels), got 0",
        ),
        (
            [
                "TEST.SHIFT_CONSISTENCY.ENABLED",
                "True",
                "TEST.SHIFT_CONSISTENCY.MAX_SHIFT",
                "100000",
            ],
            "TEST.SHIFT_CONSISTENCY.MAX_SHIFT=100000 leaves no crop to compare: test inputs are "
            "at most 160 px on their short side (INPUT.MIN_SIZE_TEST 160, INPUT.MAX_SIZE_TEST "
            "160) and each crop is MAX_SHIFT px smaller. Set it below 160 (the default is 32)",
        ),
        (
            ["TEST.SHIFT_CONSISTENCY.ENABLED", "True", "TEST.SHIFT_CONSISTENCY.MAX_SHIFT", "100"]
            + ["INPUT.MAX_SIZE_TEST", "96"],
            "TEST.SHIFT_CONSISTENCY.MAX_SHIFT=100 leaves no crop to compare: test inputs are at "
            "most 96 px on their short side",
        ),
        (
            ["TEST.SHIFT_CONSISTENCY.PROTOCOLS", "['grid', 'pmk']"],
            "TEST.SHIFT_CONSISTENCY.PROTOCOLS=['grid', 'pmk']: list protocols among grid,",
        ),
        (
            ["TEST.SHIFT_CONSISTENCY.SUBPIXEL_SHIFTS", "[0.5, 1.5]"],
            "TEST.SHIFT_CONSISTENCY.SUBPIXEL_SHIFTS must list fractions of a pixel, each in (0, 1)",
        ),
        (
            ["TEST.SHIFT_CONSISTENCY.ADVERSARIAL_MAX_SHIFT", "0"],
            "TEST.SHIFT_CONSISTENCY.ADVERSARIAL_MAX_SHIFT must be >= 1",
        ),
    ],
)
def test_shift_settings_out_of_range_fail_at_load(opts, message):
    with pytest.raises(ConfigError) as e:
        load_config(QUICK_SEMANTIC, opts)
    assert str(e.value).startswith(message)


def test_max_shift_is_checked_against_input_sizes_only_where_it_is_used():
    big = ["TEST.SHIFT_CONSISTENCY.MAX_SHIFT", "1000"]
    load_config(QUICK_SEMANTIC, big)  # shift consistency off
    load_config(QUICK_INSTANCE, ["TEST.SHIFT_CONSISTENCY.ENABLED", "True", *big])  # uses SHIFTS
    unresized = ["INPUT.MIN_SIZE_TEST", "0"]  # the evaluator checks each image
    load_config(QUICK_SEMANTIC, ["TEST.SHIFT_CONSISTENCY.ENABLED", "True", *big, *unresized])
