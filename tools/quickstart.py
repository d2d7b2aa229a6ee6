#!/usr/bin/env python
"""A first look at pasa_det: build Mask R-CNN R-50-FPN with each anti-aliasing type,
run it on one image-sized input on the CPU, and print where the filters sit, their
parameter cost and the forward time."""
import time

import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model

from pasa_det import add_pasa_config
from pasa_det.layers import PASA, LowPassFilter


def mask_rcnn_cfg(aa_type):
    cfg = get_cfg()
    add_pasa_config(cfg)
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.MASK_ON = True
    cfg.MODEL.BACKBONE.NAME = "build_resnet_pasa_fpn_backbone"
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.FPN.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.ANCHOR_GENERATOR.SIZES = [[32], [64], [128], [256], [512]]
    cfg.MODEL.RPN.IN_FEATURES = ["p2", "p3", "p4", "p5", "p6"]
    cfg.MODEL.ROI_HEADS.NAME = "StandardROIHeads"
    cfg.MODEL.ROI_HEADS.IN_FEATURES = ["p2", "p3", "p4", "p5"]
    cfg.MODEL.ROI_BOX_HEAD.NAME = "FastRCNNConvFCHead"
    cfg.MODEL.ROI_BOX_HEAD.NUM_FC = 2
    cfg.MODEL.ROI_MASK_HEAD.NAME = "MaskRCNNConvUpsampleHead"
    cfg.MODEL.ROI_MASK_HEAD.NUM_CONV = 4
    cfg.MODEL.ANTIALIAS.TYPE = aa_type
    return cfg


def main():
    torch.manual_seed(0)
    image = torch.rand(3, 480, 640) * 255
    baseline = None
    for aa_type in ("none", "lpf", "pasa"):
        model = build_model(mask_rcnn_cfg(aa_type)).eval()
        sites = [n for n, m in model.named_modules() if isinstance(m, (PASA, LowPassFilter))]
        params = sum(p.numel() for p in model.parameters())
        with torch.no_grad():
            model([{"image": image}])  # warm-up
            start = time.perf_counter()
            model([{"image": image}])
            seconds = time.perf_counter() - start
        baseline = baseline or (params, seconds)
        print(f"\n== MODEL.ANTIALIAS.TYPE {aa_type}: {len(sites)} filters, {params / 1e6:.2f}M parameters "
              f"(+{(params - baseline[0]) / 1e3:.1f}k), forward {seconds:.2f}s on 480x640 "
              f"({seconds / baseline[1]:.2f}x none)")
        for name in sites:
            print(f"   {name}: {model.get_submodule(name)}".split("\n")[0])


if __name__ == "__main__":
    main()
