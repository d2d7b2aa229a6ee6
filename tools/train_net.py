#!/usr/bin/env python
"""Train or evaluate an anti-aliased detectron2 model from a yacs config.

    python tools/train_net.py --num-gpus 8 \
        --config-file configs/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x_pasa.yaml
    python tools/train_net.py --config-file … --eval-only MODEL.WEIGHTS output/model_final.pth
    python tools/train_net.py --config-file … --resume            # continue from OUTPUT_DIR/last_checkpoint

Without GPUs, --num-gpus N starts N CPU processes over gloo. Under torchrun the
process group comes from torchrun's environment. LazyConfigs (.py) train with
tools/lazyconfig_train_net.py, the same way.

Bad configs, datasets and checkpoints end the run with a one-line "error: …". SIGINT or
SIGTERM during training saves a checkpoint after the current iteration and exits with
128 + the signal number; --resume continues from it; during an evaluation it stops at once,
keeping none of that evaluation's results. An evaluation whose headline metric (AP, mIoU)
is NaN ends the run with an error. When one process of a multi-process
run fails, the others are stopped and the error of each failed rank is printed.
"""

from detectron2.engine import default_argument_parser
from detectron2.evaluation import verify_results
from detectron2.utils import comm

from pasa_det.checkpoint import SafeCheckpointer
from pasa_det.engine import Trainer, launch_tool, setup_cfg
from pasa_det.engine.arguments import parse_args
from pasa_det.evaluation.headline_metrics import check_headline_metrics


def run(args):
    cfg = setup_cfg(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        SafeCheckpointer.from_config(cfg, model, cfg.OUTPUT_DIR, for_inference=True).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume
        )
        results = Trainer.test(cfg, model)
    else:
        trainer = Trainer(cfg)
        trainer.resume_or_load(resume=args.resume)
        results = trainer.train()
    if comm.is_main_process():
        verify_results(cfg, results)
    check_headline_metrics(results)
    return results


if __name__ == "__main__":
    launch_tool(run, parse_args(default_argument_parser()))
