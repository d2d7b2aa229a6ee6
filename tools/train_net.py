#!/usr/bin/env python
"""Train or evaluate an anti-aliased detectron2 model.

    python tools/train_net.py --num-gpus 8 \
        --config-file configs/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x_pasa.yaml
    python tools/train_net.py --config-file … --eval-only MODEL.WEIGHTS output/model_final.pth
    python tools/train_net.py --config-file … --resume            # continue from OUTPUT_DIR/last_checkpoint

Without GPUs, --num-gpus N starts N CPU processes over gloo. Under torchrun the
process group comes from torchrun's environment.

Bad configs, datasets and checkpoints end the run with a one-line "error: …". SIGINT or
SIGTERM during training saves a checkpoint after the current iteration and exits with
128 + the signal number; --resume continues from it; during an evaluation it stops at once,
keeping none of that evaluation's results. An evaluation whose headline metric (AP, mIoU)
is NaN ends the run with an error. When one process of a multi-process
run fails, the others are stopped and the error of each failed rank is printed.
"""

import sys

from detectron2.engine import default_argument_parser
from detectron2.evaluation import verify_results
from detectron2.utils import comm

from pasa_det.checkpoint import SafeCheckpointer
from pasa_det.engine import (
    USER_ERRORS,
    JobFailed,
    StoppedBySignal,
    Trainer,
    launch,
    setup_cfg,
)
from pasa_det.engine.arguments import parse_args
from pasa_det.evaluation.headline_metrics import check_headline_metrics


def main(args):
    try:
        return run(args)
    except USER_ERRORS as e:
        sys.exit(f"error: {e}")
    except StoppedBySignal as e:
        if comm.is_main_process():
            print(e, file=sys.stderr)
        sys.exit(128 + e.signum)


def run(args):
    cfg = setup_cfg(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        SafeCheckpointer.from_config(cfg, model, cfg.OUTPUT_DIR, for_inference=True).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume
        )
        results = Trainer.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, results)
    else:
        trainer = Trainer(cfg)
        trainer.resume_or_load(resume=args.resume)
        trainer.train()
        results = trainer.last_eval_results
    check_headline_metrics(results)
    return results


if __name__ == "__main__":
    args = parse_args(default_argument_parser())
    print("Command Line Args:", args)
    try:
        launch(
            main,
            args.num_gpus,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            args=(args,),
        )
    except JobFailed as e:
        if e.exit_code <= 128:  # not a stop on a signal, which the workers have explained
            print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
