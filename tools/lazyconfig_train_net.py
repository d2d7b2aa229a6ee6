#!/usr/bin/env python
"""Train or evaluate an anti-aliased detectron2 model from a LazyConfig (.py), as
detectron2's tools/lazyconfig_train_net.py does, with everything tools/train_net.py has.

    python tools/lazyconfig_train_net.py --num-gpus 8 \
        --config-file configs/new_baselines/mask_rcnn_R_50_FPN_100ep_LSJ_pasa.py
    python tools/lazyconfig_train_net.py --config-file … --eval-only \
        train.init_checkpoint=output/model_final.pth
    python tools/lazyconfig_train_net.py --config-file … --resume   # continue from train.output_dir

Overrides are key=value (detectron2's LazyConfig syntax); a key the config lacks is an
error. Seeding (train.seed), exact resume, signals, divergence (train.divergence_loss_factor),
one-line errors and one's own data (dataloader.register_coco) work as in train_net.py.
"""

from detectron2.engine import default_argument_parser
from detectron2.utils import comm

from pasa_det.checkpoint import SafeCheckpointer
from pasa_det.engine import launch_tool, lazy_test, lazy_training, setup_lazy_cfg
from pasa_det.engine.arguments import parse_args
from pasa_det.engine.lazy import build_lazy_model
from pasa_det.evaluation.headline_metrics import check_headline_metrics


def run(args):
    cfg = setup_lazy_cfg(args)
    if args.eval_only:
        model = build_lazy_model(cfg)
        SafeCheckpointer(model, cfg.train.output_dir, require_filters=True).resume_or_load(
            cfg.train.init_checkpoint, resume=args.resume
        )
        results = lazy_test(cfg, model)
    else:
        training = lazy_training(cfg)
        training.resume_or_load(resume=args.resume)
        results = training.train()
    if comm.is_main_process():
        print(results)
    check_headline_metrics(results)
    return results


if __name__ == "__main__":
    launch_tool(run, parse_args(default_argument_parser()))
