"""The one check of pasa_det's config values. Loading a config runs it, and so does
building a backbone (for configs made in code); layers check only their own arguments."""

import math

from .antialias import (
    KINDS,
    RESNET_STAGES,
    AntiAliasError,
    antialias_from_cfg,
)

ANTIALIAS_TYPES = KINDS
AMP_PRECISIONS = ("float16", "bfloat16")
# The shift-consistency protocols of each task (pasa_det.evaluation.shift_consistency).
INSTANCE_PROTOCOLS = ("grid", "worst_case", "subpixel", "adversarial")
SEMANTIC_PROTOCOLS = ("crop_pairs", "massc_circular", "massc_zero", "subpixel", "adversarial")
SHIFT_PROTOCOLS = tuple(dict.fromkeys(INSTANCE_PROTOCOLS + SEMANTIC_PROTOCOLS))
# The depths detectron2's ResNet builders know; DeepLab's, and bottleneck blocks, from 50.
RESNET_DEPTHS = (18, 34, 50, 101, 152)
PASA_FPN_BACKBONE = "build_resnet_pasa_fpn_backbone"
PASA_DEEPLAB_BACKBONE = "build_resnet_pasa_deeplab_backbone"
PASA_RETINANET_BACKBONE = "build_retinanet_resnet_pasa_fpn_backbone"
PASA_BACKBONES = (
    "build_resnet_pasa_backbone",
    PASA_FPN_BACKBONE,
    PASA_DEEPLAB_BACKBONE,
    PASA_RETINANET_BACKBONE,
)


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message says what to change."""


def pasa_filter_channels(cfg):
    """[(site, channels)] of every filter MODEL.ANTIALIAS places, in the order the builders
    make them, with the channel counts detectron2's ResNet builders give each stage (a
    stage's first block: the stride-2 3x3 conv's output, and the shortcut's input), from
    MODEL.RESNETS.*; [] for backbones other than pasa_det's or depths detectron2 refuses."""
    aa, resnets, name = cfg.MODEL.ANTIALIAS, cfg.MODEL.RESNETS, cfg.MODEL.BACKBONE.NAME
    deeplab = name == PASA_DEEPLAB_BACKBONE
    basic_blocks = resnets.DEPTH in (18, 34)
    if (
        name not in PASA_BACKBONES
        or resnets.DEPTH not in RESNET_DEPTHS
        or (deeplab and basic_blocks)
    ):
        return []
    sites = [("the stem", resnets.STEM_OUT_CHANNELS)] if aa.STEM else []
    # Stages are built up to the last one OUT_FEATURES names.
    last = max(
        (RESNET_STAGES.index(f) for f in resnets.OUT_FEATURES if f in RESNET_STAGES), default=-1
    )
    dilation = {"res4": resnets.RES4_DILATION if deeplab else 1, "res5": resnets.RES5_DILATION}
    in_channels, out_channels = resnets.STEM_OUT_CHANNELS, resnets.RES2_OUT_CHANNELS
    bottleneck_channels = resnets.NUM_GROUPS * resnets.WIDTH_PER_GROUP
    for stage in RESNET_STAGES[: last + 1]:
        # res2 and dilated stages keep their resolution: nothing to filter.
        if stage != "res2" and dilation.get(stage, 1) == 1 and stage in aa.STAGES:
            if aa.SHORTCUT and in_channels != out_channels:  # the block has a projection
                sites.append((f"{stage} shortcut", in_channels))
            sites.append((stage, out_channels if basic_blocks else bottleneck_channels))
        in_channels, out_channels = out_channels, out_channels * 2
        bottleneck_channels *= 2
    if name == PASA_FPN_BACKBONE and aa.FPN_TOP:
        sites.append(("the FPN top block (P6)", cfg.MODEL.FPN.OUT_CHANNELS))
    return sites


def _check_group_divides_channels(cfg) -> None:
    """GROUP divides the channels of every PASA filter, which the backbone otherwise finds
    only when it is built; the message names the site and the groups that fit them all."""
    group, sites = cfg.MODEL.ANTIALIAS.GROUP, pasa_filter_channels(cfg)
    site, channels = next(((s, c) for s, c in sites if c % group), (None, None))
    if site is None:
        return
    common = math.gcd(*(c for _, c in sites))
    fits = [g for g in range(1, common + 1) if common % g == 0]
    raise ConfigError(
        f"MODEL.ANTIALIAS.GROUP={group} must divide the {channels} channels filtered at "
        f"{site}; with MODEL.RESNETS.* and MODEL.ANTIALIAS.* as set, PASA filters "
        f"{', '.join(str(c) for c in sorted({c for _, c in sites}))} channels. Use a GROUP "
        f"that divides them all: {', '.join(map(str, fits))}"
    )


def check_antialias_config(cfg) -> None:
    """`MODEL.ANTIALIAS` holds values every backbone can use: the values the layers accept
    (checked by building a filter from them), and a GROUP that fits every filtered site."""
    try:
        antialias = antialias_from_cfg(cfg)
    except AntiAliasError as e:
        raise ConfigError(str(e)) from None
    if antialias.kind == "pasa":
        _check_group_divides_channels(cfg)
    if cfg.MODEL.ANTIALIAS.FPN_TOP and cfg.MODEL.BACKBONE.NAME == PASA_RETINANET_BACKBONE:
        raise ConfigError(
            "MODEL.ANTIALIAS.FPN_TOP filters the P6 max-pool of Mask R-CNN's FPN; RetinaNet's "
            "P6 and P7 are strided convolutions, kept as detectron2's: set FPN_TOP False"
        )


def check_pasa_config(cfg) -> None:
    """Every value pasa_det adds or reads holds something it can use; raises
    ConfigError naming the key otherwise."""
    check_antialias_config(cfg)
    if cfg.SOLVER.AMP.PRECISION not in AMP_PRECISIONS:
        raise ConfigError(
            f"SOLVER.AMP.PRECISION is {cfg.SOLVER.AMP.PRECISION!r}; "
            f"use one of {', '.join(AMP_PRECISIONS)}"
        )
    factor = cfg.SOLVER.DIVERGENCE_LOSS_FACTOR
    if not isinstance(factor, (int, float)) or not (factor == 0 or factor > 1):
        raise ConfigError(
            f"SOLVER.DIVERGENCE_LOSS_FACTOR must be 0 (off) or a number > 1, got {factor!r}"
        )
    shift = cfg.TEST.SHIFT_CONSISTENCY
    check_shift_settings(shift, "TEST.SHIFT_CONSISTENCY")
    if shift.ENABLED and cfg.MODEL.META_ARCHITECTURE == "SemanticSegmentor":
        _check_max_shift_leaves_a_crop(cfg)


def check_shift_settings(settings, group: str) -> None:
    """The shift-consistency settings `settings` (config group `group`: yacs upper-case
    keys or a LazyConfig's lower-case ones) can be used; ConfigError naming the key if not."""

    def value(name):
        key = name if name in settings else name.lower()
        return f"{group}.{key}", settings[key]

    key, shifts = value("SHIFTS")
    if not shifts or any(not isinstance(s, int) or s < 1 for s in shifts):
        raise ConfigError(f"{key} must list positive integers (pixels), got {shifts!r}")
    for name in ("SCORE_THRESH", "MATCH_IOU"):
        key, v = value(name)
        if not isinstance(v, (int, float)) or not 0 <= v <= 1:
            raise ConfigError(f"{key} must lie in [0, 1], got {v!r}")
    for name, unit in (
        ("NUM_PAIRS", "crop pairs per image"),
        ("MAX_SHIFT", "pixels"),
        ("ADVERSARIAL_MAX_SHIFT", "pixels"),
    ):
        if name in settings or name.lower() in settings:
            key, v = value(name)
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"{key} must be >= 1 (a whole number of {unit}), got {v!r}")
    if "PROTOCOLS" in settings or "protocols" in settings:
        key, protocols = value("PROTOCOLS")
        unknown = [p for p in protocols if p not in SHIFT_PROTOCOLS]
        if not protocols or unknown or isinstance(protocols, str):
            raise ConfigError(
                f"{key}={protocols!r}: list protocols among {', '.join(SHIFT_PROTOCOLS)} "
                f"(instances: {', '.join(INSTANCE_PROTOCOLS)}; semantic segmentation: "
                f"{', '.join(SEMANTIC_PROTOCOLS)})"
            )
    if "SUBPIXEL_SHIFTS" in settings or "subpixel_shifts" in settings:
        key, fractions = value("SUBPIXEL_SHIFTS")
        if not fractions or any(
            isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t < 1
            for t in fractions
        ):
            raise ConfigError(
                f"{key} must list fractions of a pixel, each in (0, 1), got {fractions!r}"
            )


def _check_max_shift_leaves_a_crop(cfg) -> None:
    """Semantic shift consistency compares crops MAX_SHIFT px smaller than the test input,
    whose short side the test-time resize makes at most MIN_SIZE_TEST and MAX_SIZE_TEST
    (0: not resized; the evaluator then checks each image)."""
    max_shift, size = cfg.TEST.SHIFT_CONSISTENCY.MAX_SHIFT, cfg.INPUT
    short_side = min(size.MIN_SIZE_TEST, size.MAX_SIZE_TEST)
    if size.MIN_SIZE_TEST and max_shift >= short_side:
        raise ConfigError(
            f"TEST.SHIFT_CONSISTENCY.MAX_SHIFT={max_shift} leaves no crop to compare: test "
            f"inputs are at most {short_side} px on their short side (INPUT.MIN_SIZE_TEST "
            f"{size.MIN_SIZE_TEST}, INPUT.MAX_SIZE_TEST {size.MAX_SIZE_TEST}) and each crop is "
            f"MAX_SHIFT px smaller. Set it below {short_side} (the default is 32)"
        )
