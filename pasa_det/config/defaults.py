"""The config keys pasa_det adds to detectron2's, one section per part they configure."""

from detectron2.config import CfgNode as CN


def add_pasa_config(cfg: CN) -> CN:
    """Add pasa_det's keys with their defaults; `checks.check_pasa_config` validates them."""
    # --- modeling/backbone: where and how backbones filter before downsampling ---
    cfg.MODEL.ANTIALIAS = CN()
    # "none": detectron2's strided backbone; "lpf": fixed binomial blur (Zhang, 2019);
    # "pasa": pixel-adaptive grouped filters (Zou et al., 2020).
    cfg.MODEL.ANTIALIAS.TYPE = "none"
    cfg.MODEL.ANTIALIAS.KERNEL_SIZE = 3
    # PASA: channel groups sharing one predicted filter; must divide every filtered channel count.
    cfg.MODEL.ANTIALIAS.GROUP = 8
    cfg.MODEL.ANTIALIAS.PAD_MODE = "reflect"
    # PASA: "group" (a softmax per group: every filter sums to one; ours) or "joint" (one
    # softmax over all groups' taps, as the published weights: each group gets a share).
    cfg.MODEL.ANTIALIAS.SOFTMAX = "group"
    # PASA: detectron2 norm name for the filter logits ("" for none; the authors' detection
    # code froze it, "FrozenBN", loading their ImageNet statistics).
    cfg.MODEL.ANTIALIAS.NORM = "BN"
    # PASA: the filters a fresh model predicts, before training or where the checkpoint
    # holds none: "lpf" (the binomial filter everywhere; ours) or "random" (the published
    # start: the logit convolution's random initialisation decides).
    cfg.MODEL.ANTIALIAS.INIT = "lpf"
    # Where filters go: the stem's pooling, the first block of these stages and that block's
    # shortcut, as the authors placed them; FPN_TOP also filters the FPN's extra P6 level,
    # which the authors subsample plainly (ours, off by default).
    cfg.MODEL.ANTIALIAS.STEM = True
    cfg.MODEL.ANTIALIAS.STAGES = ["res3", "res4", "res5"]
    cfg.MODEL.ANTIALIAS.SHORTCUT = True
    cfg.MODEL.ANTIALIAS.FPN_TOP = False

    # --- checkpoint: loading MODEL.WEIGHTS ---
    # Load MODEL.WEIGHTS even when some of its weights have other shapes than the model's
    # (fine-tuning with other classes) or none match.
    cfg.MODEL.WEIGHTS_ALLOW_PARTIAL = False
    # Unpickle MODEL.WEIGHTS without weights_only restrictions: only for files you trust.
    cfg.MODEL.WEIGHTS_TRUST_PICKLE = False
    # Evaluation and the demo: accept MODEL.WEIGHTS that hold none of the model's PASA
    # filters (they then filter as MODEL.ANTIALIAS.INIT starts them).
    cfg.MODEL.WEIGHTS_ALLOW_MISSING_FILTERS = False

    # --- data: your own datasets, and checks ---
    # Registered from the config in every process: [[name, annotations.json, image folder]]
    # for COCO-format sets, [[name, leftImg8bit/<split>, gtFine/<split>, "instance" or
    # "semantic"]] for Cityscapes-layout ones. Name them in DATASETS.TRAIN / TEST.
    cfg.DATASETS.REGISTER_COCO = []
    cfg.DATASETS.REGISTER_CITYSCAPES = []
    # The model's class count must equal the data's (False: train on a subset on purpose).
    cfg.DATASETS.CHECK_NUM_CLASSES = True
    # Log and replace an image that cannot be read (evaluation always raises).
    cfg.DATALOADER.SKIP_BAD_IMAGES = True

    # --- engine: the training step ---
    # With SOLVER.AMP.ENABLED: the autocast dtype, "float16" (loss scaling, as detectron2)
    # or "bfloat16" (float32's range, no scaling); on the GPU or the CPU.
    cfg.SOLVER.AMP.PRECISION = "float16"
    # Stop as diverged when the total loss exceeds this many times the first iteration's
    # (gradient clipping can keep an exploding loss finite); 0 turns the check off.
    cfg.SOLVER.DIVERGENCE_LOSS_FACTOR = 1000.0

    # --- evaluation: shift consistency, beside the usual metrics when ENABLED ---
    cfg.TEST.SHIFT_CONSISTENCY = CN()
    cfg.TEST.SHIFT_CONSISTENCY.ENABLED = False
    # Instance segmentation / detection: AP at these shifts (px in the original image) in
    # each of four directions, and agreement of instances scored >= SCORE_THRESH, matched
    # between original and shifted input at mask IoU >= MATCH_IOU.
    cfg.TEST.SHIFT_CONSISTENCY.SHIFTS = [1, 2, 5, 10, 20]
    cfg.TEST.SHIFT_CONSISTENCY.SCORE_THRESH = 0.5
    cfg.TEST.SHIFT_CONSISTENCY.MATCH_IOU = 0.5
    # Semantic segmentation: NUM_PAIRS crop pairs per image, offset by up to MAX_SHIFT px
    # (in the network's input) in each axis, drawn from SEED and the image's file name.
    cfg.TEST.SHIFT_CONSISTENCY.NUM_PAIRS = 5
    cfg.TEST.SHIFT_CONSISTENCY.MAX_SHIFT = 32
    cfg.TEST.SHIFT_CONSISTENCY.SEED = 0
    # What is measured (each evaluator runs those of its dataset's task; docs/RESULTS.md):
    # instances: grid (the shifts above), worst_case (each image on its worst grid shift),
    # subpixel, adversarial; semantic: crop_pairs (the pairs above), massc_circular and
    # massc_zero (NUM_PAIRS shifts of up to MAX_SHIFT px), subpixel, adversarial.
    cfg.TEST.SHIFT_CONSISTENCY.PROTOCOLS = ["grid", "crop_pairs"]
    # Sub-pixel shifts (px, right and down; the image resampled bilinearly).
    cfg.TEST.SHIFT_CONSISTENCY.SUBPIXEL_SHIFTS = [0.25, 0.5, 0.75]
    # Adversarial: every integer shift with |dx|, |dy| up to this many px.
    cfg.TEST.SHIFT_CONSISTENCY.ADVERSARIAL_MAX_SHIFT = 2
    return cfg
