#!/usr/bin/env python
"""Train or evaluate an anti-aliased detectron2 model.

    python tools/train_net.py --config-file configs/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x_pasa.yaml --num-gpus 8
    python tools/train_net.py --config-file … --eval-only MODEL.WEIGHTS output/model_final.pth
    python tools/train_net.py --config-file … --resume            # continue from OUTPUT_DIR/last_checkpoint

Without GPUs, --num-gpus N starts N CPU processes over gloo. Under torchrun the
process group comes from torchrun's environment.
"""
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.engine import default_argument_parser
from detectron2.evaluation import verify_results
from detectron2.utils import comm

from pasa_det.engine import Trainer, launch, setup_cfg


def main(args):
    cfg = setup_cfg(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        results = Trainer.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, results)
        return results
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    print("Command Line Args:", args)
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
